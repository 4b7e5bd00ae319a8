"""The mirror worker: a process of its own next to Orthanc (so SMB I/O and hashing never hold
Orthanc's GIL), draining the outbox to the NAS.

Per item: bytes from the spool (or from Orthanc for reconciled items), SHA-256 and layout path
here -> a copier process writes them to a temporary name, flushes, confirms the size (reads
back too with ``verify: "readback"``) and renames into place -> marked done, a pass's items in
one transaction. ``nas.parallel`` copies are in flight at once, in any order. Item errors retry
with exponential backoff and jitter, then park as failed; connection errors (NAS down, wrong
password, missing share) leave items untouched and back off. When nothing is due, the scrub
re-reads copies at its capped rate (scrub.py).

Run as ``python -m orthanc_nas.mirror.worker``: the first line on stdin is the boot JSON, then
``wake`` (``wake stored``: the spooler queued new instances), ``config <json>`` and
``backfill`` lines; end of input (Orthanc gone) stops it.
"""

from __future__ import annotations

import collections
import concurrent.futures
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
from ..nas.connect import make_storage, target_of
from ..nas.storage import ConnectionFailed, LogonFailed, Storage, StorageError
from .copier import Copier, InlinePool, Job, Outcome, Pool, ProcessPool, fold_key, outcome_of
from .outbox import Item, Outbox
from .scrub import Scrub

FIRST_COMPLETED = concurrent.futures.FIRST_COMPLETED

BATCH = 64
RECONNECT_MAX = 4.0  # a NAS back from an outage is seen within this many seconds
LOGON_RECONNECT_MAX = 60.0  # a wrong password is not retried fast (NAS auto-block lists)
INGEST_QUIET = 0.5  # seconds without a new instance: Orthanc is no longer receiving
DEFER_MAX = 20.0  # copying waits for a burst of ingest this long at most, then goes on
NAS_HEAD = "_orthanc-nas/audit-head.json"  # the audit chain head, kept on the NAS too
THROUGHPUT_WINDOW = 60.0
SPACE_EVERY = 30.0


# A copy the scrub found damaged, of an instance Orthanc no longer has: nothing to copy it from.
SCRUB_GONE = ("the NAS copy is damaged (the scrub found it) and Orthanc no longer has the "
              "instance to copy it again")


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
    pool: Pool | None = None  # None: the copies run here, one at a time, on ``storage``
    ingest_at: float = float("-inf")  # when the spooler last said new instances were queued
    defer_since: float | None = None

    def note_ingest(self) -> None:
        self.ingest_at = self.clock.now()

    def _deferred(self, now: float) -> float:
        """While Orthanc is receiving, copying waits (on a shared box the NAS client and
        server would take CPU from ingest), for DEFER_MAX seconds of a burst at most: then
        the copies go on beside it. Returns how long to wait, 0 to copy now."""
        if now - self.ingest_at >= INGEST_QUIET:
            self.defer_since = None
            return 0.0
        if self.defer_since is None:
            self.defer_since = now
        if now - self.defer_since >= DEFER_MAX:
            return 0.0
        return self.ingest_at + INGEST_QUIET - now
    scrub: Scrub | None = None
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
                return self._connection_lost(exc)
            self.connected = True
            self.connect_failures = 0
            self._refresh_space()
            self.write_state()  # connected: said before the first copy is recorded
        deferred = self._deferred(now)
        if deferred > 0:
            return deferred
        batch = self.outbox.due(BATCH)
        lost = self._copy(batch)
        if lost is not None:
            return self._connection_lost(lost)
        if len(batch) < BATCH:  # else more of the same series may still be unread
            self._close_series()
        self._refresh_space()
        self.write_state()
        if batch:
            return 0.0
        wait = self.outbox.next_due_in()
        wait = 5.0 if wait is None else min(wait, 5.0)
        if self.scrub is not None:
            wait = min(wait, self.scrub.step(self.storage))
        return wait

    def _copy(self, batch: list[Item]) -> ConnectionFailed | None:
        """Runs the batch with up to ``2 * parallel`` copies queued at the copiers, then
        records it in one transaction. Returns the connection failure that stopped it."""
        pool = self.pool or InlinePool(Copier(self.storage, connected=True))
        limit = 2 * int(self.nas.get("parallel", 1))
        items = iter(batch)
        flying: dict[concurrent.futures.Future[Outcome], tuple[Item, Job, dict[str, Any]]] = {}
        keys: set[str] = set()
        finished: list[tuple[Item, str | None, dict[str, Any]]] = []
        failures: list[tuple[Item, str, bool]] = []
        taken: list[tuple[str, str, str]] = []
        lost: ConnectionFailed | None = None

        def fill() -> None:
            while lost is None and len(flying) < limit:
                item = next(items, None)
                if item is None:
                    return
                try:
                    job, fields = self._job(item)
                except (OSError, InstanceGone, ValueError,
                        pydicom.errors.InvalidDicomError) as exc:
                    gone = isinstance(exc, InstanceGone)
                    failures.append((item, SCRUB_GONE if gone and item.source == "scrub"
                                     else f"{type(exc).__name__}: {exc}", gone))
                    continue
                if job is None:
                    finished.append((item, item.remote_path, {}))
                    continue
                key = fold_key(job.path)
                if key in keys:  # its twin is in flight: the next pass takes it
                    continue
                keys.add(key)
                flying[pool.submit(job)] = (item, job, fields)

        fill()
        while flying:
            done, _ = concurrent.futures.wait(flying, return_when=FIRST_COMPLETED)
            for future in done:
                item, job, fields = flying.pop(future)
                keys.discard(fold_key(job.path))
                outcome = outcome_of(future, job)
                if outcome.connection:
                    lost = lost or ConnectionFailed("copy", outcome.error or "connection lost")
                elif outcome.error is not None:
                    failures.append((item, outcome.error, False))
                else:
                    finished.append((item, outcome.path, fields))
                    if outcome.taken and outcome.path:
                        taken.append((item.instance_id, outcome.taken, outcome.path))
            fill()
        self._record(finished, failures, taken)
        return lost

    def _job(self, item: Item) -> tuple[Job | None, dict[str, Any]]:
        """What a copier must do for the item (None: nothing), and what to record of it."""
        if item.op == "delete":
            if not item.remote_path:
                return None, {}
            return Job(item.instance_id, item.remote_path, delete=True), {}
        data = self._bytes(item)
        digest = hashlib.sha256(data).hexdigest()
        values = dicom_values(data)
        path = layout.render(self.nas["layout"], values)
        fields = {"patient_id": values["PatientID"], "study_uid": values["StudyInstanceUID"],
                  "series_uid": values["SeriesInstanceUID"], "size": len(data),
                  "sha256": digest, "values": values}
        # A retry, a reconciliation or a backfill may find its identical copy already there;
        # a file just received is written straight away (one SMB round trip saved).
        fresh = item.attempts == 0 and item.spool is not None
        return Job(item.instance_id, path, data, digest, check_existing=not fresh,
                   overwrite=item.remote_path == path,
                   readback=self.nas["verify"] in ("readback", True)), fields

    def _record(self, finished: list[tuple[Item, str | None, dict[str, Any]]],
                failures: list[tuple[Item, str, bool]],
                taken: list[tuple[str, str, str]]) -> None:
        if finished:
            mirrored = self.outbox.finish_many([(i, p, {k: v for k, v in f.items()
                                                        if k != "values"})
                                                for i, p, f in finished],
                                               target_of(self.nas))
            for (item, path, fields), ok in zip(finished, mirrored, strict=True):
                if ok and fields:
                    self._tally(fields["values"], fields["size"])
                elif not ok and path and item.op == "put" and self.outbox.cancelled(
                        item.instance_id):
                    with contextlib.suppress(StorageError):  # deleted in Orthanc while
                        self.storage.delete(path)  # copied: deletions propagate
        for instance_id, path, stored_as in taken:
            self.audit.record("nas_name_taken", actor="system", ip="", target=instance_id,
                              path=path, stored_as=stored_as)
        for item, error, permanent in failures:
            self._item_failed(item, error, permanent=permanent)

    def _connection_lost(self, error: StorageError) -> float:
        self.connected = False
        self.connect_failures += 1
        self.note_error(str(error))
        cap = LOGON_RECONNECT_MAX if isinstance(error, LogonFailed) else RECONNECT_MAX
        delay = min(self.backoff(self.connect_failures), cap)
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

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
        self.storage.close()

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
    nas = boot["nas"]
    audit = Audit(db, clock, audit_key)
    # Copiers are forked before this process starts an SMB client of its own.
    pool = ProcessPool(lambda: make_storage(nas), nas["parallel"]) if nas["enabled"] else None
    return Mirror(outbox, make_storage(nas), nas, audit, db, clock, source, pool=pool,
                  scrub=Scrub(outbox, audit, clock, nas["scrub_mb_per_second"],
                              tuple(nas["scrub_hours"]), target=target_of(nas)))


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


BOOT_AGAIN = "ORTHANC_NAS_WORKER_BOOT"
NICENESS = 10  # below Orthanc: receiving images comes first, mirroring them follows


def main() -> None:  # pragma: no cover (exercised by the integration tests, in a process)
    if os.nice(0) < NICENESS:  # once, not again at each re-exec
        os.nice(NICENESS - os.nice(0))
    commands = Commands(sys.stdin.fileno())
    again = os.environ.pop(BOOT_AGAIN, "")  # after a "config" line (not argv: secrets)
    first: list[str] = [again] if again else []
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
            if command == "config":  # libsmbclient reads its settings once a process:
                mirror.close()  # a new configuration is a new worker
                os.closerange(3, os.sysconf("SC_OPEN_MAX"))  # sessions the libraries kept
                os.environ[BOOT_AGAIN] = json.dumps({**boot, "nas": json.loads(arg)})
                os.execv(sys.executable,  # noqa: S606 (ourselves again)
                         [sys.executable, "-m", "orthanc_nas.mirror.worker"])
            elif command == "backfill":
                reconcile = True
            elif command == "wake" and arg == "stored":
                mirror.note_ingest()
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
    mirror.close()  # Orthanc stopped or died: the queue is durable, nothing is lost


if __name__ == "__main__":
    main()
