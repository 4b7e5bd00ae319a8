"""Injectable time: the wall clock, or (tests only) the wall clock shifted by an offset file."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""


class SystemClock:
    def now(self) -> float:
        return time.time()


class OffsetClock:
    """Wall clock plus the number of seconds written in ``path``, read at every call.

    Enabled only by the ORTHANC_NAS_TEST_CLOCK_FILE environment variable, so integration
    tests can drive timeouts, lockouts and expiries without sleeping. Reading every time
    (as the C gate does) costs microseconds and never serves a stale offset: a cache keyed
    on mtime and size missed two same-sized writes within one kernel clock tick.
    """

    def __init__(self, path: Path) -> None:
        self._path = path

    def now(self) -> float:
        try:
            offset = float(self._path.read_text().strip() or 0)
        except (OSError, ValueError):
            offset = 0.0
        return time.time() + offset


class ManualClock:
    """A clock that only moves when told (unit tests)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds
