"""The mirror's durable outbox: what the on-stored hook records and the worker drains.

The hook hands each received instance to the spooler, which puts its bytes in the spool folder
(a hard link to Orthanc's own file when it can: no second copy written), so that a later
deletion in Orthanc cannot lose them, and commits its row.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..clock import Clock
from ..db import Database, Row, Transaction

PENDING, DONE, FAILED, CANCELLED = "pending", "done", "failed", "cancelled"
ORPHAN_AGE = 600.0  # seconds
CLAIM_SECONDS = 120.0  # how long a worker's claim on what it copies lasts unless finished


@dataclass(frozen=True)
class StoredCopy:
    """What Orthanc keeps of an instance: its file when stored uncompressed in a folder, and
    the MD5 of its bytes (Orthanc's ``UncompressedMD5``), either possibly unknown."""

    path: Path | None
    md5: str | None


StoredLookup = Callable[[str], "StoredCopy | None"]


@dataclass(frozen=True)
class Item:
    instance_id: str
    gen: int
    op: str
    source: str
    spool: str | None
    remote_path: str | None
    attempts: int
    series_uid: str | None

    @classmethod
    def from_row(cls, row: Row) -> Item:
        return cls(row["instance_id"], row["gen"], row["op"], row["source"], row["spool"],
                   row["remote_path"], row["attempts"], row["series_uid"])


class Outbox:
    def __init__(self, db: Database, spool_dir: Path, clock: Clock,
                 claim_seconds: float = CLAIM_SECONDS) -> None:
        self._db = db
        self.spool_dir = spool_dir
        self._clock = clock
        # This replica's worker, among the replicas': stable across its restarts (a worker
        # re-executed after a settings change, or restarted, takes its own claims back at once
        # instead of waiting for them to expire).
        self.claimant = f"{socket.gethostname()}:{spool_dir.resolve()}"
        self.claim_seconds = claim_seconds
        spool_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # patient data

    # ---- written by the plugin ------------------------------------------------------------

    def record_stored_many(self, received: list[tuple[str, bytes]],
                           stored: StoredLookup = lambda _id: None) -> None:
        """Spools each instance, then queues them all (again, for a duplicate) in one
        transaction. What is mirrored is what Orthanc keeps, which is not always what was
        received: Orthanc keeps the first copy of a duplicate (``OverwriteInstances`` off).
        So Orthanc's own file is hard-linked into the spool when ``stored`` names one (no
        second copy written); received bytes that differ from Orthanc's are not spooled, and
        the worker fetches Orthanc's. An instance that cannot be spooled (disk full) is also
        queued to be fetched from Orthanc."""
        spooled: list[tuple[str, str | None, int]] = []
        for instance_id, data in received:
            name: str | None = f"{instance_id}.{secrets.token_hex(4)}.dcm"
            tmp = self.spool_dir / f".{name}.tmp"
            copy = stored(instance_id)
            try:
                if copy is not None and copy.path is not None and _linked(copy.path, tmp):
                    pass
                elif copy is not None and copy.md5 and hashlib.md5(
                        data, usedforsecurity=False).hexdigest() != copy.md5:
                    name = None  # not what Orthanc kept: a refused duplicate
                else:
                    with open(tmp, "wb") as f:
                        f.write(data)
                if name is not None:
                    os.replace(tmp, self.spool_dir / f"{name}")
            except OSError:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                name = None
            spooled.append((instance_id, name, len(data)))
        superseded = []
        now = self._clock.now()
        with self._db.transaction(invalidates=False) as tx:
            for (instance_id, name, size), (_, data) in zip(spooled, received, strict=True):
                old = tx.one("SELECT spool, state, source, sha256 FROM mirror_queue"
                             " WHERE instance_id = ?", (instance_id,))
                if old is not None and _restored(old, data):
                    if name is not None:  # imported from the NAS by a restore: already there
                        superseded.append(name)
                    continue
                if old is not None and old["spool"]:
                    superseded.append(old["spool"])
                tx.execute(
                    "INSERT INTO mirror_queue (instance_id, state, source, spool, size,"
                    " enqueued_at) VALUES (?, 'pending', 'store', ?, ?, ?)"
                    " ON CONFLICT(instance_id) DO UPDATE SET gen = mirror_queue.gen + 1,"
                    " op = 'put',"
                    " state = 'pending', source = 'store', spool = excluded.spool,"
                    " size = excluded.size, attempts = 0, next_attempt_at = 0,"
                    " last_error = NULL, enqueued_at = excluded.enqueued_at",
                    (instance_id, name, size, now))
        for name in superseded:  # the worker falls back to Orthanc if it was reading one
            self.remove_spool(name)

    def record_deleted(self, instance_id: str) -> None:
        """Orthanc deleted the instance and deletions propagate: remove it from the NAS."""
        with self._db.transaction(invalidates=False) as tx:
            row = tx.one("SELECT state, spool, remote_path FROM mirror_queue"
                         " WHERE instance_id = ?", (instance_id,))
            if row is None:
                return
            if row["remote_path"]:
                tx.execute("UPDATE mirror_queue SET gen = gen + 1, op = 'delete',"
                           " state = 'pending', attempts = 0, next_attempt_at = 0,"
                           " last_error = NULL WHERE instance_id = ?", (instance_id,))
            elif row["state"] in (PENDING, FAILED):  # never reached the NAS: nothing to remove
                tx.execute("UPDATE mirror_queue SET gen = gen + 1, state = 'cancelled',"
                           " spool = NULL WHERE instance_id = ?", (instance_id,))
        if row["spool"] and not row["remote_path"]:
            self.remove_spool(row["spool"])

    def cancelled(self, instance_id: str) -> bool:
        row = self._db.one("SELECT state FROM mirror_queue WHERE instance_id = ?",
                           (instance_id,))
        return row is not None and row["state"] == CANCELLED

    def enqueue_missing(self, instance_ids: list[str], source: str) -> int:
        """Queues instances Orthanc holds that the mirror never saw (fetched from Orthanc)."""
        now = self._clock.now()
        added = 0
        with self._db.transaction(invalidates=False) as tx:
            for instance_id in instance_ids:
                added += tx.execute("INSERT INTO mirror_queue (instance_id, state, source,"
                                    " enqueued_at) VALUES (?, 'pending', ?, ?)"
                                    " ON CONFLICT DO NOTHING", (instance_id, source, now))
        return added

    def retry(self, instance_ids: list[str] | None) -> int:
        with self._db.transaction(invalidates=False) as tx:
            if instance_ids is None:
                return tx.execute("UPDATE mirror_queue SET state = 'pending', attempts = 0,"
                                  " next_attempt_at = 0 WHERE state = 'failed'")
            return sum(tx.execute("UPDATE mirror_queue SET state = 'pending', attempts = 0,"
                                  " next_attempt_at = 0 WHERE state = 'failed'"
                                  " AND instance_id = ?", (i,)) for i in instance_ids)

    # ---- used by the worker -----------------------------------------------------------------

    def due(self, limit: int) -> list[Item]:
        """Claims up to ``limit`` items that are due and no other worker holds (replicas
        share the queue): each is copied by one worker; an unfinished claim expires."""
        now = self._clock.now()
        skip_locked = " FOR UPDATE SKIP LOCKED" if self._db.dialect == "postgresql" else ""
        with self._db.transaction(invalidates=False) as tx:
            rows = tx.all("SELECT * FROM mirror_queue WHERE state = 'pending'"  # noqa: S608
                          " AND next_attempt_at <= ? AND (claimed_until <= ? OR claimed_by = ?)"
                          " ORDER BY enqueued_at LIMIT ?" + skip_locked,
                          (now, now, self.claimant, limit))
            for r in rows:
                tx.execute("UPDATE mirror_queue SET claimed_by = ?, claimed_until = ?"
                           " WHERE instance_id = ?",
                           (self.claimant, now + self.claim_seconds, r["instance_id"]))
        return [Item.from_row(r) for r in rows]

    def next_due_in(self) -> float | None:
        row = self._db.one("SELECT MIN(CASE WHEN claimed_until > next_attempt_at AND"
                           " claimed_by IS NOT ? THEN claimed_until ELSE next_attempt_at END)"
                           " AS t FROM mirror_queue WHERE state = 'pending'", (self.claimant,))
        if row is None or row["t"] is None:
            return None
        return max(0.0, float(row["t"]) - self._clock.now())

    def describe(self, item: Item, *, patient_id: str, study_uid: str, series_uid: str,
                 size: int, sha256: str) -> None:
        with self._db.transaction(invalidates=False) as tx:
            tx.execute("UPDATE mirror_queue SET patient_id = ?, study_uid = ?, series_uid = ?,"
                       " size = ?, sha256 = ? WHERE instance_id = ? AND gen = ?",
                       (patient_id, study_uid, series_uid, size, sha256, item.instance_id,
                        item.gen))

    def done(self, item: Item, remote_path: str | None) -> bool:
        """Marks the item mirrored unless it was queued again meanwhile (then it runs again).
        Where its copy went is recorded either way: that file is this instance's to replace
        or delete, whichever generation is queued now."""
        with self._db.transaction(invalidates=False) as tx:
            tx.execute("UPDATE mirror_queue SET remote_path = ?, claimed_by = NULL,"
                       " claimed_until = 0 WHERE instance_id = ?",
                       (remote_path, item.instance_id))
            changed = tx.execute(
                "UPDATE mirror_queue SET state = 'done', done_at = ?, last_error = NULL,"
                " spool = NULL WHERE instance_id = ? AND gen = ?",
                (self._clock.now(), item.instance_id, item.gen))
            current = tx.one("SELECT spool FROM mirror_queue WHERE instance_id = ?",
                             (item.instance_id,))
        if item.spool and (current is None or current["spool"] != item.spool):
            self.remove_spool(item.spool)  # mirrored, or superseded by a newer copy
        return changed == 1

    def finish_many(self, finished: list[tuple[Item, str | None, dict[str, Any]]],
                    target: str | None = None) -> list[bool]:
        """``describe`` and ``done`` for many items in one transaction (one commit for a
        whole pass, not two per file); each entry is (item, where its copy is, described
        fields or {}). Returns, per item, whether it is now mirrored."""
        changed: list[bool] = []
        current: list[Row | None] = []
        now = self._clock.now()
        with self._db.transaction() as tx:
            for item, remote_path, fields in finished:
                if fields:
                    tx.execute("UPDATE mirror_queue SET patient_id = ?, study_uid = ?,"
                               " series_uid = ?, size = ?, sha256 = ?"
                               " WHERE instance_id = ? AND gen = ?",
                               (fields["patient_id"], fields["study_uid"],
                                fields["series_uid"], fields["size"], fields["sha256"],
                                item.instance_id, item.gen))
                tx.execute("UPDATE mirror_queue SET remote_path = ?, target = ?"
                           " WHERE instance_id = ?", (remote_path, target, item.instance_id))
                changed.append(tx.execute(
                    "UPDATE mirror_queue SET state = 'done', done_at = ?, last_error = NULL,"
                    " spool = NULL WHERE instance_id = ? AND gen = ?",
                    (now, item.instance_id, item.gen)) == 1)
                current.append(tx.one("SELECT spool FROM mirror_queue WHERE instance_id = ?",
                                      (item.instance_id,)))
        for (item, _, _), row in zip(finished, current, strict=True):
            if item.spool and (row is None or row["spool"] != item.spool):
                self.remove_spool(item.spool)  # mirrored, or superseded by a newer copy
        return changed

    # ---- the scrub ------------------------------------------------------------------------

    def scrub_next(self, target: str | None) -> Row | None:
        """The mirrored copy on ``target`` re-read longest ago (never re-read first, oldest
        copy first); copies made before targets were recorded count as on it."""
        return self._db.one("SELECT instance_id, gen, remote_path, sha256, size, done_at"
                            " FROM mirror_queue WHERE state = 'done' AND op = 'put'"
                            " AND sha256 IS NOT NULL AND remote_path IS NOT NULL"
                            " AND (target IS NULL OR target = ?)"
                            " ORDER BY COALESCE(verified_at, 0), done_at LIMIT 1", (target,))

    def verified(self, instance_id: str, gen: int) -> None:
        with self._db.transaction() as tx:
            tx.execute("UPDATE mirror_queue SET verified_at = ? WHERE instance_id = ?"
                       " AND gen = ? AND state = 'done'", (self._clock.now(), instance_id, gen))

    def requeue_damaged(self, instance_id: str, gen: int) -> bool:
        """The NAS copy differs from what was spooled (or is gone): copy it again, from
        Orthanc (the spool copy was removed once mirrored). False if it changed meanwhile."""
        with self._db.transaction() as tx:
            return tx.execute(
                "UPDATE mirror_queue SET gen = gen + 1, op = 'put', state = 'pending',"
                " attempts = 0, next_attempt_at = 0, last_error = NULL, verified_at = NULL,"
                " source = 'scrub' WHERE instance_id = ? AND gen = ? AND state = 'done'",
                (instance_id, gen)) == 1

    def failed(self, item: Item, error: str, *, retry_in: float | None) -> None:
        """Records a failed attempt; ``retry_in`` None parks the item as failed."""
        state = FAILED if retry_in is None else PENDING
        with self._db.transaction(invalidates=False) as tx:
            tx.execute("UPDATE mirror_queue SET state = ?, attempts = attempts + 1,"
                       " next_attempt_at = ?, last_error = ?, claimed_by = NULL,"
                       " claimed_until = 0 WHERE instance_id = ? AND gen = ?",
                       (state, self._clock.now() + (retry_in or 0), error[:500],
                        item.instance_id, item.gen))

    def series_open(self, series_uid: str) -> bool:
        """Whether an instance of the series may still be mirrored: one of it is queued, or
        a queued copy is not yet read (its series is known only once the worker reads it)."""
        row = self._db.one("SELECT 1 FROM mirror_queue WHERE (series_uid = ? AND state IN"
                           " ('pending', 'failed')) OR (series_uid IS NULL AND op = 'put'"
                           " AND state = 'pending') LIMIT 1", (series_uid,))
        return row is not None

    def spool_path(self, name: str) -> Path:
        return self.spool_dir / name

    def remove_spool(self, name: str) -> None:
        (self.spool_dir / name).unlink(missing_ok=True)

    def remove_orphan_spool_files(self, older_than: float = ORPHAN_AGE) -> int:
        """Spool files no row points to (a crash between spooling and queueing), once older
        than ``older_than`` seconds: a younger one may be in the spooler's hands right now,
        its row about to be committed. Age is the inode's change time, which linking sets."""
        live = {r["spool"] for r in self._db.all("SELECT spool FROM mirror_queue"
                                                 " WHERE spool IS NOT NULL")}
        removed = 0
        for path in self.spool_dir.iterdir():
            try:
                young = time.time() - path.stat().st_ctime < older_than
            except FileNotFoundError:
                continue
            if path.name not in live and not young:
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    # ---- read by the API ------------------------------------------------------------------

    def counts(self) -> dict[str, Any]:
        rows = self._db.all("SELECT state, COUNT(*) AS n, COALESCE(SUM(size), 0) AS bytes,"
                            " MIN(enqueued_at) AS oldest FROM mirror_queue"
                            " WHERE NOT (state = 'done' AND op = 'delete') GROUP BY state")
        by_state = {r["state"]: r for r in rows}

        def n(state: str) -> int:
            return int(by_state[state]["n"]) if state in by_state else 0

        oldest = by_state[PENDING]["oldest"] if PENDING in by_state else None
        scrub = self._db.one(
            "SELECT COALESCE(SUM(CASE WHEN verified_at >= done_at THEN 1 ELSE 0 END), 0)"
            " AS verified, COALESCE(SUM(CASE WHEN verified_at IS NULL OR verified_at < done_at"
            " THEN 1 ELSE 0 END), 0) AS unverified,"
            " MIN(CASE WHEN verified_at IS NULL OR verified_at < done_at THEN done_at END)"
            " AS oldest FROM mirror_queue WHERE state = 'done' AND op = 'put'")
        assert scrub is not None
        return {"verified": int(scrub["verified"]), "unverified": int(scrub["unverified"]),
                "oldest_unverified_age_seconds": (self._clock.now() - scrub["oldest"])
                if scrub["oldest"] is not None else None,
                "pending": n(PENDING), "failed": n(FAILED), "mirrored": n(DONE),
                "mirrored_bytes": int(by_state[DONE]["bytes"]) if DONE in by_state else 0,
                "oldest_pending_age_seconds": (self._clock.now() - oldest) if oldest else None}

    def items(self, state: str | None, limit: int, offset: int) -> list[dict[str, Any]]:
        where = "WHERE state = ?" if state else ""
        params: tuple[Any, ...] = (state,) if state else ()
        rows = self._db.all(
            f"SELECT instance_id, op, state, source, size, remote_path, attempts,"  # noqa: S608
            f" next_attempt_at, last_error, enqueued_at, done_at FROM mirror_queue {where}"
            f" ORDER BY enqueued_at DESC LIMIT ? OFFSET ?", (*params, limit, offset))
        return [dict(r) for r in rows]

    def state_of(self, tx: Transaction | Database, instance_ids: list[str]) -> dict[str, str]:
        marks = ",".join("?" * len(instance_ids))
        rows = tx.all(f"SELECT instance_id, state FROM mirror_queue"  # noqa: S608
                      f" WHERE instance_id IN ({marks})", instance_ids)
        return {r["instance_id"]: r["state"] for r in rows}


def _restored(row: Row, data: bytes) -> bool:
    """Whether the row is a restore's import of exactly these bytes from the NAS (backup/
    restore.py): its copy is the NAS's own, so mirroring it again would copy it back."""
    return (row["state"] == DONE and row["source"] == "restore" and row["sha256"] is not None
            and hashlib.sha256(data).hexdigest() == row["sha256"])


def _linked(source: Path, target: Path) -> bool:
    """Hard-links ``source`` to ``target``; False if it cannot (gone, another file system)."""
    try:
        os.link(source, target)
        return True
    except OSError:
        return False
