"""Backups without Orthanc: the key and file format (wrong passphrase, tampering), the
snapshot, retention, the schedule, one run against a local NAS folder, the outbox leaving a
restored instance alone, and verify-only catching a damaged NAS copy."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from dicom_factory import ct_instance
from orthanc_nas.audit import Audit
from orthanc_nas.backup import crypto, restore, runner, snapshot, store
from orthanc_nas.backup.service import BackupService, Schedule
from orthanc_nas.clock import ManualClock
from orthanc_nas.db import SqliteDatabase
from orthanc_nas.keys import KEY_FILE, KeyRing, load_or_create_key
from orthanc_nas.mirror.outbox import Outbox
from orthanc_nas.nas.storage import LocalStorage
from orthanc_nas.settings import Settings


def dicom_bytes() -> bytes:
    out = io.BytesIO()
    ct_instance().save_as(out, enforce_file_format=True)
    return out.getvalue()


FAST = {"n": 2**10, "r": 8, "p": 1}  # scrypt made cheap for unit tests only
PASS = "correct horse battery staple"


@pytest.fixture(scope="module")
def bundle() -> crypto.KeyBundle:
    return crypto.new_key(PASS, **FAST)


def test_a_backup_opens_with_its_passphrase_only(bundle: crypto.KeyBundle) -> None:
    blob = crypto.seal(bundle, b"state", {"name": "x"})
    meta, payload = crypto.unseal(blob, PASS)
    assert (meta, payload) == ({"name": "x"}, b"state")
    with pytest.raises(crypto.WrongPassphrase, match="passphrase"):
        crypto.unseal(blob, PASS + "!")
    assert PASS.encode() not in blob and b"state" not in blob


def test_the_key_bundle_holds_no_usable_secret(bundle: crypto.KeyBundle) -> None:
    again = crypto.KeyBundle.from_json(json.loads(json.dumps(bundle.to_json())))
    assert again == bundle
    crypto.open_key(again, PASS)
    with pytest.raises(crypto.WrongPassphrase):
        crypto.open_key(again, "another long passphrase")


@pytest.mark.parametrize("where", ["header", "ciphertext", "tag", "sealed key"])
def test_any_altered_byte_is_refused(bundle: crypto.KeyBundle, where: str) -> None:
    blob = bytearray(crypto.seal(bundle, b"x" * 1000, {"created": 1.0}))
    header, start = crypto.read_header(bytes(blob))
    if where == "header":  # the creation date, still valid JSON
        blob = bytearray(bytes(blob).replace(b'"created": 1.0', b'"created": 2.0'))
        with pytest.raises(crypto.TamperedBackup):
            crypto.unseal(bytes(blob), PASS)
        return
    if where == "sealed key":
        sealed = header["key"]["sealed"]
        flipped = ("0" if sealed[-1] != "0" else "1")
        blob = bytearray(bytes(blob).replace(sealed.encode(), (sealed[:-1] + flipped).encode()))
        with pytest.raises(crypto.WrongPassphrase):
            crypto.unseal(bytes(blob), PASS)
        return
    blob[start + 10 if where == "ciphertext" else -1] ^= 1
    with pytest.raises(crypto.TamperedBackup):
        crypto.unseal(bytes(blob), PASS)


def test_a_short_passphrase_is_refused() -> None:
    with pytest.raises(ValueError, match="12"):
        crypto.new_key("short", **FAST)


def test_not_a_backup_is_said_so() -> None:
    with pytest.raises(crypto.BackupFormatError):
        crypto.unseal(b"PK\x03\x04 a zip file", PASS)


def _backup(start: dt.datetime, days: int, per_day: int = 1) -> list[store.BackupFile]:
    out = []
    for d in range(days):
        for h in range(per_day):
            t = (start + dt.timedelta(days=d, hours=h)).timestamp()
            out.append(store.BackupFile(store.name_for(t), t, 100))
    return out


def test_retention_keeps_n_daily_and_m_weekly() -> None:
    backups = _backup(dt.datetime(2026, 1, 1, 2, tzinfo=dt.UTC), 60, per_day=2)
    gone = {b.name for b in store.to_delete(backups, keep_daily=7, keep_weekly=4)}
    kept = sorted((b for b in backups if b.name not in gone), key=lambda b: -b.created)
    days = {dt.datetime.fromtimestamp(b.created, dt.UTC).date() for b in kept}
    assert len(kept) == len(days)  # one per day at most: the newest of that day
    assert kept[0] == max(backups, key=lambda b: b.created)
    assert 7 <= len(kept) <= 11
    weeks = {dt.datetime.fromtimestamp(b.created, dt.UTC).isocalendar()[:2] for b in kept}
    assert len(weeks) >= 4
    assert store.to_delete(backups[:1], 1, 0) == []


def test_names_round_trip() -> None:
    name = store.name_for(1_700_000_000.0)
    assert store.created_of(name) == 1_700_000_000.0
    assert store.created_of("evil/../x.onasbk") is None


def test_schedule_slots() -> None:
    daily = Schedule(True, 24, "02:00")
    now = dt.datetime(2026, 3, 10, 1, 0).timestamp()
    assert daily.last_slot(now) == dt.datetime(2026, 3, 9, 2, 0).timestamp()
    now = dt.datetime(2026, 3, 10, 2, 0).timestamp()
    assert daily.last_slot(now) == now
    six = Schedule(True, 6, "01:30")
    now = dt.datetime(2026, 3, 10, 14, 0).timestamp()
    assert six.last_slot(now) == dt.datetime(2026, 3, 10, 13, 30).timestamp()


def make_state(tmp: Path) -> tuple[SqliteDatabase, Path, Audit]:
    db = SqliteDatabase(tmp / "orthanc-nas.sqlite")
    key_path = tmp / KEY_FILE
    audit = Audit(db, ManualClock(), KeyRing(load_or_create_key(key_path)).key("audit-chain"))
    for i in range(5):
        audit.record("login", actor=f"u{i}", ip="127.0.0.1")
    return db, key_path, audit


def test_a_run_writes_a_verified_backup_and_verify_finds_damage(tmp_path: Path,
                                                                bundle: crypto.KeyBundle) -> None:
    data, nas_dir = tmp_path / "data", tmp_path / "nas"
    data.mkdir()
    nas_dir.mkdir()
    db, key_path, _ = make_state(data)
    dicom = dicom_bytes()
    nas_dir.joinpath("p").mkdir()
    nas_dir.joinpath("p/a.dcm").write_bytes(dicom)
    with db.transaction() as tx:
        tx.execute("INSERT INTO mirror_queue (instance_id, state, source, size, sha256,"
                   " remote_path, enqueued_at) VALUES ('i1', 'done', 'store', ?, ?, 'p/a.dcm', 0)",
                   (len(dicom), hashlib.sha256(dicom).hexdigest()))
    storage = LocalStorage(str(nas_dir), [str(nas_dir)])
    clock = ManualClock()
    job = runner.Job(data / "orthanc-nas.sqlite", key_path, bundle.to_json(), 7, 4, "admin",
                     "api")
    result = runner.run(job, storage, clock)
    assert result["ok"], result
    assert runner.read_status(data)["last_ok"] is True
    name, blob = restore.fetch(storage, None)
    assert name == result["name"] and len(blob) == result["size"]
    assert key_path.read_bytes() not in blob
    meta, snap = restore.open_backup(blob, PASS)
    assert snap.key == key_path.read_bytes() and snap.manifest["counts"]["audit"] == 6
    report = restore.verify(storage, name, meta, snap, clock)
    assert report["ok"] and report["catalog_instances"] == 1 and report["audit_chain"]["ok"]
    damaged = bytearray(dicom)
    damaged[-1] ^= 0xFF  # same size: only SHA-256 sees it
    nas_dir.joinpath("p/a.dcm").write_bytes(bytes(damaged))
    report = restore.verify(storage, name, meta, snap, clock)
    assert not report["ok"] and report["damaged_files"] == ["p/a.dcm"]
    assert restore.verify(storage, name, meta, snap, clock, quick=True)["ok"]


def test_a_failed_run_is_audited_and_recorded(tmp_path: Path, bundle: crypto.KeyBundle) -> None:
    db, key_path, audit = make_state(tmp_path)
    storage = LocalStorage(str(tmp_path / "missing"), [str(tmp_path)])
    job = runner.Job(tmp_path / "orthanc-nas.sqlite", key_path, bundle.to_json(), 7, 4, "system",
                     "schedule")
    result = runner.run(job, storage, ManualClock())
    assert not result["ok"]
    status = runner.read_status(tmp_path)
    assert status["last_ok"] is False and "does not exist" in status["last_error"]
    row = db.one("SELECT event, outcome, outcome_code FROM audit ORDER BY id DESC LIMIT 1")
    assert row is not None and tuple(row) == ("backup_failed", "failure", 8)
    assert audit.verify().ok


def test_health_fails_after_a_failed_backup_and_when_overdue(tmp_path: Path,
                                                             bundle: crypto.KeyBundle) -> None:
    db, _, audit = make_state(tmp_path)
    clock = ManualClock(dt.datetime(2026, 3, 10, 12, 0).timestamp())
    settings = Settings(db, clock)
    calls: list[list[str]] = []

    def child(args: list[str], stdin: dict[str, Any], timeout: int) -> dict[str, Any]:
        calls.append(args)
        return {"ok": True, "bundle": bundle.to_json(), "fingerprint": bundle.fingerprint()}

    cfg = {"enabled": True, "every_hours": 24, "start_time": "02:00", "keep_daily": 7,
           "keep_weekly": 4}
    nas = {"type": "local", "path": str(tmp_path), "host": "", "share": ""}
    svc = BackupService(cfg, db, settings, audit, clock, tmp_path, lambda: nas, ["python"], {},
                        child)
    assert svc.health()["ok"] and not svc.due()  # no passphrase: nothing asked of it
    svc.set_passphrase(PASS, "admin", "127.0.0.1")
    assert svc.due() and svc.health()["ok"]
    clock.advance(86400)  # a slot passed with no backup
    assert not svc.health()["ok"] and svc.health()["overdue"]
    (tmp_path / runner.STATUS_FILE).write_text(json.dumps(
        {"last_attempt": clock.now(), "last_ok": False, "last_error": "NAS down"}))
    assert svc.health() == {"ok": False, "configured": True, "overdue": True,
                            "last_success": None, "last_error": "NAS down"}
    (tmp_path / runner.STATUS_FILE).write_text(json.dumps(
        {"last_attempt": clock.now(), "last_ok": True, "last_success": clock.now()}))
    assert svc.health()["ok"] and not svc.due()


def test_the_outbox_leaves_a_restored_instance_alone(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "db.sqlite")
    outbox = Outbox(db, tmp_path / "spool", ManualClock())
    data = dicom_bytes()
    with db.transaction() as tx:
        tx.execute("INSERT INTO mirror_queue (instance_id, state, source, sha256, remote_path,"
                   " enqueued_at) VALUES ('a', 'done', 'restore', ?, 'p/a.dcm', 0)",
                   (hashlib.sha256(data).hexdigest(),))
        tx.execute("INSERT INTO mirror_queue (instance_id, state, source, sha256, remote_path,"
                   " enqueued_at) VALUES ('b', 'done', 'restore', 'other', 'p/b.dcm', 0)")
    outbox.record_stored_many([("a", data), ("b", data)])
    states = {r["instance_id"]: r["state"] for r in db.all("SELECT * FROM mirror_queue")}
    assert states == {"a": "done", "b": "pending"}  # other bytes than the NAS's: mirrored
    live = {r["spool"] for r in db.all("SELECT spool FROM mirror_queue WHERE spool IS NOT NULL")}
    assert {p.name for p in (tmp_path / "spool").iterdir()} == live


def test_snapshot_round_trip(tmp_path: Path) -> None:
    _db, key_path, _ = make_state(tmp_path)
    image = snapshot.database_copy(tmp_path / "orthanc-nas.sqlite")
    snap = snapshot.unpack(snapshot.pack(image, key_path.read_bytes(), {"a": 1}))
    assert snap.manifest == {"a": 1} and snap.database == image
    assert snapshot.counts(image)["audit"] == 5
    with pytest.raises(snapshot.SnapshotError):
        snapshot.unpack(b"not a tar")
