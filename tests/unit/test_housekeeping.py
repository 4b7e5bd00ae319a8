"""housekeeping.py: the audit chain head exported when it moves, and pruning once a day."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from fakes import FakeLog, FakeOrthanc
from orthanc_nas.audit import HEAD_FILE, Audit, read_head
from orthanc_nas.audit.access import AccessRecorder
from orthanc_nas.auth.lockout import Lockout
from orthanc_nas.clock import ManualClock
from orthanc_nas.db import SqliteDatabase
from orthanc_nas.housekeeping import DAY, Housekeeping


def make(tmp_path: Path) -> tuple[Housekeeping, Audit, ManualClock, FakeLog]:
    db = SqliteDatabase(tmp_path / "h.sqlite")
    clock, log = ManualClock(), FakeLog()
    audit = Audit(db, clock, b"k" * 32)
    access = AccessRecorder(db, audit, FakeOrthanc(), clock, log.warning)
    lockout = Lockout(db, clock, max_failures=5, duration_seconds=60, account_max=50,
                      account_window_seconds=3600)
    return (Housekeeping(audit, access, lambda: lockout, clock, log, tmp_path / HEAD_FILE,
                         retention_days=30, interval_seconds=60), audit, clock, log)


def test_the_head_is_exported_when_it_moves(tmp_path: Path) -> None:
    house, audit, _clock, log = make(tmp_path)
    audit.record("login", actor="anna", ip="10.0.0.1")
    house.once()
    head = read_head(tmp_path / HEAD_FILE)
    assert head == audit.head() and any("audit chain head" in line for line in log.lines)
    lines = len(log.lines)
    house.once()  # unchanged: not logged again
    assert len(log.lines) == lines


def test_rows_past_retention_are_pruned_once_a_day(tmp_path: Path) -> None:
    house, audit, clock, log = make(tmp_path)
    audit.record("login", actor="anna", ip="10.0.0.1")
    house.once()
    clock.advance(31 * DAY)
    audit.record("logout", actor="anna", ip="10.0.0.1")  # kept: the chain goes on from it
    house.once()
    assert any("pruned 1 audit rows" in line for line in log.lines)
    assert json.loads((tmp_path / HEAD_FILE).read_text())["id"] >= 1


def test_a_failure_is_logged_and_the_loop_goes_on(tmp_path: Path) -> None:
    house, _audit, _clock, log = make(tmp_path)
    stop = threading.Event()

    def broken() -> None:
        stop.set()
        raise OSError("disk full")

    house.once = broken  # type: ignore[method-assign]
    house.run(stop)
    assert any("housekeeping failed: OSError: disk full" in line for line in log.lines)
