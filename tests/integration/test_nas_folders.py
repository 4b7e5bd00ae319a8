"""Issue 11 section 4: an admin (or a stolen admin session) cannot make the local NAS write
or list anywhere on the host: folders only inside orthanc.json's nas.local_roots, file names
only *.dcm, browsing only inside the chosen folder; with no folder set nothing is listed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec

from browser import browser_login, wait
from conftest import FAST
from dicom_factory import ct_instance
from harness import Client, OrthancServer, admin_account, deep_merge, wait_until

DRAIN_TIMEOUT = 120


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """allowed/ (the one local root), outside/ (anything else on the host)."""
    base = tmp_path_factory.mktemp("host")
    (base / "allowed" / "share").mkdir(parents=True)
    (base / "outside").mkdir()
    (base / "allowed" / "escape").symlink_to(base / "outside")
    return base


@pytest.fixture(scope="module")
def server(host: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[OrthancServer, Client]]:
    orthanc = OrthancServer(tmp_path_factory.mktemp("orthanc"), deep_merge(FAST, {
        "OrthancNAS": {"nas": {"local_roots": [str(host / "allowed")]}}})).start()
    admin = orthanc.client()
    admin.onboard(admin_account(), "Blue-Harbor-PIN-2024!")
    yield orthanc, admin
    orthanc.stop()


def test_with_no_folder_set_browsing_lists_nothing(server: tuple[OrthancServer, Client]
                                                    ) -> None:
    """Issue 13: it listed the folder Orthanc was started from (orthanc.json, data, ...)."""
    orthanc, admin = server
    assert (orthanc.workdir / "orthanc.json").exists()
    for answer in (admin.post("/api/nas/browse", {"path": ""}), admin.get("/api/nas/browse")):
        assert answer.status_code == 409, answer.text
        body = answer.json()
        assert body["configured"] is False and "not configured" in body["error"]
        assert "orthanc.json" not in answer.text and "entries" not in body


def test_the_nas_page_says_it_is_not_configured(server: tuple[OrthancServer, Client],
                                                browser: WebDriver) -> None:
    orthanc, admin = server
    assert admin.account is not None
    browser_login(browser, orthanc.url + "/ui/nas", orthanc.client(), admin.account)
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "browse-table"),
                                                         "not configured"))
    assert "orthanc.json" not in browser.find_element(By.ID, "browse-table").text
    admin.ensure_logged_in()  # one session per user: the browser's login ended the client's


@pytest.mark.parametrize(("change", "field"), [
    ({"type": "local", "path": "/"}, "path"),
    ({"type": "local", "path": "/etc"}, "path"),
    ({"type": "local", "path": "../"}, "path"),
    ({"type": "local", "path": "ALLOWED/../outside"}, "path"),
    ({"type": "local", "path": "ALLOWED/escape"}, "path"),  # a symlink out of the root
    ({"type": "local", "path": "ALLOWED/share", "local_roots": ["/"]}, "local_roots"),
])
def test_settings_cannot_point_the_local_nas_outside_its_roots(
        server: tuple[OrthancServer, Client], host: Path, change: dict[str, object],
        field: str) -> None:
    _, admin = server
    if isinstance(change.get("path"), str):
        change = {**change, "path": str(change["path"]).replace("ALLOWED", str(host / "allowed"))}
    for route in ("/api/nas/config", "/api/nas/test"):  # a test writes a probe file too
        r = admin.post(route, change)
        assert r.status_code == 400, (route, r.text)
        assert r.json()["field"] == field and r.json()["error"]
    assert admin.get("/api/nas/config").json()["config"]["path"] == ""
    assert list((host / "outside").iterdir()) == []


def test_a_hostile_layout_still_writes_dcm_files_inside_the_folder(
        server: tuple[OrthancServer, Client], host: Path, tmp_path: Path) -> None:
    _, admin = server
    share = host / "allowed" / "share"
    r = admin.post("/api/nas/config", {"enabled": True, "type": "local", "path": str(share),
                                       "layout": "../../{PatientID}/../{SOPInstanceUID}.sh"})
    assert r.status_code == 200, r.text
    ds = ct_instance(patient_id="run.sh")
    ds.preamble = b"#!/bin/sh\necho owned\n".ljust(128, b"\n")
    ds.save_as(tmp_path / "evil.dcm", enforce_file_format=True)
    assert admin.post("/instances", data=(tmp_path / "evil.dcm").read_bytes()).status_code == 200

    def mirrored() -> bool:
        s = admin.get("/api/nas/status").json()
        return bool(s["mirrored"] >= 1 and s["pending"] == 0)

    wait_until(mirrored, DRAIN_TIMEOUT, "the instance to be mirrored")
    head = share / "_orthanc-nas" / "audit-head.json"  # the plugin's own file, fixed name
    written = [p for p in share.rglob("*") if p.is_file() and p != head]
    assert written and all(p.name.endswith(".dcm") for p in written), written
    assert not any(p.name.endswith(".sh") for p in host.rglob("*") if p.is_file())
    assert {p.name for p in (host / "allowed").iterdir()} == {"share", "escape"}
    assert list((host / "outside").iterdir()) == []
    assert all(not p.stat().st_mode & 0o111 for p in written)


def test_browsing_stays_inside_the_chosen_folder(server: tuple[OrthancServer, Client],
                                                 host: Path) -> None:
    _, admin = server
    share = host / "allowed" / "share"
    assert admin.post("/api/nas/config", {"type": "local", "path": str(share)}).status_code == 200
    (share / "out").symlink_to(host / "outside")
    (host / "outside" / "secret.txt").write_text("host file")
    try:
        assert admin.post("/api/nas/browse", {"path": ""}).json()["ok"] is True
        for path in ("..", "../..", "../../etc", "/etc", "x/../../..", "out", "out/secret.txt",
                     "..\\..", "%2e%2e"):
            r = admin.post("/api/nas/browse", {"path": path})
            assert r.status_code in (400, 503), (path, r.text)
            assert "secret.txt" not in r.text and "passwd" not in r.text
            if r.status_code == 400:
                assert r.json()["field"] == "path"
        r = admin.get("/api/nas/browse", params={"path": "../../../etc"})
        assert r.status_code == 400 and r.json()["field"] == "path"
        assert admin.post("/api/nas/browse", {"path": "out"}).status_code == 400
    finally:
        (share / "out").unlink()
        (host / "outside" / "secret.txt").unlink()
