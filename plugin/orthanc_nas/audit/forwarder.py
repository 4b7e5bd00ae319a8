"""Forwarding of the audit trail to a syslog collector, as DICOM audit messages.

The trail is the durable queue: ``audit_forward.last_id`` is the last row the collector has
been given, and it only moves after ``Sender.send`` returned, so an outage of the collector (or
of the plugin) loses nothing; rows are sent again at worst (at least once, never silently
dropped). Rows are read in id order; ids are assigned under the writer lock, so a lower id can
never commit after a higher one has been read.

Each message is ``frame(audit_message(row))`` with MSGID ``DICOM+RFC3881`` (the value PS3.15
A.7 suggests, which collectors filter on; the plugin's own event name is in the XML), the
row's time as TIMESTAMP and a severity from its outcome (``severity_for``).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from typing import Any

from ..clock import Clock
from ..db import Database, Row
from ..logs import Log
from .message import audit_message, outcome_indicator
from .syslog import (
    AUTHPRIV,
    Sender,
    SyslogUnavailable,
    TcpSender,
    UdpSender,
    frame,
    severity_for,
)
from .trail import COLUMNS, EVENT_NAMES

MSGID = "DICOM+RFC3881"
BACKOFF_START = 1.0  # seconds after the first failure, doubling...
BACKOFF_MAX = 60.0  # ...up to this
STOP_CHECK = 0.5  # longest wait without looking at the stop event



def backoff(failures: int) -> float:
    """Wait after ``failures`` consecutive failed passes: 1 s, 2 s, 4 s... at most 60 s."""
    return min(BACKOFF_START * 2.0 ** min(max(failures - 1, 0), 16), BACKOFF_MAX)


class Forwarder:
    """Sends the rows after the cursor, a batch at a time, and moves the cursor past them."""

    def __init__(self, db: Database, sender_factory: Callable[[], Sender], clock: Clock,
                 log: Log, *, source_id: str, hostname: str, app_name: str = "orthanc-nas",
                 facility: int = AUTHPRIV, batch: int = 200) -> None:
        if not 0 <= facility <= 23:
            raise ValueError(f"syslog facility must be 0 to 23, not {facility}")
        if batch < 1:
            raise ValueError("batch must be at least 1")
        self._db = db
        self._sender_factory = sender_factory
        self._clock = clock
        self._log = log
        self._source_id = source_id or hostname
        self._hostname = hostname
        self._app_name = app_name
        self._facility = facility
        self._batch = batch
        self._sender: Sender | None = None
        self._lock = threading.Lock()
        self._gap_warned: tuple[int, int] | None = None
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.last_success_at: float | None = None
        self.failing = False

    # ---- one pass ---------------------------------------------------------------------------

    def forward_once(self) -> int:
        """Sends the next batch; returns how many rows the collector was given (0 when nothing
        is pending or the collector is unavailable: see ``last_error``)."""
        return self._pass()[0]

    def _pass(self) -> tuple[int, bool]:
        """(rows sent, whether the pass succeeded)."""
        with self._lock:
            cursor = self._cursor()
            rows = self._db.all(f"SELECT {', '.join(COLUMNS)} FROM audit"  # noqa: S608
                                " WHERE id > ? ORDER BY id LIMIT ?",
                                (cursor or 0, self._batch))
            if not rows:
                self._check_rewound(cursor)
                return 0, True
            self._check_gap(cursor, rows[0]["id"])
            messages = [self._frame(row) for row in rows]
            try:
                if self._sender is None:
                    self._sender = self._sender_factory()
                self._sender.send(messages)
            except SyslogUnavailable as exc:
                self._unavailable(str(exc), len(rows))
                return 0, False
            last_id = rows[-1]["id"]
            now = self._clock.now()
            with self._db.transaction(invalidates=False) as tx:
                tx.execute("INSERT INTO audit_forward VALUES (1, ?, ?) ON CONFLICT(id)"
                           " DO UPDATE SET last_id = excluded.last_id,"
                           " updated_at = excluded.updated_at", (last_id, now))
            self.last_success_at = now
            if self.failing:
                self.failing = False
                self._log.info("OrthancNAS: audit forwarding to syslog resumed")
            return len(rows), True

    def _frame(self, row: Row) -> bytes:
        item: dict[str, Any] = {c: row[c] for c in COLUMNS}
        item["event_name"] = EVENT_NAMES.get(item["event_code"] or "", "")
        # details stay the JSON text the chain covers
        return frame(audit_message(item, source_id=self._source_id), ts=float(item["ts"] or 0),
                     hostname=self._hostname, app_name=self._app_name, msgid=MSGID,
                     severity=severity_for(outcome_indicator(item)), facility=self._facility)

    def _unavailable(self, error: str, pending: int) -> None:
        self._drop_sender()
        if not self.failing or error != self.last_error:
            self._log.warning(f"OrthancNAS: audit forwarding: {error}; the rows stay queued "
                              f"(at least {pending})")
        self.failing = True
        self.last_error = error
        self.last_error_at = self._clock.now()

    def _cursor(self) -> int | None:
        row = self._db.one("SELECT last_id FROM audit_forward WHERE id = 1")
        return int(row["last_id"]) if row else None

    def _check_gap(self, cursor: int | None, first_id: int) -> None:
        """Rows pruned by retention before they could be forwarded: say so, once."""
        if cursor is None or first_id <= cursor + 1 or self._gap_warned == (cursor, first_id):
            return
        self._gap_warned = (cursor, first_id)
        self._log.warning(f"OrthancNAS: audit rows {cursor + 1} to {first_id - 1} were pruned "
                          f"before they could be forwarded to syslog; continuing at {first_id}")

    def _check_rewound(self, cursor: int | None) -> None:
        """The trail ends before the cursor (its tail was cut, or the database was replaced):
        move the cursor back, else the next rows would never be forwarded."""
        if cursor is None:
            return
        row = self._db.one("SELECT MAX(id) AS last FROM audit")
        last = int(row["last"]) if row and row["last"] is not None else 0
        if last >= cursor:
            return
        with self._db.transaction(invalidates=False) as tx:
            tx.execute("UPDATE audit_forward SET last_id = ?, updated_at = ? WHERE id = 1"
                       " AND last_id = ?", (last, self._clock.now(), cursor))
        self._log.warning(f"OrthancNAS: the audit trail ends at row {last} but row {cursor} was "
                          f"already forwarded to syslog: rows were removed; forwarding from "
                          f"{last + 1}")

    def _drop_sender(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None:
            with contextlib.suppress(OSError):
                sender.close()

    # ---- state ------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        cursor = self._cursor()
        row = self._db.one("SELECT COUNT(*) AS n FROM audit WHERE id > ?", (cursor or 0,))
        return {"enabled": True, "last_id": cursor, "pending": int(row["n"]) if row else 0,
                "last_error": self.last_error, "last_error_at": self.last_error_at,
                "last_success_at": self.last_success_at, "failing": self.failing}

    def close(self) -> None:
        with self._lock:
            self._drop_sender()

    # ---- the background loop ----------------------------------------------------------------

    def run(self, stop: threading.Event, wake: threading.Event, interval: float = 2.0) -> None:
        """Forwards until nothing is pending, then waits for ``wake`` (set it when rows were
        written; set it after ``stop`` too, to stop at once) or ``interval`` seconds. After a
        failure it waits 1 s, 2 s, 4 s... up to 60 s, and only ``stop`` interrupts that."""
        failures = 0
        try:
            while not stop.is_set():
                wake.clear()
                if self._drain(stop):
                    failures = 0
                    _wait_either(stop, wake, interval)
                else:
                    failures += 1
                    stop.wait(backoff(failures))
        finally:
            self.close()

    def _drain(self, stop: threading.Event) -> bool:
        """Full batches until a short one; False when a pass failed."""
        try:
            while not stop.is_set():
                sent, ok = self._pass()
                if not ok:
                    return False
                if sent < self._batch:
                    return True
            return True
        except Exception as exc:  # a database error or a bug: never end the loop
            self.failing = True
            self.last_error = f"internal error: {type(exc).__name__}"
            self.last_error_at = self._clock.now()
            self._log.error(f"OrthancNAS: audit forwarding failed: {type(exc).__name__}")
            return False


def _wait_either(stop: threading.Event, wake: threading.Event, timeout: float) -> None:
    """Until ``wake`` or ``stop`` is set, or ``timeout`` seconds passed."""
    remaining = timeout
    while remaining > 0 and not stop.is_set():
        step = min(remaining, STOP_CHECK)
        if wake.wait(step):
            return
        remaining -= step


def forwarder_from_config(db: Database, clock: Clock, log: Log,
                          syslog: dict[str, Any]) -> Forwarder | None:
    """The forwarder the ``audit.syslog`` section describes; None when it is not enabled."""
    if not syslog["enabled"]:
        return None

    def sender() -> Sender:
        kind = TcpSender if syslog["protocol"] == "tcp" else UdpSender
        return kind(syslog["host"], syslog["port"])

    hostname = socket.gethostname()
    return Forwarder(db, sender, clock, log, source_id=syslog["source_id"] or hostname,
                     hostname=hostname, app_name=syslog["app_name"],
                     facility=syslog["facility"])
