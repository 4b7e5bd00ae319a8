"""The audit trail of a real Orthanc: verification (API and command line), tampering found,
truncation found through the exported head, exports, encoded values."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from harness import REPO, Client, OrthancServer, admin_account, wait_until


@pytest.fixture
def server(tmp_path: Path) -> tuple[OrthancServer, Client]:
    from conftest import FAST

    orthanc = OrthancServer(tmp_path, FAST).start()
    admin = orthanc.client()
    admin.onboard(admin_account(), "Blue-Harbor-PIN-2024!")
    yield orthanc, admin  # type: ignore[misc]
    orthanc.stop()


def cli(orthanc: OrthancServer) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(REPO / "scripts" / "audit-verify"), str(orthanc.data_dir)],
                          capture_output=True, text=True, timeout=60,
                          env={**orthanc.env})


def tamper(orthanc: OrthancServer, *statements: str) -> None:
    conn = sqlite3.connect(orthanc.data_dir / "orthanc-nas.sqlite")
    conn.execute("DROP TRIGGER IF EXISTS audit_no_update")
    conn.execute("DROP TRIGGER IF EXISTS audit_no_delete")
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()


def test_verify_finds_an_edited_row_by_api_and_command_line(
        server: tuple[OrthancServer, Client]) -> None:
    orthanc, admin = server
    ok = admin.get("/api/audit/verify").json()
    assert ok["ok"] is True and ok["rows"] >= 5
    assert cli(orthanc).returncode == 0
    first_login = admin.get("/api/audit", params={"event": "login", "limit": 1000}
                            ).json()["items"][-1]["id"]
    tamper(orthanc, f"UPDATE audit SET actor = 'someone-else' WHERE id = {first_login}")
    result = cli(orthanc)
    assert result.returncode == 1 and json.loads(result.stdout)["first_bad_id"] == first_login
    bad = admin.get("/api/audit/verify").json()
    assert bad["ok"] is False and bad["first_bad_id"] == first_login
    alerts = admin.get("/api/audit", params={"event": "audit_verification_failed"}).json()
    assert alerts["total"] == 1 and alerts["items"][0]["event_code"] == "110113"


def test_cutting_the_tail_is_found_through_the_exported_head(
        server: tuple[OrthancServer, Client]) -> None:
    orthanc, _admin = server
    head_file = orthanc.data_dir / "audit-head.json"
    wait_until(head_file.exists, 30, "the chain head to be exported")
    head = json.loads(head_file.read_text())
    assert f"audit chain head id={head['id']}" in orthanc.log_text()
    tamper(orthanc, f"DELETE FROM audit WHERE id >= {head['id']}")
    result = cli(orthanc)
    assert result.returncode == 1
    assert "cut" in json.loads(result.stdout)["problem"]


def test_exports_and_encoded_values(server: tuple[OrthancServer, Client]) -> None:
    orthanc, admin = server
    sneaky = orthanc.client()
    sneaky.post("/api/login", {"username": "eve\r\nlogin success admin", "pin": "x"})
    sneaky.post("/api/login", {"username": "=HYPERLINK(\"http://x\")", "pin": "x"})
    r = admin.get("/api/audit", params={"format": "csv", "event": "login",
                                        "outcome": "failure"})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    actors = {row["actor"] for row in rows}
    assert "eve\\x0d\\x0alogin success admin" in actors  # one line, visibly escaped
    assert "'=HYPERLINK(\"http://x\")" in actors  # never a spreadsheet formula
    assert len(r.text.strip().split("\r\n")) == len(rows) + 1
    assert all(row["event_code"] == "110114" and row["outcome_code"] == "4" for row in rows)
    exported = admin.get("/api/audit", params={"format": "json", "user": "admin"})
    assert "attachment" in exported.headers["Content-Disposition"]
    assert exported.json()["total"] >= 1
    assert admin.get("/api/audit", params={"format": "xml"}).status_code == 400
