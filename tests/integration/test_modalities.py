"""DICOM modalities declared on the admin screen, against a real Orthanc and DCMTK: a modality
sends only once declared, what it sends belongs to its owner and is counted on the dashboard,
the declaration survives a restart (Orthanc 1.10.1 alone forgets it), is audited, and C-ECHO
tests it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from conftest import FAST
from dicom_factory import write_series
from harness import (
    Client,
    OrthancServer,
    admin_account,
    free_port,
    make_user,
    storescu,
    wait_until,
)


def audited(admin: Client, event: str, target: str) -> list[dict[str, object]]:
    r = admin.post("/api/audit/search", {"event": event, "target": target})
    assert r.status_code == 200, r.text
    items: list[dict[str, object]] = r.json()["items"]
    return items


def test_a_modality_declared_on_the_screen_sends_owns_and_is_counted(
        orthanc: OrthancServer, admin: Client, tmp_path: Path) -> None:
    owner, _ = make_user(admin, "mod-owner", "user")
    files = write_series(tmp_path, 3, patient_id="MOD-1", patient_name="Modality^Test")
    refused = storescu(orthanc, files, aet="CTROOM1")
    assert "Store Failed" in refused.stderr  # undeclared: Orthanc refuses it
    modality = {"aet": "CTROOM1", "host": "127.0.0.1", "port": 11120, "owner": "mod-owner"}
    r = admin.put("/api/admin/modalities/ct-room-1", modality)
    assert r.status_code == 200, r.text
    assert r.json()["modality"] == {**modality, "name": "ct-room-1", "source": "screen",
                                    "overrides_file": False}
    assert admin.get("/modalities?expand").json()["ct-room-1"]["AET"] == "CTROOM1"  # applied
    sent = storescu(orthanc, files, aet="CTROOM1")
    assert sent.returncode == 0 and not sent.stderr, sent.stderr
    mine = owner.post("/api/images/search", {"mine": True, "patient_name": "modality"}).json()
    assert [i["PatientID"] for i in mine["items"]] == ["MOD-1"]
    stats = admin.get("/api/dashboard/stats").json()
    assert {"source": "dicom", "origin": "CTROOM1", "instances": 3} in stats[
        "received_by_origin"]
    saved = audited(admin, "modality_saved", "ct-room-1")
    assert saved and saved[0]["actor"] == "admin" and saved[0]["details"]["aet"] == "CTROOM1"
    assert admin.get("/api/admin/ae-owners").json()["ae_owners"]["CTROOM1"] == "mod-owner"

    assert admin.delete("/api/admin/modalities/ct-room-1").status_code == 200
    assert "ct-room-1" not in admin.get("/modalities").json()
    assert "Store Failed" in storescu(orthanc, files[:1], aet="CTROOM1").stderr
    assert audited(admin, "modality_deleted", "ct-room-1")


def test_bad_declarations_say_what_to_fix(orthanc: OrthancServer, admin: Client) -> None:
    make_user(admin, "mod-reader", "viewer")
    good = {"aet": "US2", "host": "10.1.2.3", "port": 104}
    for change, field in (({"aet": "A" * 17}, "aet"), ({"aet": "BAD\\AE"}, "aet"),
                          ({"host": "http://x"}, "host"), ({"port": 0}, "port"),
                          ({"port": 65535}, "port"),  # Orthanc 1.10.1 takes 1..65534
                          ({"owner": "nobody-here"}, "owner"), ({"owner": "mod-reader"}, "owner"),
                          ({"aet": "STORESCU"}, "aet")):  # orthanc.json's storescu has it
        r = admin.put("/api/admin/modalities/us-2", {**good, **change})
        assert r.status_code in (400, 409) and r.json()["field"] == field, (change, r.text)
    assert admin.delete("/api/admin/modalities/storescu").json()["field"] == "name"  # the file's
    assert admin.delete("/api/admin/modalities/never-declared").status_code == 404


def test_echo_says_whether_the_modality_answers(orthanc: OrthancServer, admin: Client,
                                                 tmp_path: Path) -> None:
    port = free_port()
    assert admin.put("/api/admin/modalities/echo-test", {
        "aet": "ECHOSCP", "host": "127.0.0.1", "port": port}).status_code == 200
    r = admin.post("/api/admin/modalities/echo-test/echo", {})
    assert r.status_code == 200 and r.json()["ok"] is False
    assert r.json()["message"].startswith(f"No answer from ECHOSCP at 127.0.0.1:{port}.")
    scp = subprocess.Popen(["/usr/bin/storescp", "-aet", "ECHOSCP", "--output-directory",
                            str(tmp_path), str(port)], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        answer = wait_until(lambda: (a := admin.post("/api/admin/modalities/echo-test/echo",
                                                     {}).json())["ok"] and a, 30,
                            "storescp to answer C-ECHO", interval=0.2)
        assert answer["message"].startswith("The modality answered")
    finally:
        scp.terminate()
        scp.wait(timeout=10)
        admin.delete("/api/admin/modalities/echo-test")


def test_declared_modalities_survive_a_restart(workdir: Path) -> None:
    server = OrthancServer(workdir, FAST).start()
    try:
        admin = server.client()
        account = admin_account()
        admin.onboard(account, "Blue-Harbor-PIN-2024!")
        assert admin.put("/api/admin/modalities/mr-1", {
            "aet": "MR1", "host": "127.0.0.1", "port": 11130}).status_code == 200
        server.stop()
        server.start()
        admin.ensure_logged_in()
        listed = admin.get("/api/admin/modalities").json()
        assert {"name": "mr-1", "aet": "MR1", "host": "127.0.0.1", "port": 11130,
                "owner": None, "source": "screen", "overrides_file": False} in listed[
            "modalities"]
        assert listed["orthanc_aet"] == "ORTHANC" and listed["dicom_port"] == server.dicom_port
        files = write_series(workdir / "files", 1, patient_id="MOD-RESTART")
        sent = storescu(server, files, aet="MR1")
        assert sent.returncode == 0 and not sent.stderr, sent.stderr
    finally:
        server.stop()


def test_strict_visibility_is_refused_where_it_cannot_hold(workdir: Path) -> None:
    server = OrthancServer(workdir, {**FAST, "OrthancNAS": {
        **FAST["OrthancNAS"], "visibility": "strict"}})
    assert server.run_to_exit() != 0
    assert ("OrthancNAS.visibility: 'strict' cannot be enforced on this Orthanc: it has no "
            "labels") in server.log_text()
