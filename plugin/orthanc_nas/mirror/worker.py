"""The mirror worker: a process of its own next to Orthanc (so SMB I/O and hashing never hold
Orthanc's GIL), draining the outbox to the NAS.

Per item: bytes from the spool (or from Orthanc for reconciled items) -> write to a temporary
name in the target folder -> read back and compare size and SHA-256 -> rename into place ->
mark done. Item errors retry with exponential backoff and jitter, then park as failed;
connection errors (NAS down, wrong password, missing share) leave items untouched and back off.

Run as ``python -m orthanc_nas.mirror.worker``: the first line on stdin is the boot JSON, then
``wake``, ``config <json>`` and ``backfill`` lines; end of input (Orthanc gone) stops it.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import io
import json
import os
import random
import select
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom

from ..audit import FAILURE, Audit
from ..clock import Clock, SystemClock
from ..db import Database, open_location
from ..keys import KeyRing, load_or_create_key
from ..nas import layout
from ..nas.connect import make_storage
from ..nas.storage import ConnectionFailed, Storage, StorageError, TargetExists
from .outbox import Item, Outbox

BATCH = 50
RECONNECT_MAX = 30.0  # a NAS back from an outage is seen within this many seconds
NAS_HEAD = "_orthanc-nas/audit-head.json"  # the audit chain head, kept on the NAS too
THROUGHPUT_WINDOW = 60.0
SPACE_EVERY = 30.0


class InstanceGone(Exception):
    """Neither a spool copy nor Orthanc has the instance any more."""


class OrthancSource:
    """Orthanc's REST API over loopback, with the plugin's full-access token (no filter)."""

    def __init__(self, url: str, token: str) -> None:
        self._url = url.rstrip("/")
        self._token = token

    def _get(self, path: str) -> bytes:
        request = urllib.request.Request(self._url + path,  # noqa: S310 (our own Orthanc)
                                         headers={"Authorization": self._token})
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            body: bytes = response.read()
            return body

    def instance(self, instance_id: str) -> bytes:
        try:
            return self._get(f"/instances/{instance_id}/file")
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise InstanceGone("deleted from Orthanc before it was mirrored") from exc
            raise

    def instance_ids(self) -> list[str]:
        ids: list[str] = json.loads(self._get("/instances"))
        return ids


def dicom_values(data: bytes) -> dict[str, str]:
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
    return {f: str(ds.get(f, "") or "") for f in layout.FIELDS}


@dataclass
class SeriesTally:
    study_uid: str
    patient_id: str
    count: int = 0
    bytes: int = 0


@dataclass
class Mirror:
    """One pass at a time over the due items; everything it touches is injected."""

    outbox: Outbox
    storage: Storage
    nas: dict[str, Any]
    audit: Audit
    db: Database
    clock: Clock
    source: OrthancSource | None = None
    rand: Callable[[], float] = random.random
    connected: bool = False
    last_error: str | None = None
    last_error_at: float | None = None
    connect_failures: int = 0
    retry_connect_at: float = 0.0
    space: tuple[int, int] | None = None
    space_at: float = -SPACE_EVERY
    recent: collections.deque[tuple[float, int]] = field(default_factory=collections.deque)
    tallies: dict[str, SeriesTally] = field(default_factory=dict)
    exported_head: bytes = b""

    def backoff(self, attempts: int) -> float:
        base = self.nas["retry_base_seconds"] * 2 ** max(0, attempts - 1)
        limit = float(self.nas["retry_max_seconds"])
        return min(float(base), limit) * (0.5 + self.rand())

    def step(self) -> float:
        """Mirrors what is due; returns how long to wait before the next pass."""
        now = self.clock.now()
        if not self.connected:
            if now < self.retry_connect_at:
                return self.retry_connect_at - now
            try:
                self.storage.connect()
            except StorageError as exc:
                return self._connection_lost(str(exc))
            self.connected = True
            self.connect_failures = 0
        batch = self.outbox.due(BATCH)
        for item in batch:
            try:
                self._process(item)
            except ConnectionFailed as exc:
                return self._connection_lost(str(exc))
            except (StorageError, OSError, InstanceGone, ValueError,
                    pydicom.errors.InvalidDicomError) as exc:
                self._item_failed(item, f"{type(exc).__name__}: {exc}",
                                  permanent=isinstance(exc, InstanceGone))
        if len(batch) < BATCH:  # else more of the same series may still be unread
            self._close_series()
        self._refresh_space()
        self.write_state()
        if batch:
            return 0.0
        wait = self.outbox.next_due_in()
        return 5.0 if wait is None else min(wait, 5.0)

    def _connection_lost(self, error: str) -> float:
        self.connected = False
        self.connect_failures += 1
        self.note_error(error)
        delay = min(self.backoff(self.connect_failures), RECONNECT_MAX)
        self.retry_connect_at = self.clock.now() + delay
        self.write_state()
        return delay

    def note_error(self, error: str) -> None:
        self.last_error = error
        self.last_error_at = self.clock.now()

    def _item_failed(self, item: Item, error: str, *, permanent: bool = False) -> None:
        self.note_error(f"{item.instance_id}: {error}")
        attempts = item.attempts + 1
        park = permanent or attempts >= self.nas["max_attempts"]
        self.outbox.failed(item, error, retry_in=None if park else self.backoff(attempts))
        if park:
            self.audit.record("nas_mirror_failed", actor="system", ip="", outcome=FAILURE,
                              target=item.instance_id, error=error, attempts=attempts)

    def _process(self, item: Item) -> None:
        if item.op == "delete":
            if item.remote_path:
                self.storage.delete(item.remote_path)
            self.outbox.done(item, item.remote_path)
            return
        data = self._bytes(item)
        digest = hashlib.sha256(data).hexdigest()
        values = dicom_values(data)
        path = layout.render(self.nas["layout"], values)
        self.outbox.describe(item, patient_id=values["PatientID"],
                             study_uid=values["StudyInstanceUID"],
                             series_uid=values["SeriesInstanceUID"], size=len(data),
                             sha256=digest)
        # A retry, a reconciliation or a backfill may find its identical copy already there;
        # a file just received is written straight away (one SMB round trip saved).
        fresh = item.attempts == 0 and item.spool is not None
        existing = None if fresh else self.storage.stat(path)
        if not (existing and existing.size == len(data) and self._same(
                self.storage.read(path), digest)):
            folder, _, name = path.rpartition("/")
            temporary = f"{folder}/.{name}.part" if folder else f".{name}.part"
            try:
                if not self.nas["verify"]:
                    self.storage.write(temporary, data)
                elif not self._same(self.storage.write_and_read(temporary, data), digest,
                                    len(data)):
                    raise StorageError("verify", "the copy read back differs from the original")
            except StorageError:
                with contextlib.suppress(StorageError):
                    self.storage.delete(temporary)
                raise
            path = self._place(item, temporary, path, digest)
        if self.outbox.done(item, path):
            self._tally(values, len(data))
        elif self.outbox.cancelled(item.instance_id):
            self.storage.delete(path)  # deleted in Orthanc while copied, deletions propagate

    def _place(self, item: Item, temporary: str, path: str, digest: str) -> str:
        """Renames the verified copy into place; returns where it went. Only this instance's
        own earlier copy is replaced: another instance whose name sanitises, or folds on the
        NAS (case, Unicode normalisation), to the same one keeps its file, and this copy takes
        a name of its own (the Orthanc ID appended), so no copy is ever lost."""
        try:
            self.storage.replace(temporary, path, overwrite=item.remote_path == path)
            return path
        except TargetExists:
            with contextlib.suppress(StorageError):  # unreadable: not known to be ours
                if self._same(self.storage.read(path), digest):  # ours, an interrupted pass
                    self.storage.delete(temporary)
                    return path
        folder, slash, name = path.rpartition("/")
        stem, dot, extension = name.rpartition(".")
        apart = folder + slash + (f"{stem}~{item.instance_id}.{extension}" if dot and stem
                                  else f"{name}~{item.instance_id}")
        self.storage.replace(temporary, apart)
        self.audit.record("nas_name_taken", actor="system", ip="", target=item.instance_id,
                          path=path, stored_as=apart)
        return apart

    @staticmethod
    def _same(back: bytes, digest: str, size: int | None = None) -> bool:
        return (size is None or len(back) == size) and hashlib.sha256(back).hexdigest() == digest

    def _bytes(self, item: Item) -> bytes:
        if item.spool:
            try:
                return self.outbox.spool_path(item.spool).read_bytes()
            except FileNotFoundError:
                pass
        if self.source is None:
            raise InstanceGone("no spool copy and no access to Orthanc")
        return self.source.instance(item.instance_id)

    def _tally(self, values: dict[str, str], size: int) -> None:
        now = self.clock.now()
        self.recent.append((now, size))
        series = values["SeriesInstanceUID"]
        tally = self.tallies.setdefault(series, SeriesTally(values["StudyInstanceUID"],
                                                            values["PatientID"]))
        tally.count += 1
        tally.bytes += size

    def _close_series(self) -> None:
        """One audit row per mirrored series, once none of its instances is still queued."""
        for series_uid in list(self.tallies):
            if not self.outbox.series_open(series_uid):
                tally = self.tallies.pop(series_uid)
                self.audit.record("nas_mirrored", actor="system", ip="", target=series_uid,
                                  study_uid=tally.study_uid, patient_id=tally.patient_id,
                                  instances=tally.count, bytes=tally.bytes)

    def _refresh_space(self) -> None:
        now = self.clock.now()
        if self.connected and now - self.space_at >= SPACE_EVERY:
            self.space_at = now
            try:
                space = self.storage.space()
                self.space = (space.total, space.free)
            except StorageError as exc:
                self.note_error(str(exc))

    def throughput(self) -> float:
        now = self.clock.now()
        while self.recent and now - self.recent[0][0] > THROUGHPUT_WINDOW:
            self.recent.popleft()
        return sum(size for _, size in self.recent) / THROUGHPUT_WINDOW

    def write_state(self) -> None:
        total, free = self.space or (None, None)
        with self.db.transaction(invalidates=False) as tx:
            tx.execute("INSERT INTO nas_state (id, connected, last_error, last_error_at,"
                       " total_bytes, free_bytes, throughput_bps, worker_pid, updated_at)"
                       " VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET"
                       " connected = excluded.connected, last_error = excluded.last_error,"
                       " last_error_at = excluded.last_error_at,"
                       " total_bytes = excluded.total_bytes, free_bytes = excluded.free_bytes,"
                       " throughput_bps = excluded.throughput_bps,"
                       " worker_pid = excluded.worker_pid, updated_at = excluded.updated_at",
                       (int(self.connected), self.last_error, self.last_error_at, total, free,
                        self.throughput(), os.getpid(), self.clock.now()))

    def export_head(self, head_file: Path) -> None:
        """Copies the audit chain head to the NAS when it changed (truncation evidence)."""
        if not self.connected:
            return
        try:
            head = head_file.read_bytes()
        except OSError:
            return
        if head != self.exported_head:
            try:
                self.storage.write(NAS_HEAD + ".part", head)
                self.storage.replace(NAS_HEAD + ".part", NAS_HEAD)
                self.exported_head = head
            except StorageError as exc:
                self.note_error(f"audit head: {exc}")

    def reconcile(self) -> int:
        """Queues every instance Orthanc holds that the mirror has never seen."""
        if self.source is None:
            return 0
        added = self.outbox.enqueue_missing(self.source.instance_ids(), "reconcile")
        if added:
            self.audit.record("nas_reconciled", actor="system", ip="", instances=added)
        return added


def build(boot: dict[str, Any], clock: Clock) -> Mirror:
    db = open_location(boot["db"], dict(os.environ), listen=False)
    outbox = Outbox(db, Path(boot["spool"]), clock)
    source = OrthancSource(boot["orthanc_url"], boot["orthanc_token"])
    audit_key = KeyRing(load_or_create_key(Path(boot["key"]))).key("audit-chain")
    return Mirror(outbox, make_storage(boot["nas"]), boot["nas"], Audit(db, clock, audit_key),
                  db, clock, source)


class Commands:
    """Lines from the plugin on a pipe, read without blocking past ``timeout``."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = b""
        self.closed = False

    def read(self, timeout: float | None) -> list[str]:
        if b"\n" not in self._buffer and not self.closed:
            ready, _, _ = select.select([self._fd], [], [], timeout)
            if ready:
                chunk = os.read(self._fd, 65536)
                self.closed = not chunk
                self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        return [line.decode() for line in lines]


NICENESS = 10  # below Orthanc: receiving images comes first, mirroring them follows


def main() -> None:  # pragma: no cover (exercised by the integration tests, in a process)
    os.nice(NICENESS)
    commands = Commands(sys.stdin.fileno())
    first: list[str] = []
    while not first and not commands.closed:
        first = commands.read(None)
    if not first:
        return
    boot = json.loads(first[0])
    queued = first[1:]
    clock = SystemClock()
    mirror = build(boot, clock)
    mirror.outbox.remove_orphan_spool_files()
    reconcile = bool(boot["nas"]["enabled"])
    wait = 0.0
    while not commands.closed:
        for line in queued + commands.read(wait):
            command, _, arg = line.strip().partition(" ")
            if command == "config":
                mirror.storage.close()
                boot["nas"] = json.loads(arg)
                mirror = build(boot, clock)
                reconcile = bool(boot["nas"]["enabled"])
            elif command == "backfill":
                reconcile = True
        queued = []
        if not boot["nas"]["enabled"]:
            wait = 3600.0
            continue
        if reconcile:
            try:
                mirror.reconcile()
                reconcile = False
            except (OSError, ValueError) as exc:
                mirror.note_error(f"reconciliation: {exc}")
        wait = mirror.step()
        mirror.export_head(Path(boot["head_file"]))
    mirror.storage.close()  # Orthanc stopped or died: the queue is durable, nothing is lost


if __name__ == "__main__":
    main()
