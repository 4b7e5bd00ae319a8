"""The spooler takes received instances off the ingest path: everything submitted reaches the
outbox, a burst is bounded in memory, and failures are retried, then reported."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

import pytest

from orthanc_nas.clock import ManualClock
from orthanc_nas.db import SqliteDatabase
from orthanc_nas.mirror import spooler as spooler_module
from orthanc_nas.mirror.outbox import Outbox, StoredCopy
from orthanc_nas.mirror.spooler import Spooler

WAIT = 10.0


def make(tmp_path: Path) -> tuple[Outbox, SqliteDatabase]:
    db = SqliteDatabase(tmp_path / "db.sqlite")
    return Outbox(db, tmp_path / "spool", ManualClock()), db


def test_everything_submitted_reaches_the_outbox_and_wakes_the_worker(tmp_path: Path) -> None:
    outbox, db = make(tmp_path)
    wakes: list[int] = []
    spooler = Spooler(outbox, lambda: wakes.append(1), lambda _m: None)
    for i in range(500):
        spooler.submit(f"inst-{i}", bytes([i % 256]) * 100)
    assert spooler.flush(WAIT)
    rows = db.all("SELECT instance_id, spool, size, state FROM mirror_queue")
    assert len(rows) == 500 and {r["state"] for r in rows} == {"pending"}
    assert all((outbox.spool_dir / r["spool"]).read_bytes() == bytes([int(
        r["instance_id"][5:]) % 256]) * 100 for r in rows)
    assert wakes and len(wakes) <= 500 and spooler.pending_bytes == 0


def test_a_duplicate_replaces_the_pending_spool_file(tmp_path: Path) -> None:
    outbox, db = make(tmp_path)
    spooler = Spooler(outbox, lambda: None, lambda _m: None)
    spooler.submit("inst-1", b"first")
    assert spooler.flush(WAIT)
    spooler.submit("inst-1", b"second")
    assert spooler.flush(WAIT)
    row = db.one("SELECT spool, gen FROM mirror_queue WHERE instance_id = 'inst-1'")
    assert row is not None and row["gen"] == 2
    assert [p.read_bytes() for p in outbox.spool_dir.iterdir()] == [b"second"]


def test_a_burst_waits_when_too_many_bytes_are_pending(tmp_path: Path) -> None:
    outbox, db = make(tmp_path)
    release = threading.Event()
    real = outbox.record_stored_many

    def slow(batch: list[tuple[str, bytes]], stored_file: Any) -> None:
        release.wait(WAIT)
        real(batch, stored_file)

    outbox.record_stored_many = slow  # type: ignore[method-assign]
    spooler = Spooler(outbox, lambda: None, lambda _m: None, max_pending_bytes=1000)
    spooler.submit("inst-0", b"x" * 1500)  # taken by the thread, which now waits
    submitted = threading.Event()

    def hook() -> None:
        spooler.submit("inst-1", b"y" * 10)
        submitted.set()

    threading.Thread(target=hook, daemon=True).start()
    assert not submitted.wait(0.3)  # held back: 1,500 bytes pending > 1,000
    release.set()
    assert submitted.wait(WAIT) and spooler.flush(WAIT)
    assert len(db.all("SELECT 1 FROM mirror_queue")) == 2


def test_database_failures_are_retried_then_reported(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spooler_module, "RETRY_SECONDS", 0.0)
    outbox, db = make(tmp_path)
    failures = [RuntimeError("database is locked")] * 2
    real = outbox.record_stored_many

    def flaky(batch: list[tuple[str, bytes]], stored_file: Any) -> None:
        if failures:
            raise failures.pop()
        real(batch, stored_file)

    outbox.record_stored_many = flaky  # type: ignore[method-assign]
    errors: list[str] = []
    spooler = Spooler(outbox, lambda: None, errors.append)
    spooler.submit("inst-1", b"data")
    assert spooler.flush(WAIT)
    assert errors == [] and len(db.all("SELECT 1 FROM mirror_queue")) == 1
    failures.extend([RuntimeError("disk I/O error")] * spooler_module.ATTEMPTS)
    spooler.submit("inst-2", b"data")
    assert spooler.flush(WAIT)
    assert len(errors) == 1 and "disk I/O error" in errors[0]


def test_an_instance_that_cannot_be_spooled_is_fetched_from_orthanc(tmp_path: Path) -> None:
    outbox, db = make(tmp_path)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    outbox.spool_dir = blocker  # every spool write fails (as on a full disk)
    outbox.record_stored_many([("inst-1", b"data")])
    row = db.one("SELECT spool, state FROM mirror_queue WHERE instance_id = 'inst-1'")
    assert row is not None and row["spool"] is None and row["state"] == "pending"


def test_orthancs_own_file_is_linked_not_copied(tmp_path: Path) -> None:
    outbox, db = make(tmp_path)
    stored = tmp_path / "orthanc-storage" / "ab" / "cd" / "abcd-file"
    stored.parent.mkdir(parents=True)
    stored.write_bytes(b"the dicom bytes")
    outbox.record_stored_many([("linked", b"the dicom bytes"), ("unknown", b"x")],
                              lambda i: StoredCopy(stored, md5(b"the dicom bytes"))
                              if i == "linked" else None)
    spools = spool_files(outbox, db)
    assert spools["linked"].stat().st_ino == stored.stat().st_ino  # the same file, no copy
    assert spools["unknown"].read_bytes() == b"x"
    stored.unlink()  # Orthanc deletes its copy: the spool keeps the bytes
    assert spools["linked"].read_bytes() == b"the dicom bytes"


def test_what_orthanc_kept_is_mirrored_not_a_refused_duplicate(tmp_path: Path) -> None:
    """A duplicate re-sent with other bytes: Orthanc keeps its first copy (OverwriteInstances
    off) and still runs the hook with the bytes it refused."""
    outbox, db = make(tmp_path)
    kept = tmp_path / "orthanc-storage" / "kept"
    kept.parent.mkdir()
    kept.write_bytes(b"genuine")
    outbox.record_stored_many(
        [("plain", b"forged!!"), ("compressed", b"forged!!"), ("same", b"genuine")],
        lambda i: StoredCopy(kept if i == "plain" else None, md5(b"genuine")))
    spools = spool_files(outbox, db)
    assert spools["plain"].read_bytes() == b"genuine"  # Orthanc's file, whatever its size
    assert "compressed" not in spools  # not spooled: the worker fetches Orthanc's bytes
    assert spools["same"].read_bytes() == b"genuine"
    row = db.one("SELECT spool, state FROM mirror_queue WHERE instance_id = 'compressed'")
    assert row is not None and row["spool"] is None and row["state"] == "pending"


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def spool_files(outbox: Outbox, db: SqliteDatabase) -> dict[str, Path]:
    return {r["instance_id"]: outbox.spool_dir / r["spool"]
            for r in db.all("SELECT instance_id, spool FROM mirror_queue") if r["spool"]}
