"""The plugin inside a real Orthanc: health, refusal of bad configuration, migrations, C-STORE."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from dicom_factory import write_series
from harness import PLATFORM, Client, OrthancServer, make_user, storescu, wait_until
from orthanc_nas.schema import MIGRATIONS


def test_health_details_are_for_admins_only(orthanc: OrthancServer, admin: Client) -> None:
    """Issue 11: anonymous callers saw versions and the gate's counters (traffic measurable
    from outside). Anyone but an admin gets the status and each check's ok flag only."""
    checks = {"database", "two_factor", "nas", "audit_forwarding", "gate", "backup"}
    r = admin.get("/api/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["orthanc_version"] == PLATFORM.orthanc_version()
    assert body["plugin_version"]
    assert set(body["checks"]) == checks
    assert body["checks"]["database"]["schema_version"] == max(MIGRATIONS)
    assert "allowed_from_memory" in body["checks"]["gate"]
    assert "PatientID" not in r.text
    viewer = make_user(admin, "health-viewer", "viewer")[0]
    for caller in (orthanc.client(), viewer):
        r = caller.get("/api/health")
        assert r.status_code == 200
        assert r.json() == {"status": "ok", "failing": [],
                            "checks": {name: {"ok": True} for name in checks}}
        assert "version" not in r.text and "1.10.1" not in r.text


def test_health_names_the_failing_check(workdir: Path) -> None:
    server = OrthancServer(workdir).start()
    try:
        db = server.data_dir / "orthanc-nas.sqlite"
        conn = sqlite3.connect(db)
        conn.execute("DROP TABLE schema_version")  # the database no longer answers the probe
        conn.commit()
        conn.close()
        r = server.client().get("/api/health")
        assert r.status_code == 503
        assert r.json()["failing"] == ["database"]
    finally:
        server.stop()


BAD_CONFIGS: list[tuple[dict[str, Any], str]] = [
    ({"two_factor": {"enabeld": True}}, "OrthancNAS.two_factor.enabeld: unknown key"),
    ({"auth": {"bcrypt_cost": "12"}}, "OrthancNAS.auth.bcrypt_cost: an integer"),
    ({"auth": {"pin_min_length": 4}}, "OrthancNAS.auth.pin_min_length: a number from 8 to 64"),
    ({"two_factor": {"allowed_methods": ["sms"]}}, "OrthancNAS.two_factor.allowed_methods"),
    ({"nas": {"enabled": True, "type": "smb"}}, "OrthancNAS.nas.host: a non-empty string"),
    ({"access_policy": [{"methods": ["GET"], "pattern": "(", "roles": ["admin"]}]},
     "OrthancNAS.access_policy: rule 0: pattern is not a valid regular expression"),
    ({"two_factor": {"enabled": 1}}, "OrthancNAS.two_factor.enabled: a boolean"),
]


@pytest.mark.parametrize(("section", "message"), BAD_CONFIGS,
                         ids=[m.split(":")[0] for _, m in BAD_CONFIGS])
def test_orthanc_refuses_to_start_on_bad_configuration(workdir: Path, section: dict[str, Any],
                                                       message: str) -> None:
    server = OrthancServer(workdir, {"OrthancNAS": section})
    assert server.run_to_exit() != 0
    log = server.log_text()
    assert "OrthancNAS: refusing to start" in log
    assert message in log


def test_migrations_upgrade_an_existing_database_and_keep_its_data(workdir: Path) -> None:
    server = OrthancServer(workdir)
    server.data_dir.mkdir(parents=True)
    db = server.data_dir / "orthanc-nas.sqlite"
    conn = sqlite3.connect(db)  # a database left by the first release: schema version 1
    conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TEXT)")
    for statement in MIGRATIONS[1]:
        conn.execute(statement)
    conn.execute("INSERT INTO schema_version VALUES (1, '2024-01-01')")
    conn.execute("INSERT INTO settings VALUES ('two_factor', '{\"totp_issuer\": \"Clinic X\"}',"
                 " 0, 'admin')")
    conn.commit()
    conn.close()
    server.start()
    try:
        health = server.client().get("/api/health").json()
        assert health["checks"]["database"] == {"ok": True}  # the version: read below
    finally:
        server.stop()
    conn = sqlite3.connect(db)
    versions = [v for (v,) in conn.execute("SELECT version FROM schema_version ORDER BY 1")]
    kept = conn.execute("SELECT value FROM settings WHERE key = 'two_factor'").fetchone()
    conn.close()
    assert versions == sorted(MIGRATIONS)
    assert kept == ('{"totp_issuer": "Clinic X"}',)


def test_a_second_start_keeps_data(workdir: Path) -> None:
    server = OrthancServer(workdir).start()
    server.stop()
    key = (server.data_dir / "orthanc-nas.key").read_bytes()
    assert (server.data_dir / "orthanc-nas.key").stat().st_mode & 0o777 == 0o600
    server.start()
    try:
        assert (server.data_dir / "orthanc-nas.key").read_bytes() == key
        log = server.log_text()
        assert log.count("created user 'admin'") == 1
    finally:
        server.stop()


def test_cstore_from_a_declared_modality_reaches_orthanc(orthanc: OrthancServer, admin: Client,
                                                         workdir: Path) -> None:
    files = write_series(workdir / "dcm", 3, patient_id="CSTORE-1")
    before = admin.get("/statistics").json()["CountInstances"]
    result = storescu(orthanc, files)
    assert result.returncode == 0, result.stderr
    wait_until(lambda: admin.get("/statistics").json()["CountInstances"] == before + 3, 30,
               "the three instances in Orthanc's index")
    found = admin.post("/tools/find", {"Level": "Patient", "Query": {"PatientID": "CSTORE-1"}})
    assert len(found.json()) == 1


def test_cstore_from_an_undeclared_modality_is_refused(orthanc: OrthancServer, admin: Client,
                                                       workdir: Path) -> None:
    files = write_series(workdir / "dcm", 1, patient_id="INTRUDER")
    result = storescu(orthanc, files, aet="ROGUE")
    assert result.returncode != 0 or "Refused" in result.stderr + result.stdout
    found = admin.post("/tools/find", {"Level": "Patient", "Query": {"PatientID": "INTRUDER"}})
    assert found.json() == []


def echo(server: OrthancServer, called: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["/usr/bin/echoscu", "-aet", "ANYONE", "-aec", called, "127.0.0.1",
                           str(server.dicom_port)], capture_output=True, text=True, timeout=60)


def test_only_our_called_ae_title_is_answered(orthanc: OrthancServer) -> None:
    """Issue 11: with DicomCheckCalledAet off, C-ECHO answered for any called AE title."""
    assert echo(orthanc, "ORTHANC").returncode == 0
    refused = echo(orthanc, "NOT-ORTHANC")
    assert refused.returncode != 0
    assert "Called AE Title Not Recognized" in refused.stderr + refused.stdout
