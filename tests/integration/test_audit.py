"""The audit trail of a real Orthanc: verification (API and command line), tampering found,
truncation found through the exported head, exports, encoded values."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import socket
import subprocess
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec

from attacker import attacker
from browser import browser_login, wait
from dicom_factory import write_series
from harness import (
    PLATFORM,
    REPO,
    Client,
    OrthancServer,
    admin_account,
    deep_merge,
    free_port,
    make_user,
    storescu,
    wait_until,
)
from orthanc_nas.orthanc_api import orthanc_study_id
from syslog_collector import TcpCollector, parse, row_id, trail_details


@pytest.fixture
def server(tmp_path: Path) -> tuple[OrthancServer, Client]:
    from conftest import FAST

    orthanc = OrthancServer(tmp_path, FAST).start()
    admin = orthanc.client()
    admin.onboard(admin_account(), "Blue-Harbor-PIN-2024!")
    yield orthanc, admin  # type: ignore[misc]
    orthanc.stop()


def cli(orthanc: OrthancServer) -> subprocess.CompletedProcess[str]:
    return subprocess.run(PLATFORM.wrap([str(REPO / "scripts" / "audit-verify"),
                                         str(orthanc.data_dir)]),
                          capture_output=True, text=True, timeout=60,
                          env={**orthanc.env})


def test_verify_finds_an_edited_row_by_api_and_command_line(
        server: tuple[OrthancServer, Client]) -> None:
    orthanc, admin = server
    ok = admin.get("/api/audit/verify").json()
    assert ok["ok"] is True and ok["rows"] >= 5
    assert cli(orthanc).returncode == 0
    first_login = admin.get("/api/audit", params={"event": "login", "limit": 1000}
                            ).json()["items"][-1]["id"]
    attacker(orthanc.data_dir / "orthanc-nas.sqlite",
             f"UPDATE audit SET actor = 'someone-else' WHERE id = {first_login}")
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
    wait_until(lambda: f"audit chain head id={head['id']}" in orthanc.log_text(), 30,
               "the head to be logged")
    attacker(orthanc.data_dir / "orthanc-nas.sqlite",
             f"DELETE FROM audit WHERE id >= {head['id']}")
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
    posted = admin.post("/api/audit/search", {"format": "json", "user": "admin"})
    assert posted.json() == exported.json()  # the same in a body, as the admin page asks
    bad = admin.post("/api/audit/search", {"limit": [1]})
    assert bad.status_code == 400 and bad.json()["field"] == "limit"
    assert admin.post("/api/audit/search", {"limit": "\u00b2"}).json()["field"] == "limit"
    assert admin.get("/api/audit", params={"format": "xml"}).status_code == 400


# ---- coverage: reads, downloads, imports, deletions and transfers of a real Orthanc ---------

def events(admin: Client, event: str, **params: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = admin.get(
        "/api/audit", params={"event": event, "limit": 1000, **params}).json()["items"]
    return items


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def send_study(orthanc: OrthancServer, folder: Path, patient_id: str,
               aet: str = "STORESCU") -> tuple[str, str]:
    """Sends a 2-instance study by C-STORE; returns its Orthanc ID and StudyInstanceUID."""
    files = write_series(folder, 2, patient_id=patient_id)
    assert storescu(orthanc, files, aet=aet).returncode == 0
    study_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    return orthanc_study_id(patient_id, study_uid), study_uid


def test_reads_downloads_imports_and_deletions_are_audited_once_per_study_and_session(
        server: tuple[OrthancServer, Client], tmp_path: Path) -> None:
    orthanc, admin = server
    study_id, study_uid = send_study(orthanc, tmp_path / "a", "AUD-1")
    imported = wait_until(lambda: events(admin, "instances_imported"), 30, "the import row")
    assert len(imported) == 1
    row = imported[0]
    assert (row["actor"], row["ip"], row["event_code"]) == ("AE:STORESCU", "127.0.0.1", "110107")
    assert (row["patient_id"], row["study_uid"], row["target"]) == ("AUD-1", study_uid, study_id)
    assert row["details"]["calling_aet"] == "STORESCU"

    # The same study again from the same AE is the same import; another study is another.
    study = admin.get(f"/studies/{study_id}").json()
    series_id = study["Series"][0]
    instance_id = admin.get(f"/series/{series_id}").json()["Instances"][0]
    other_id, _ = send_study(orthanc, tmp_path / "b", "AUD-2")
    wait_until(lambda: events(admin, "instances_imported", target=other_id), 30, "2nd import")
    assert len(events(admin, "instances_imported", target=study_id)) == 1

    for _ in range(3):  # Explorer, REST and DICOMweb reads of one study: one row
        assert admin.get(f"/studies/{study_id}").status_code == 200
        assert admin.get(f"/series/{series_id}/instances").status_code == 200
        assert admin.get(f"/instances/{instance_id}/simplified-tags").status_code == 200
        assert admin.get(f"/dicom-web/studies/{study_uid}/metadata").status_code == 200
    assert admin.get(f"/studies/{study_id}/archive").status_code == 200
    downloads = wait_until(lambda: events(admin, "study_downloaded"), 30, "the download row")
    assert (downloads[0]["target"], downloads[0]["event_code"]) == (study_id, "110106")
    accessed = events(admin, "instances_accessed", target=study_id)  # queued before it
    assert [(r["actor"], r["ip"], r["patient_id"], r["study_uid"]) for r in accessed] == [
        ("admin", "127.0.0.1", "AUD-1", study_uid)]

    viewer, _ = make_user(admin, "aud-viewer", "viewer")  # another session: another row
    assert viewer.get(f"/dicom-web/studies/{study_uid}/series").status_code == 200
    wait_until(lambda: events(admin, "instances_accessed", user="aud-viewer"), 30,
               "the viewer's row")

    assert admin.delete(f"/studies/{study_id}").status_code == 200
    deleted = wait_until(lambda: events(admin, "study_deleted"), 30, "the deletion row")
    assert [(r["actor"], r["patient_id"], r["study_uid"], r["event_code"]) for r in deleted] == [
        ("admin", "AUD-1", study_uid, "110105")]


@contextlib.contextmanager
def receiver(admin: Client, folder: Path) -> Iterator[None]:
    """DCMTK's storescp as the workstation "receiver" (AE RECEIVER), declared to Orthanc,
    writing what it receives into ``folder``."""
    folder.mkdir()
    port = free_port()
    scp = subprocess.Popen(["/usr/bin/storescp", "-od", str(folder), "-aet", "RECEIVER",
                            str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: listening(port), 30, "storescp to listen")
        assert admin.put("/modalities/receiver", {"AET": "RECEIVER", "Host": "127.0.0.1",
                                                  "Port": port}).status_code == 200
        yield
    finally:
        scp.terminate()
        scp.wait(10)


def test_sending_to_a_modality_is_audited_per_study(
        server: tuple[OrthancServer, Client], tmp_path: Path) -> None:
    orthanc, admin = server
    received = tmp_path / "received"
    with receiver(admin, received):
        study_id, study_uid = send_study(orthanc, tmp_path / "a", "AUD-SEND")
        r = admin.post("/modalities/receiver/store", data=study_id)
        assert r.status_code == 200, r.text
        assert len(list(received.iterdir())) == 2  # the job finished before the answer
    sent = events(admin, "instances_sent")
    assert [(r["actor"], r["outcome_code"], r["study_uid"], r["event_code"], r["details"])
            for r in sent] == [("admin", 0, study_uid, "110102", {"modality": "receiver"})]

    r = admin.post("/modalities/receiver/store", {"Resources": [study_id]})  # nobody listens
    assert r.status_code == 502 and "error" in r.json()
    failed = events(admin, "instances_sent", outcome="failure")
    assert len(failed) == 1 and failed[0]["study_uid"] == study_uid
    assert admin.post("/modalities/nowhere/store", data=study_id).status_code in (400, 404)


def test_bulk_exports_are_audited_per_study(server: tuple[OrthancServer, Client],
                                            tmp_path: Path) -> None:
    orthanc, admin = server
    first, first_uid = send_study(orthanc, tmp_path / "a", "AUD-ZIP-1")
    second, second_uid = send_study(orthanc, tmp_path / "b", "AUD-ZIP-2")
    viewer, _ = make_user(admin, "zip-viewer", "viewer")

    r = viewer.post("/tools/create-archive", {"Resources": [first, second]})
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.content)) as archive:
        assert len([n for n in archive.namelist() if not n.endswith("/")]) == 4
    rows = events(admin, "study_downloaded", user="zip-viewer")
    assert sorted((r["study_uid"], r["details"]["route"], r["event_code"]) for r in rows) == \
        sorted([(first_uid, "create-archive", "110106"), (second_uid, "create-archive", "110106")])

    job = admin.post("/tools/create-media", {"Resources": [first], "Asynchronous": True})
    assert job.status_code == 200 and "ID" in job.json()  # a job, as asked
    assert admin.post(f"/series/{admin.get(f'/studies/{second}').json()['Series'][0]}/media",
                      {}).status_code == 200  # the per-resource route, by POST
    wait_until(lambda: len(events(admin, "study_downloaded", user="admin")) == 2, 30,
               "the admin's two export rows")
    assert admin.post("/tools/create-archive", {"Resources": ["0" * 8]}).status_code in (
        400, 404)


# ---- forwarding to an audit repository -------------------------------------------------------

def test_the_trail_reaches_a_syslog_collector_and_an_outage_loses_nothing(
        tmp_path: Path, browser: WebDriver) -> None:
    from conftest import FAST

    collector = TcpCollector()  # bound but not accepting yet: the collector is down
    syslog = {"enabled": True, "host": "127.0.0.1", "port": collector.port, "protocol": "tcp",
              "source_id": "clinic-pacs"}
    orthanc = OrthancServer(tmp_path, deep_merge(FAST, {"OrthancNAS": {"audit": {
        "syslog": syslog}}})).start()
    try:
        admin, account = orthanc.client(), admin_account()
        admin.onboard(account, "Blue-Harbor-PIN-2024!")  # rows written meanwhile
        down = wait_until(lambda: (h := admin.get("/api/health").json()[
            "checks"]["audit_forwarding"])["failing"] and h, 60, "the outage to be reported")
        assert down["ok"] is False and down["pending"] >= 5 and down["last_error"]
        browser_login(browser, orthanc.url + "/ui/admin", admin, account)  # the admin sees it
        shown = wait(browser).until(ec.visibility_of_element_located(
            (By.ID, "audit-forwarding")))
        wait(browser).until(lambda _d: "is failing" in shown.text and "rows wait" in shown.text)
        admin.ensure_logged_in()
        collector.start()
        head = admin.get("/api/audit", params={"limit": 1}).json()["items"][0]["id"]
        got: dict[int, tuple[str, ET.Element]] = {}

        def everything() -> bool:
            while not collector.messages.empty():
                match, root = parse(collector.messages.get())
                assert match["msgid"] == b"DICOM+RFC3881"
                got[row_id(root)] = (trail_details(root)["event"], root)
            return set(range(1, head + 1)) <= set(got)

        wait_until(everything, 90, "every row written during the outage to arrive")
        logins = [root for event, root in got.values() if event == "login"]
        event_id = logins[0].find("EventIdentification/EventID")
        assert event_id is not None and event_id.get("csd-code") == "110114"
        source = logins[0].find("AuditSourceIdentification")
        assert source is not None and source.get("AuditSourceID") == "clinic-pacs"
        wait_until(lambda: admin.get("/api/health").json()["checks"][
            "audit_forwarding"]["pending"] == 0, 30, "the queue to be empty")
    finally:
        orthanc.stop()
        collector.stop()


def movescu(orthanc: OrthancServer, destination: str, study_uid: str) -> (
        subprocess.CompletedProcess[str]):
    """A modality (AE STORESCU, known to Orthanc) asks Orthanc to send a study elsewhere."""
    return subprocess.run(["/usr/bin/movescu", "-aet", "STORESCU", "-aec", "ORTHANC", "-aem",
                           destination, "-S", "-k", "QueryRetrieveLevel=STUDY", "-k",
                           f"StudyInstanceUID={study_uid}", "127.0.0.1",
                           str(orthanc.dicom_port)], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(PLATFORM.orthanc_version().startswith("1.10."), reason="Python plugin 4.0 "
                    "(Debian 12) cannot see a C-MOVE; 4.2+ (Debian 13) can")
def test_a_c_move_asked_by_a_modality_is_audited_per_study(
        server: tuple[OrthancServer, Client], tmp_path: Path) -> None:
    orthanc, admin = server
    received = tmp_path / "received"
    with receiver(admin, received):
        study_id, study_uid = send_study(orthanc, tmp_path / "a", "AUD-MOVE")
        done = movescu(orthanc, "RECEIVER", study_uid)
        assert done.returncode == 0, done.stderr
        assert len(list(received.iterdir())) == 2  # both sub-operations done before the answer
    sent = events(admin, "instances_sent")
    assert [(r["actor"], r["outcome_code"], r["target"], r["patient_id"], r["study_uid"],
             r["details"]) for r in sent] == [
        ("AE:STORESCU", 0, study_id, "AUD-MOVE", study_uid,
         {"modality": "RECEIVER", "via": "C-MOVE", "instances": 2})]

    refused = movescu(orthanc, "NOWHERE", study_uid)  # not a known modality: refused, audited
    assert refused.returncode != 0 or "Failed" in refused.stderr + refused.stdout
    failed = events(admin, "instances_sent", outcome="failure")
    assert [(r["actor"], r["study_uid"], r["details"]["modality"]) for r in failed] == [
        ("AE:STORESCU", study_uid, "NOWHERE")]


def test_wado_reads_of_two_studies_are_both_audited(server: tuple[OrthancServer, Client],
                                                     tmp_path: Path) -> None:
    """WADO-URI names the study in its arguments: the gate's memory of one /wado read (the
    path and credential) must not let a read of another study pass unaudited."""
    orthanc, admin = server
    first, first_uid = send_study(orthanc, tmp_path / "a", "AUD-W1")
    second, second_uid = send_study(orthanc, tmp_path / "b", "AUD-W2")
    viewer, _ = make_user(admin, "aud-wado", "viewer")
    for uid in (first_uid, first_uid, second_uid):
        r = viewer.get(f"/wado?requestType=WADO&studyUID={uid}&seriesUID=1&objectUID=1")
        assert r.status_code != 403
    for study_id in (first, second):
        wait_until(lambda s=study_id: events(admin, "instances_accessed", user="aud-wado",
                                             target=s), 30, f"the row of {study_id}")
