"""The mirror's backlog and throughput over time, for the NAS page's 24-hour chart."""

from __future__ import annotations

from typing import Any

from ..clock import Clock
from ..db import Database

INTERVAL = 300.0  # seconds between two samples
KEEP = 2 * 86400.0  # samples older than this are removed


class MirrorSamples:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        self._last = 0.0

    def maybe_record(self, status: dict[str, Any]) -> bool:
        """Records ``status`` (MirrorService.status) when a sample is due; True if it did."""
        now = self._clock.now()
        if not status.get("enabled") or now - self._last < INTERVAL:
            return False
        self._last = now
        with self._db.transaction(invalidates=False) as tx:
            tx.execute("INSERT INTO mirror_samples VALUES (?, ?, ?, ?) ON CONFLICT(ts) DO UPDATE"
                       " SET pending = excluded.pending, failed = excluded.failed,"
                       " throughput_bps = excluded.throughput_bps",
                       (now, int(status.get("pending", 0)), int(status.get("failed", 0)),
                        float(status.get("throughput_bytes_per_second") or 0.0)))
            tx.execute("DELETE FROM mirror_samples WHERE ts < ?", (now - KEEP,))
        return True

    def last_day(self) -> list[dict[str, Any]]:
        rows = self._db.all("SELECT ts, pending, failed, throughput_bps FROM mirror_samples"
                            " WHERE ts >= ? ORDER BY ts", (self._clock.now() - 86400.0,))
        return [{"ts": r["ts"], "pending": r["pending"], "failed": r["failed"],
                 "throughput_bytes_per_second": r["throughput_bps"]} for r in rows]
