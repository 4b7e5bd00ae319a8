"""Restore from the NAS: the plugin state from a backup, then every instance on the NAS into
Orthanc; and the monthly drill (``verify``) that touches nothing.

The state is restored with Orthanc stopped (the database and key file are replaced). The
import runs against the restarted Orthanc, through the plugin like any upload, with a
short-lived API token of a restored admin; before each instance is sent, its mirror row is
written as done with source ``restore`` (the on-stored hook leaves such a row alone when the
bytes match), so nothing is copied back to the NAS. A journal beside the database makes the
import resumable after any interruption.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import http.client
import io
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pydicom

from ..audit import FAILURE, HEAD_FILE, Audit
from ..auth.tokens import Tokens
from ..clock import Clock
from ..db import SqliteDatabase
from ..keys import KEY_FILE, KeyRing
from ..nas.storage import ConnectionFailed, Storage, StorageError
from . import crypto, snapshot, store

DB_FILE = "orthanc-nas.sqlite"
JOURNAL = "restore-journal.sqlite"
SYSTEM_FOLDER = "_orthanc-nas"
TOKEN_NAME = "restore import"  # noqa: S105 (a label)
IMPORTED, ALREADY, DAMAGED = "imported", "already", "damaged"


class RestoreError(Exception):
    """The restore cannot go on; the message says why and what to do."""


# ---- choosing and opening a backup ---------------------------------------------------------


def fetch(storage: Storage, name: str | None) -> tuple[str, bytes]:
    """The chosen backup (default: the newest) read from the NAS."""
    storage.connect()
    backups = store.listing(storage)
    if not backups:
        raise RestoreError(f"no backup in {store.FOLDER} on the NAS")
    chosen = backups[0] if name is None else next((b for b in backups if b.name == name), None)
    if chosen is None:
        raise RestoreError(f"no backup named {name!r} on the NAS; there are: "
                           + ", ".join(b.name for b in backups[:10]))
    return chosen.name, storage.read(f"{store.FOLDER}/{chosen.name}")


def open_backup(blob: bytes, passphrase: str) -> tuple[dict[str, Any], snapshot.Snapshot]:
    meta, payload = crypto.unseal(blob, passphrase)
    return meta, snapshot.unpack(payload)


# ---- the state -------------------------------------------------------------------------------


def restore_state(data_dir: Path, name: str, meta: dict[str, Any], snap: snapshot.Snapshot,
                  clock: Clock, actor: str) -> dict[str, Any]:
    """Puts the backup's database and key file in ``data_dir`` (whatever was there is moved to
    ``pre-restore-<time>/``), ends every old session, forgets the old server's spool, and
    appends the restore to the audit trail."""
    data_dir.mkdir(parents=True, exist_ok=True)
    db_path, key_path = data_dir / DB_FILE, data_dir / KEY_FILE
    moved = data_dir / f"pre-restore-{int(clock.now())}"
    for path in (db_path, Path(f"{db_path}-wal"), Path(f"{db_path}-shm"), key_path,
                 data_dir / HEAD_FILE, data_dir / JOURNAL):
        if path.exists():
            moved.mkdir(mode=0o700, exist_ok=True)
            shutil.move(str(path), moved / path.name)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(snap.key)
    fd = os.open(db_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(snap.database)
    db = SqliteDatabase(db_path)  # migrates a backup made by an older plugin
    keys = KeyRing(snap.key)
    audit = Audit(db, clock, keys.key("audit-chain"))
    before = audit.verify()
    with db.transaction() as tx:
        tx.execute("DELETE FROM sessions")
        tx.execute("UPDATE mirror_queue SET spool = NULL")
        tx.execute("DELETE FROM nas_state")
        audit.record("backup_restored", actor=actor, ip="", tx=tx, target=name,
                     backup_created=meta.get("created"), chain_verified_before=before.ok,
                     users=_count(tx, "users"))
    users = int((db.one("SELECT COUNT(*) AS n FROM users") or {"n": 0})["n"])
    after = audit.verify()
    head = audit.head()
    if head is not None:
        (data_dir / HEAD_FILE).write_text(json.dumps(head))
    return {"backup": name, "created": meta.get("created"), "users_restored": users,
            "audit_chain": after.public(), "moved_aside": str(moved) if moved.exists() else None,
            "counts": snap.manifest.get("counts", {})}


def _count(tx: Any, table: str) -> int:
    row = tx.one(f"SELECT COUNT(*) AS n FROM {table}")  # noqa: S608 (a constant)
    return int(row["n"]) if row else 0


# ---- the NAS's content -----------------------------------------------------------------------


def walk(storage: Storage, folder: str = "") -> Iterator[tuple[str, int]]:
    """(path, size) of every instance file on the NAS; the plugin's own folder, hidden and
    temporary files are not instances."""
    for entry in storage.list(folder):
        path = f"{folder}/{entry.name}" if folder else entry.name
        if entry.name.startswith(".") or path == SYSTEM_FOLDER:
            continue
        if entry.is_dir:
            yield from walk(storage, path)
        elif entry.name.lower().endswith(".dcm"):
            yield path, entry.size


def catalog_of(db: SqliteDatabase | sqlite3.Connection) -> dict[str, tuple[str, str | None, int]]:
    """remote path -> (instance id, SHA-256 or None, size) of every mirrored instance."""
    sql = ("SELECT instance_id, remote_path, sha256, size FROM mirror_queue"
           " WHERE op = 'put' AND state = 'done' AND remote_path IS NOT NULL")
    rows = db.execute(sql).fetchall() if isinstance(db, sqlite3.Connection) else db.all(sql)
    return {r[1]: (r[0], r[2], int(r[3] or 0)) for r in rows}


def instance_id_of(data: bytes) -> tuple[str, dict[str, str]]:
    """Orthanc's identifier of an instance (SHA-1 of its four identifying UIDs) and them."""
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
    values = {k: str(ds.get(k, "") or "") for k in ("PatientID", "StudyInstanceUID",
                                                     "SeriesInstanceUID", "SOPInstanceUID")}
    if not values["SOPInstanceUID"] or not values["StudyInstanceUID"]:
        raise ValueError("not a DICOM instance (no SOP or study instance UID)")
    digest = hashlib.sha1("|".join(values[k] for k in (
        "PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")).encode(),
        usedforsecurity=False).hexdigest()
    return "-".join(digest[i:i + 8] for i in range(0, 40, 8)), values


# ---- the import ------------------------------------------------------------------------------


class Journal:
    """What the import did with each NAS file, committed as it goes (kill -9 safe)."""

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY,"
                           " outcome TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '')")

    def done(self) -> dict[str, tuple[str, str]]:
        return {r[0]: (r[1], r[2]) for r in self._conn.execute("SELECT * FROM files")}

    def mark(self, path: str, outcome: str, detail: str = "") -> None:
        self._conn.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?)",
                           (path, outcome, detail))

    def close(self) -> None:
        self._conn.close()


@dataclass
class Progress:
    """A progress bar with rate and ETA on a terminal, a line every few seconds otherwise."""

    total: int
    out: IO[str] = field(default_factory=lambda: sys.stderr)
    done: int = 0
    started: float = field(default_factory=time.monotonic)
    _last: float = 0.0

    def step(self, count: int = 1) -> None:
        self.done += count
        now = time.monotonic()
        tty = self.out.isatty()
        if now - self._last < (0.2 if tty else 5.0) and self.done < self.total:
            return
        self._last = now
        rate = self.done / max(now - self.started, 1e-6)
        left = (self.total - self.done) / rate if rate > 0 else 0.0
        share = self.done / self.total if self.total else 1.0
        bar = "#" * int(share * 30)
        line = (f"[{bar:<30}] {self.done}/{self.total} {share:6.1%} {rate:7.1f} inst/s "
                f"ETA {int(left // 60)}:{int(left % 60):02d}")
        self.out.write(("\r" + line) if tty else (line + "\n"))
        if tty and self.done >= self.total:
            self.out.write("\n")
        self.out.flush()


class OrthancUpload:
    """One kept-alive HTTP connection to Orthanc (through the plugin, as any upload)."""

    def __init__(self, url: str, token: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self._headers = {"Authorization": f"Bearer {token}",
                         "Content-Type": "application/dicom"}
        self._conn: http.client.HTTPConnection | None = None

    def post_instance(self, data: bytes) -> tuple[int, dict[str, Any]]:
        for attempt in (1, 2):  # a kept-alive connection the server closed: once more
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=300)
            try:
                self._conn.request("POST", "/instances", body=data, headers=self._headers)
                response = self._conn.getresponse()
                body = response.read()
            except (http.client.HTTPException, OSError):
                self._conn.close()
                self._conn = None
                if attempt == 2:
                    raise
                continue
            try:
                answer = json.loads(body) if response.status == 200 else {}
            except ValueError:
                answer = {}
            return response.status, answer if isinstance(answer, dict) else {}
        raise AssertionError("unreachable")


@dataclass
class Importer:
    data_dir: Path
    storage_factory: Callable[[], Storage]
    orthanc_url: str
    clock: Clock
    workers: int = 4
    out: IO[str] = field(default_factory=lambda: sys.stderr)

    def run(self, actor: str) -> dict[str, Any]:
        db_path, key_path = self.data_dir / DB_FILE, self.data_dir / KEY_FILE
        if not db_path.exists() or not key_path.exists():
            raise RestoreError(f"no restored state in {self.data_dir}: run restore-state first")
        keys = KeyRing(key_path.read_bytes())
        db = SqliteDatabase(db_path)
        audit = Audit(db, self.clock, keys.key("audit-chain"))
        catalog = catalog_of(db)
        journal = Journal(self.data_dir / JOURNAL)
        before = journal.done()
        listing_storage = self.storage_factory()
        listing_storage.connect()
        files = list(walk(listing_storage))
        listing_storage.close()
        todo = [(p, s) for p, s in files if p not in before]
        token_id, token = self._token(db, keys, audit, actor)
        local = threading.local()
        storages: list[Storage] = []
        lock = threading.Lock()

        def storage() -> Storage:
            if not hasattr(local, "storage"):
                local.storage = self.storage_factory()
                local.storage.connect()
                local.orthanc = OrthancUpload(self.orthanc_url, token)
                with lock:
                    storages.append(local.storage)
            s: Storage = local.storage
            return s

        def one(path: str) -> tuple[str, str]:
            data = storage().read(path)
            return self._import(db, local.orthanc, catalog, path, data)

        progress = Progress(len(files), self.out)
        progress.step(len(files) - len(todo))
        this_run: dict[str, int] = {}
        pool = concurrent.futures.ThreadPoolExecutor(self.workers)
        try:
            futures = {pool.submit(one, p): p for p, _ in todo}
            for future in concurrent.futures.as_completed(futures):
                path = futures[future]
                try:
                    outcome, detail = future.result()
                except ConnectionFailed as exc:  # the NAS as a whole: stop, resume later
                    raise RestoreError(f"the NAS stopped answering: {exc}; run the import "
                                       "again to resume") from exc
                except StorageError as exc:
                    outcome, detail = DAMAGED, f"unreadable on the NAS: {exc}"
                except OSError as exc:
                    raise RestoreError(f"Orthanc stopped answering at {self.orthanc_url}: "
                                       f"{exc}; run the import again to resume") from exc
                journal.mark(path, outcome, detail)
                this_run[outcome] = this_run.get(outcome, 0) + 1
                progress.step()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            for s in storages:
                with contextlib.suppress(StorageError, OSError):
                    s.close()
            with db.transaction() as tx:
                tx.execute("DELETE FROM api_tokens WHERE id = ?", (token_id,))
        return self._report(db, audit, journal, catalog, files, this_run, actor)

    def _token(self, db: SqliteDatabase, keys: KeyRing, audit: Audit, actor: str
               ) -> tuple[int, str]:
        """A one-day API token of an enabled admin who may act (no temporary PIN); any token
        left by an interrupted import is removed first."""
        admin = db.one("SELECT id, username FROM users WHERE role = 'admin' AND enabled = 1"
                       " AND must_change_pin = 0 AND locked_out = 0 ORDER BY id LIMIT 1")
        if admin is None:
            raise RestoreError("the restored state has no enabled admin to import with")
        tokens = Tokens(db, keys, self.clock, max_days=1)
        with db.transaction() as tx:
            tx.execute("DELETE FROM api_tokens WHERE name = ?", (TOKEN_NAME,))
            token_id, raw = tokens.create(tx, admin["id"], TOKEN_NAME, self.clock.now() + 86400)
            audit.record("restore_import_started", actor=actor, ip="", tx=tx,
                         target=admin["username"])
        return token_id, raw

    def _import(self, db: SqliteDatabase, orthanc: OrthancUpload,
                catalog: dict[str, tuple[str, str | None, int]], path: str, data: bytes
                ) -> tuple[str, str]:
        digest = hashlib.sha256(data).hexdigest()
        known = catalog.get(path)
        if known is not None and known[1] and known[1] != digest:
            return DAMAGED, "SHA-256 differs from what the mirror recorded"
        try:
            instance_id, values = instance_id_of(data)
        except (ValueError, pydicom.errors.InvalidDicomError, AttributeError, KeyError) as exc:
            return DAMAGED, f"not readable as DICOM: {type(exc).__name__}"
        now = self.clock.now()
        with db.transaction(invalidates=False) as tx:
            tx.execute(
                "INSERT INTO mirror_queue (instance_id, state, source, size, sha256,"
                " remote_path, patient_id, study_uid, series_uid, enqueued_at, done_at)"
                " VALUES (?, 'done', 'restore', ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(instance_id) DO UPDATE SET gen = mirror_queue.gen + 1,"
                " op = 'put',"
                " state = 'done', source = 'restore', spool = NULL, size = excluded.size,"
                " sha256 = excluded.sha256, remote_path = excluded.remote_path, attempts = 0,"
                " last_error = NULL, done_at = excluded.done_at",
                (instance_id, len(data), digest, path, values["PatientID"],
                 values["StudyInstanceUID"], values["SeriesInstanceUID"], now, now))
        code, answer = orthanc.post_instance(data)
        if code != 200:
            return DAMAGED, f"Orthanc refused it ({code})"
        return (ALREADY if answer.get("Status") == "AlreadyStored" else IMPORTED), ""

    def _report(self, db: SqliteDatabase, audit: Audit, journal: Journal,
                catalog: dict[str, tuple[str, str | None, int]], files: list[tuple[str, int]],
                this_run: dict[str, int], actor: str) -> dict[str, Any]:
        done = journal.done()
        journal.close()
        outcomes = [o for o, _ in done.values()]
        on_nas = {p for p, _ in files}
        damaged = sorted(p for p, (o, _) in done.items() if o == DAMAGED)
        missing = sorted(set(catalog) - on_nas)
        users = int((db.one("SELECT COUNT(*) AS n FROM users") or {"n": 0})["n"])
        report = {"instances_found": len(files), "imported": outcomes.count(IMPORTED),
                  "skipped": outcomes.count(ALREADY), "damaged": len(damaged),
                  "damaged_files": [{"path": p, "problem": done[p][1]} for p in damaged[:100]],
                  "missing_from_nas": len(missing), "missing_files": missing[:100],
                  "this_run": this_run, "users_restored": users}
        audit.record("restore_import_finished", actor=actor, ip="",
                     outcome=FAILURE if damaged or missing else "success",
                     found=len(files), imported=report["imported"],
                     skipped=report["skipped"], damaged=len(damaged), missing=len(missing))
        verification = audit.verify()
        report["audit_chain"] = verification.public()
        head = audit.head()
        if head is not None:
            (self.data_dir / HEAD_FILE).write_text(json.dumps(head))
        return report


# ---- the drill ---------------------------------------------------------------------------------


def verify(storage: Storage, name: str, meta: dict[str, Any], snap: snapshot.Snapshot,
           clock: Clock, quick: bool = False) -> dict[str, Any]:
    """Proves the backup opens and its audit chain verifies, and that the NAS holds every
    instance the catalog lists, byte for byte (``quick``: by size only). Touches neither
    Orthanc nor the data directory."""
    with tempfile.TemporaryDirectory(prefix="orthanc-nas-verify-") as tmp:
        db_path = Path(tmp) / DB_FILE
        db_path.write_bytes(snap.database)
        db = SqliteDatabase(db_path)
        verification = Audit(db, clock, KeyRing(snap.key).key("audit-chain")).verify()
        catalog = catalog_of(db)
        users = int((db.one("SELECT COUNT(*) AS n FROM users") or {"n": 0})["n"])
    on_nas = dict(walk(storage))
    missing, damaged = [], []
    for path, (_, digest, size) in sorted(catalog.items()):
        if path not in on_nas:
            missing.append(path)
        elif (size and on_nas[path] != size) or (
                not quick and digest and hashlib.sha256(storage.read(path)).hexdigest() != digest):
            damaged.append(path)
    ok = verification.ok and not missing and not damaged
    return {"ok": ok, "backup": name, "created": meta.get("created"), "users": users,
            "audit_chain": verification.public(), "catalog_instances": len(catalog),
            "on_nas": len(on_nas), "missing": len(missing), "missing_files": missing[:100],
            "damaged": len(damaged), "damaged_files": damaged[:100],
            "not_in_catalog": len(set(on_nas) - set(catalog)),
            "checked": "size" if quick else "sha256"}
