"""DICOM modalities declared on the admin screen: who may send to Orthanc, and who owns it.

Orthanc 1.10.1 keeps a ``PUT /modalities/<name>`` only until it stops (without
``DicomModalitiesInDatabase``, checked by hand), so the plugin database is where they live:
each change is written here, audited, then applied to Orthanc, and every start applies them
all again. Modalities of ``orthanc.json``'s ``DicomModalities`` are listed too; saving one on
the screen overrides it, deleting that override puts the file's back. The owner of a modality
is the user its C-STORE instances belong to (``Catalog.record_owner``): this replaces the
run-time AE-title -> user map; ``OrthancNAS.ae_owners`` still maps AE titles the file declares.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from .audit import Audit
from .auth.users import Users
from .clock import Clock
from .db import Database, Row
from .orthanc_api import OrthancApi, OrthancError

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
AET_RE = re.compile(r"[\x21-\x5b\x5d-\x7e]([\x20-\x5b\x5d-\x7e]{0,14}[\x21-\x5b\x5d-\x7e])?")
HOST_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|[0-9A-Fa-f:.]{2,45}")
OWNER_ROLES = ("user", "admin")  # viewers bring no images
MAX_PORT = 65534  # Orthanc 1.10.1 refuses 65535 ("must be in range [1..65534]")
ECHO_TIMEOUT = 5  # seconds Orthanc waits for the modality's answer to C-ECHO
SCREEN, FILE = "screen", "orthanc.json"


class ModalityRejected(ValueError):
    """A change refused; ``field`` names what to correct, ``status`` the HTTP answer."""

    def __init__(self, message: str, field: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.field = field
        self.status = status


class EchoFailed(RuntimeError):
    """The modality did not answer C-ECHO."""


@dataclass(frozen=True)
class Modality:
    name: str
    aet: str
    host: str
    port: int
    owner: str | None  # username
    source: str  # SCREEN or FILE
    overrides_file: bool = False

    def public(self) -> dict[str, Any]:
        return asdict(self)


def file_modalities(declared: Mapping[str, Any]) -> dict[str, tuple[str, str, int]]:
    """``DicomModalities`` of orthanc.json: name -> (AE title, host, port); both of Orthanc's
    forms (``[aet, host, port, ...]`` and ``{"AET", "Host", "Port"}``)."""
    out: dict[str, tuple[str, str, int]] = {}
    for name, value in declared.items():
        try:
            if isinstance(value, list):
                out[name] = (str(value[0]), str(value[1]), int(value[2]))
            elif isinstance(value, dict):
                out[name] = (str(value["AET"]), str(value["Host"]), int(value["Port"]))
        except (IndexError, KeyError, TypeError, ValueError):
            continue  # Orthanc itself refuses to start on these
    return out


class Modalities:
    def __init__(self, db: Database, orthanc: OrthancApi, users: Users, audit: Audit,
                 clock: Clock, declared: Mapping[str, Any],
                 file_owners: Callable[[], dict[str, str]]) -> None:
        self._db = db
        self._orthanc = orthanc
        self._users = users
        self._audit = audit
        self._clock = clock
        self._file = file_modalities(declared)
        self._file_owners = file_owners
        self._owners: dict[str, int | None] | None = None  # AE title -> user id, cached
        self._lock = threading.Lock()
        db.on_invalidate.append(self.forget)  # a user deleted or renamed: look again

    # ---- reading -------------------------------------------------------------------------

    def _rows(self) -> list[Row]:
        return self._db.all("SELECT m.*, u.username FROM modalities m LEFT JOIN users u"
                            " ON u.id = m.owner_id ORDER BY m.name")

    def declared(self) -> list[Modality]:
        owners = self._file_owners()
        saved = {r["name"]: r for r in self._rows()}
        out = [Modality(r["name"], r["aet"], r["host"], r["port"], r["username"], SCREEN,
                        r["name"] in self._file) for r in saved.values()]
        out += [Modality(name, aet, host, port, owners.get(aet), FILE)
                for name, (aet, host, port) in self._file.items() if name not in saved]
        return sorted(out, key=lambda m: m.name.lower())

    def get(self, name: str) -> Modality | None:
        return next((m for m in self.declared() if m.name == name), None)

    def owner_of(self, aet: str) -> int | None:
        """The user id that owns what ``aet`` sends (called for every C-STORE instance)."""
        owners = self._owners
        if owners is None:
            owners = {}
            for aet_, username in self._file_owners().items():
                user = self._users.by_name(username)
                owners[aet_] = user.id if user else None
            for r in self._db.all("SELECT aet, owner_id FROM modalities"):
                owners[r["aet"]] = r["owner_id"]
            self._owners = owners
        return owners.get(aet)

    def owners(self) -> dict[str, str]:
        """AE title -> username, as ``owner_of`` decides (for the API and the page)."""
        return {m.aet: m.owner for m in self.declared() if m.owner}

    def forget(self) -> None:
        self._owners = None

    # ---- changing --------------------------------------------------------------------------

    def _check(self, name: str, aet: str, host: str, port: int, owner: str | None
               ) -> int | None:
        if not NAME_RE.fullmatch(name):
            raise ModalityRejected("name: 1 to 64 letters, digits, - and _ (starting with a "
                                   "letter or digit)", "name")
        if not AET_RE.fullmatch(aet):
            raise ModalityRejected("AE title: 1 to 16 characters, no backslash, as set on the "
                                   "modality", "aet")
        if not HOST_RE.fullmatch(host):
            raise ModalityRejected("host: the modality's IP address or host name", "host")
        if not 0 < port <= MAX_PORT:
            raise ModalityRejected(f"port: a number from 1 to {MAX_PORT}", "port")
        clash = self._db.one("SELECT name FROM modalities WHERE aet = ? AND name != ?",
                             (aet, name))
        clash_name = clash["name"] if clash else next(
            (n for n, (a, _, _) in self._file.items() if a == aet and n != name), None)
        if clash_name is not None:
            raise ModalityRejected(f"AE title {aet} is already used by modality {clash_name}",
                                   "aet", 409)
        if not owner:
            return None
        user = self._users.by_name(owner)
        if user is None or not user.enabled:
            raise ModalityRejected(f"owner: no active user {owner}", "owner")
        if user.role not in OWNER_ROLES:
            raise ModalityRejected(f"owner: {owner} is a viewer; only users and admins can "
                                   "own images", "owner")
        return user.id

    def save(self, name: str, aet: str, host: str, port: int, owner: str | None, *,
             actor: str, ip: str) -> Modality:
        """Creates or replaces a modality: applied to Orthanc first (a refusal stores
        nothing), then stored and audited together; should that fail, Orthanc gets back
        what it had."""
        aet, host = aet.strip(), host.strip()
        with self._lock:
            owner_id = self._check(name, aet, host, port, owner)
            before = self.get(name)
            self._apply(name, aet, host, port)
            try:
                self._store(name, aet, host, port, owner, owner_id, before, actor, ip)
            except Exception:
                if before is not None:
                    self._apply(before.name, before.aet, before.host, before.port)
                else:
                    with contextlib.suppress(OrthancError):
                        self._orthanc.delete(f"/modalities/{name}")
                raise
            self.forget()
        saved = self.get(name)
        assert saved is not None
        return saved

    def _store(self, name: str, aet: str, host: str, port: int, owner: str | None,
               owner_id: int | None, before: Modality | None, actor: str, ip: str) -> None:
        with self._db.transaction(invalidates=False) as tx:
            tx.execute("INSERT INTO modalities VALUES (?, ?, ?, ?, ?, ?, ?)"
                       " ON CONFLICT(name) DO UPDATE SET aet = excluded.aet,"
                       " host = excluded.host, port = excluded.port,"
                       " owner_id = excluded.owner_id, updated_at = excluded.updated_at,"
                       " updated_by = excluded.updated_by",
                       (name, aet, host, port, owner_id, self._clock.now(), actor))
            self._audit.record("modality_saved", actor=actor, ip=ip, tx=tx, target=name,
                               aet=aet, host=host, port=port, owner=owner or "",
                               created=before is None)

    def delete(self, name: str, *, actor: str, ip: str) -> Modality | None:
        """Removes a modality saved on the screen; the one orthanc.json declares under the
        same name (if any) comes back. Returns what is left under that name."""
        with self._lock:
            row = self._db.one("SELECT aet FROM modalities WHERE name = ?", (name,))
            if row is None:
                if name in self._file:
                    raise ModalityRejected(f"{name} is declared in orthanc.json: remove it "
                                           "there", "name", 409)
                raise ModalityRejected("no such modality", "name", 404)
            with self._db.transaction(invalidates=False) as tx:
                tx.execute("DELETE FROM modalities WHERE name = ?", (name,))
                self._audit.record("modality_deleted", actor=actor, ip=ip, tx=tx, target=name,
                                   aet=row["aet"])
            self.forget()
            if name in self._file:
                self._apply(name, *self._file[name])
            else:
                # Orthanc may never have had it (it refused it earlier): nothing to undo.
                with contextlib.suppress(OrthancError):
                    self._orthanc.delete(f"/modalities/{name}")
        return self.get(name)

    def _apply(self, name: str, aet: str, host: str, port: int) -> None:
        body = json.dumps({"AET": aet, "Host": host, "Port": port}).encode()
        try:
            self._orthanc.put_bytes(f"/modalities/{name}", body)
        except OrthancError as exc:
            raise ModalityRejected("Orthanc refused this modality: check its AE title, "
                                   "address and port", None) from exc

    def apply_all(self) -> list[str]:
        """Declares every saved modality to Orthanc (at start); returns the names refused."""
        refused = []
        for r in self._db.all("SELECT name, aet, host, port FROM modalities"):
            try:
                self._apply(r["name"], r["aet"], r["host"], r["port"])
            except ModalityRejected:
                refused.append(r["name"])
        return refused

    def echo(self, name: str) -> float:
        """C-ECHO to the modality through Orthanc; returns the seconds it took."""
        modality = self.get(name)
        if modality is None:
            raise ModalityRejected("no such modality", "name", 404)
        started = time.monotonic()  # a duration, not a time of day
        try:
            self._orthanc.post_bytes(f"/modalities/{name}/echo",
                                     json.dumps({"Timeout": ECHO_TIMEOUT}).encode())
        except OrthancError as exc:
            raise EchoFailed(
                f"No answer from {modality.aet} at {modality.host}:{modality.port}. Check that "
                "the modality is on and reachable, and that its address and port are right.") \
                from exc
        return round(time.monotonic() - started, 3)
