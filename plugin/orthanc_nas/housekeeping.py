"""Background upkeep, every ``audit.head_interval_minutes``: exports the audit chain head (the
log, and the head file the mirror worker copies to the NAS), and once a day prunes what is past
its retention (audit rows, access bursts, lockout records)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

from .audit import Audit, read_head
from .audit.access import AccessRecorder
from .auth.lockout import Lockout
from .clock import Clock
from .logs import Log

DAY = 86400.0


class Housekeeping:
    def __init__(self, audit: Audit, access: AccessRecorder, lockout: Callable[[], Lockout],
                 clock: Clock, log: Log, head_file: Path, retention_days: float,
                 interval_seconds: float) -> None:
        self.audit = audit
        self.access = access
        self.lockout = lockout  # the effective lockout settings, read each time
        self.clock = clock
        self.log = log
        self.head_file = head_file
        self.retention_days = retention_days
        self.interval = interval_seconds
        self._last_prune = 0.0

    def once(self) -> None:
        head = self.audit.head()
        if head is not None and head != read_head(self.head_file):
            tmp = self.head_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(head))
            tmp.replace(self.head_file)
            self.log.warning(f"OrthancNAS: audit chain head id={head['id']} mac={head['mac']}")
        now = self.clock.now()
        if now - self._last_prune >= DAY:
            self._last_prune = now
            removed = self.audit.prune(now - self.retention_days * DAY, "system")
            self.access.prune()
            self.lockout().prune()
            if removed:
                self.log.warning(f"OrthancNAS: pruned {removed} audit rows past retention")

    def run(self, stop: threading.Event) -> None:
        """Until ``stop``: a failure is logged and retried next time, never silently dies."""
        while not stop.is_set():
            try:
                self.once()
            except Exception as exc:
                self.log.error(f"OrthancNAS: housekeeping failed: {type(exc).__name__}: {exc}")
            stop.wait(self.interval)
