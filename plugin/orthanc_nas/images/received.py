"""Instances received, per day and source, for the dashboard: every way in counts.

Sources: ``dicom`` (C-STORE; origin: the calling AE title), ``upload`` (``POST /instances``;
origin: the uploader), ``stow`` (DICOMweb STOW-RS; origin: the uploader) and ``other``
(made inside Orthanc: modified or anonymized copies, scripts). The ingest hook only adds one
to a counter in memory (it runs while the modality waits); ``flush`` adds the counters to the
database, every few seconds and before each reading. A crash loses at most those seconds.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from ..clock import Clock
from ..db import Database

DICOM, UPLOAD, STOW, OTHER = "dicom", "upload", "stow", "other"
DAY = 86400.0


class Received:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        self._counts: dict[tuple[str, str, str], int] = {}
        self._lock = threading.Lock()

    def count(self, source: str, origin: str = "") -> None:
        """One instance received (the ingest path: no I/O)."""
        day = time.strftime("%Y-%m-%d", time.gmtime(self._clock.now()))
        key = (day, source, origin[:64])
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1

    def flush(self) -> None:
        with self._lock:
            counts, self._counts = self._counts, {}
        if not counts:
            return
        with self._db.transaction(invalidates=False) as tx:
            for (day, source, origin), n in counts.items():
                tx.execute("INSERT INTO received_daily VALUES (?, ?, ?, ?)"
                           " ON CONFLICT(day, source, origin)"
                           " DO UPDATE SET instances = received_daily.instances + ?",
                           (day, source, origin, n, n))

    def _since(self, days: int) -> str:
        return time.strftime("%Y-%m-%d", time.gmtime(self._clock.now() - (days - 1) * DAY))

    def per_day(self, days: int = 30) -> list[dict[str, Any]]:
        """Instances per day and source over the last ``days`` days (UTC days)."""
        self.flush()
        rows = self._db.all("SELECT day, source, SUM(instances) AS n FROM received_daily"
                            " WHERE day >= ? GROUP BY day, source ORDER BY day, source",
                            (self._since(days),))
        return [{"day": r["day"], "source": r["source"], "instances": r["n"]} for r in rows]

    def by_origin(self, days: int = 30) -> list[dict[str, Any]]:
        """Totals per source and origin (AE title or user), largest first."""
        self.flush()
        rows = self._db.all("SELECT source, origin, SUM(instances) AS n FROM received_daily"
                            " WHERE day >= ? GROUP BY source, origin ORDER BY n DESC, source,"
                            " origin", (self._since(days),))
        return [{"source": r["source"], "origin": r["origin"], "instances": r["n"]}
                for r in rows]
