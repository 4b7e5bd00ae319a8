"""The scrub: re-reads the copies on the NAS, later and slowly, and compares each with the
SHA-256 recorded from the spool copy before it was written.

A read-back right after writing reads the NAS's cache and proves little that a signed or
encrypted session does not; a read hours later, from the disks, finds what rotted, was
overwritten or was deleted behind the mirror's back. A copy that differs, or is gone, is
audited and queued to be copied again. Reads are capped at ``rate`` MB/s (the bytes read set
when the next read may start) and happen only within ``hours`` of the local day.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from ..audit import FAILURE, Audit
from ..clock import Clock
from ..nas.storage import ConnectionFailed, Storage, StorageError
from .outbox import Outbox

IDLE = 60.0  # nothing to scrub, or outside its hours: look again after this long


def within_hours(now: float, hours: tuple[int, int]) -> bool:
    start, end = hours
    hour = time.localtime(now).tm_hour
    return start <= hour < end if start < end else hour >= start or hour < end


@dataclass
class Scrub:
    outbox: Outbox
    audit: Audit
    clock: Clock
    rate_mb_s: int
    hours: tuple[int, ...] = (0, 24)
    target: str | None = None  # the NAS configured now (see worker.target_of)
    next_at: float = 0.0
    bytes_read: int = 0  # since the worker started (the bench's and the tests' measure)

    def step(self, storage: Storage) -> float:
        """Re-reads one copy if one is due and the rate allows; returns the wait until the
        next may be read."""
        now = self.clock.now()
        if self.rate_mb_s <= 0:
            return IDLE
        if now < self.next_at:
            return self.next_at - now
        if not within_hours(now, (self.hours[0], self.hours[1])):
            return IDLE
        row = self.outbox.scrub_next(self.target)
        if row is None:
            return IDLE
        data: bytes | None = None
        problem: str | None = None
        try:
            data = storage.read(row["remote_path"])
        except ConnectionFailed:
            return IDLE  # the mirror notices the NAS is gone at its next pass
        except StorageError as exc:
            problem = f"unreadable: {exc}"
        if data is not None and hashlib.sha256(data).hexdigest() != row["sha256"]:
            problem = (f"differs from the SHA-256 recorded when it was spooled ({len(data)} "
                       f"bytes, {row['size']} expected)")
        read = len(data) if data is not None else 0
        self.bytes_read += read
        # The cap: the next read starts once this one's bytes fit the rate.
        self.next_at = self.clock.now() + max(read, 4096) / (self.rate_mb_s * 1e6)
        if problem is None:
            self.outbox.verified(row["instance_id"], row["gen"])
        elif self.outbox.requeue_damaged(row["instance_id"], row["gen"]):
            self.audit.record("nas_scrub_mismatch", actor="system", ip="", outcome=FAILURE,
                              target=row["instance_id"], path=row["remote_path"],
                              error=problem)
        return max(0.0, self.next_at - self.clock.now())
