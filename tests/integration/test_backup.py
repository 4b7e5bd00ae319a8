"""The disaster-recovery drill against a real Orthanc and a real Samba share: users with TOTP,
images from two AE titles, tags, a live share link, the AE map; a backup; the data folder
deleted; a fresh start; wrong passphrase and tampered backup refused; the state restored; the
import killed with -9 and resumed; a NAS copy damaged on purpose reported and skipped; then
the same PIN and TOTP log in, every instance is byte-identical to the NAS, nothing is copied
back, and the audit chain verifies across the restore."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import FAST
from dicom_factory import write_series
from harness import (
    REPO,
    VENV,
    OrthancServer,
    admin_account,
    deep_merge,
    make_user,
    storescu,
    wait_until,
)
from orthanc_nas.backup.restore import instance_id_of
from samba import SambaServer

PASSPHRASE = "Drill-Passphrase-of-the-Clinic-2026"


@pytest.fixture(scope="module")
def samba(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SambaServer]:
    server = SambaServer(tmp_path_factory.mktemp("samba")).start()
    yield server
    server.stop()


def cli(server: OrthancServer, *args: str, passphrase: str = PASSPHRASE,
        popen: bool = False) -> Any:
    command = [str(VENV / "bin" / "python"), "-m", "orthanc_nas.backup", *args,
               "--config", str(server.config_path), "--json"]
    env = {**server.env, "PYTHONPATH": str(REPO / "plugin"),
           "ORTHANC_NAS_BACKUP_PASSPHRASE": passphrase}
    if popen:
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def nas_files(share: Path) -> dict[str, bytes]:
    return {str(p.relative_to(share)): p.read_bytes() for p in share.rglob("*.dcm")
            if "_orthanc-nas" not in p.parts}


def journal_rows(data_dir: Path) -> int:
    try:
        with sqlite3.connect(data_dir / "restore-journal.sqlite", timeout=5) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM files").fetchone()[0])
    except sqlite3.Error:
        return 0


def test_the_drill(samba: SambaServer, tmp_path: Path) -> None:
    server = OrthancServer(tmp_path / "o", deep_merge(FAST, {"OrthancNAS": {
        "nas": samba.nas_config(), "backup": {"enabled": False}}})).start()
    try:
        admin = server.client()
        admin_acc = admin_account()
        admin.onboard(admin_acc, "Blue-Harbor-PIN-2024!")
        doctor, doctor_acc = make_user(admin, "drill-doctor", "user")
        assert admin_acc.totp_secret and doctor_acc.totp_secret
        # The modality and its owner are the plugin's state too (the admin screen): restored
        # with it.
        assert admin.put("/api/admin/modalities/storescu", {
            "aet": "STORESCU", "host": "127.0.0.1", "port": 11112,
            "owner": "drill-doctor"}).status_code == 200
        ct = write_series(tmp_path / "ct", 40, patient_id="DRILL-CT")
        mr = write_series(tmp_path / "mr", 20, patient_id="DRILL-MR", modality="MR")
        assert storescu(server, ct).returncode == 0
        assert storescu(server, mr, aet="UNMAPPED").returncode == 0
        item = doctor.get("/api/images", params={"patient_id": "DRILL-CT"}).json()["items"][0]
        study = item.get("ID") or item.get("id") or item["study_id"]
        assert doctor.post(f"/api/images/{study}/tags", {"tag": "drill"}).status_code == 200
        shared = doctor.post(f"/api/images/{study}/share", {"expires_in_hours": 720,
                                                             "max_views": 5})
        assert shared.status_code == 200, shared.text
        token = str(shared.json()["url"]).rsplit("/s/", 1)[1]
        wait_until(lambda: (s := admin.get("/api/nas/status").json())["pending"] == 0
                   and s["mirrored"] >= 60, 180, "the mirror to drain")

        # the backup: no passphrase yet, then a weak one, then the clinic's
        assert admin.post("/api/admin/backup").status_code == 409
        assert admin.put("/api/admin/backup/passphrase", {"passphrase": "short"}).status_code == 400
        r = admin.put("/api/admin/backup/passphrase", {"passphrase": PASSPHRASE})
        assert r.status_code == 200 and r.json()["configured"], r.text
        made = admin.post("/api/admin/backup")
        assert made.status_code == 200, made.text
        listed = admin.get("/api/admin/backups").json()["backups"]
        assert [b["name"] for b in listed] == [made.json()["name"]]
        assert listed[0]["size"] == made.json()["size"] and listed[0]["age_seconds"] >= 0
        assert admin.get("/api/health").json()["checks"]["backup"]["ok"]
        backup_file = samba.share_dir / "_orthanc-nas" / "backups" / made.json()["name"]
        assert PASSPHRASE.encode() not in backup_file.read_bytes()
        server.stop()

        # the server's disk is lost; a fresh install starts once, then is stopped for the restore
        shutil.rmtree(server.data_dir)
        server.start()
        server.stop()
        refused = cli(server, "restore-state", passphrase="Not-The-Passphrase-At-All")
        assert refused.returncode == 2 and "passphrase" in refused.stderr, refused.stderr
        tampered = bytearray(backup_file.read_bytes())
        tampered[-100] ^= 1
        fake = backup_file.with_name("orthanc-nas-29991231T000000Z.onasbk")
        fake.write_bytes(bytes(tampered))
        refused = cli(server, "restore-state")  # the newest: the altered one
        assert refused.returncode == 3 and "altered" in refused.stderr, refused.stderr
        fake.unlink()
        restored = cli(server, "restore-state")
        assert restored.returncode == 0, restored.stderr
        state = json.loads(restored.stdout)
        assert state["users_restored"] == 2 and state["audit_chain"]["ok"]

        # a NAS copy damaged on purpose (same size: only SHA-256 can tell)
        before = nas_files(samba.share_dir)
        assert len(before) == 60
        damaged = sorted(before)[7]
        spoiled = bytearray(before[damaged])
        spoiled[-10] ^= 0xFF
        (samba.share_dir / damaged).write_bytes(bytes(spoiled))
        mtimes = {p: (samba.share_dir / p).stat().st_mtime_ns for p in before}

        server.start()
        first = cli(server, "import", "--workers", "1", popen=True)
        wait_until(lambda: journal_rows(server.data_dir) >= 5, 120, "the import to begin")
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        assert first.returncode == -signal.SIGKILL
        partial = journal_rows(server.data_dir)
        assert 5 <= partial < 60
        resumed = cli(server, "import", "--workers", "4")
        assert resumed.returncode == 1, resumed.stderr  # 1: done, with a damaged copy
        report = json.loads(resumed.stdout)
        assert report["instances_found"] == 60 and report["damaged"] == 1
        assert report["damaged_files"][0]["path"] == damaged
        assert report["imported"] + report["skipped"] == 59
        assert sum(report["this_run"].values()) == 60 - partial
        assert report["users_restored"] == 2 and report["audit_chain"]["ok"]
        assert "ETA" in resumed.stderr

        # the same PIN and TOTP log in; everything is there and byte-identical to the NAS
        admin = server.client()
        admin.login(admin_acc)
        doctor = server.client()
        doctor.login(doctor_acc)
        for path, data in before.items():
            instance_id, _ = instance_id_of(data)
            got = admin.get(f"/instances/{instance_id}/file")
            if path == damaged:
                assert got.status_code == 404
            else:
                assert got.status_code == 200 and got.content == data, path
        mine = doctor.get("/api/images", params={"patient_id": "DRILL-*", "mine": "1"}).json()[
            "items"]
        assert [i["PatientID"] for i in mine] == ["DRILL-CT"]  # ownership by AE title came back
        assert "drill" in doctor.get(f"/api/images/{study}").text
        assert admin.get("/api/admin/ae-owners").json()["ae_owners"] == {"STORESCU": "drill-doctor"}
        anonymous = server.client()
        assert anonymous.get(f"/api/shared/{token}").status_code == 200

        # nothing copied back: every NAS file untouched, the mirror has nothing to do
        # but for the damaged copy: the scrub finds it and queues it again (Orthanc has no copy
        # to send, so it can only wait or fail, saying so); no other item is touched
        items = admin.get("/api/nas/queue", params={"limit": 1000}).json()["items"]
        assert [i["remote_path"] for i in items if i["state"] != "done"] in ([], [damaged])
        assert {p: (samba.share_dir / p).stat().st_mtime_ns for p in before} == mtimes
        assert not list(samba.share_dir.rglob("*.part"))

        # the chain verifies across the restore, which it records
        verified = admin.get("/api/audit/verify").json()
        assert verified["ok"], verified
        trail = admin.get("/api/audit", params={"limit": 500}).json()["items"]
        events = [e["event"] for e in trail]
        # the backup's own start is in it; its completion was recorded after the snapshot
        assert {"backup_started", "backup_restored", "restore_import_finished"} <= set(events)

        # the monthly drill: reads everything, touches nothing, names the damaged copy
        drill = cli(server, "verify")
        assert drill.returncode == 1, drill.stderr
        checked = json.loads(drill.stdout)
        assert checked["damaged_files"] == [damaged] and checked["catalog_instances"] == 60
        (samba.share_dir / damaged).write_bytes(before[damaged])
        assert cli(server, "verify").returncode == 0
        assert hashlib.sha256((samba.share_dir / damaged).read_bytes()).digest()
        server.stop()

    finally:
        server.stop()  # also when an assertion failed: no Orthanc left running
