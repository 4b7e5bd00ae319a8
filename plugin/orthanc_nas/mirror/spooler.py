"""Takes received instances off the ingest path.

Orthanc's on-stored hook only hands the instance's bytes over (a list append); this thread
spools them (a hard link to Orthanc's own file where it can, else a copy) and queues them in
the outbox, a batch per transaction, then wakes the worker once. The bytes are held in memory
for milliseconds (``pending_bytes`` is bounded: the hook waits when a burst outruns the disk).
Should Orthanc die in that window, the instances are still in Orthanc and the worker's
reconciliation at the next start queues them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .outbox import Outbox, StoredLookup

MAX_PENDING_BYTES = 256 * 1024 * 1024
BATCH = 200
ATTEMPTS = 3
RETRY_SECONDS = 1.0


class Spooler:
    def __init__(self, outbox: Outbox, wake: Callable[[], None],
                 on_error: Callable[[str], None],
                 stored: StoredLookup = lambda _id: None,
                 max_pending_bytes: int = MAX_PENDING_BYTES) -> None:
        self._outbox = outbox
        self._stored = stored
        self._wake = wake
        self._on_error = on_error
        self._max = max_pending_bytes
        self._items: list[tuple[str, bytes]] = []
        self._writing = 0  # items taken by the thread, not yet committed
        self.pending_bytes = 0
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def submit(self, instance_id: str, data: bytes) -> None:
        """Called by the hook: queues the bytes (waits while too many are pending)."""
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="orthanc-nas-spooler",
                                                daemon=True)
                self._thread.start()
            while self.pending_bytes > self._max:
                self._cond.wait()
            self._items.append((instance_id, data))
            self.pending_bytes += len(data)
            self._cond.notify_all()

    def backlog(self) -> int:
        """Instances received but not yet in the outbox."""
        with self._cond:
            return len(self._items) + self._writing

    def flush(self, timeout: float = 60.0) -> bool:
        """Waits until everything submitted is in the outbox; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._items and not self._writing, timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._items))
                batch, self._items = self._items[:BATCH], self._items[BATCH:]
                self._writing = len(batch)
            for attempt in range(ATTEMPTS):
                try:
                    self._outbox.record_stored_many(batch, self._stored)
                    break
                except Exception as exc:  # the database is locked or broken: try again,
                    if attempt == ATTEMPTS - 1:  # then leave them to reconciliation
                        self._on_error(f"{len(batch)} instances: {type(exc).__name__}: {exc}")
                    else:
                        time.sleep(RETRY_SECONDS)
            with self._cond:
                self._writing = 0
                self.pending_bytes -= sum(len(data) for _, data in batch)
                self._cond.notify_all()
            self._wake()
