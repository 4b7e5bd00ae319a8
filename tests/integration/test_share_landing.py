"""Issue 11 section 5: a share link's landing page showed StudyDescription (which can name the
patient or a diagnosis) before View. It shows only shares.landing_fields, enforced by the API
(default: study date and instance count)."""

from __future__ import annotations

import os
from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec

from browser import wait
from conftest import FAST
from dicom_factory import write_series
from harness import Client, OrthancServer, admin_account, deep_merge

PHI = "Smith lung carcinoma follow-up"


def shared(admin: Client, folder: Path, patient_id: str) -> str:
    """A study of two CT images described with PHI, shared: its token."""
    files = write_series(folder, 2, patient_id=patient_id, description=PHI)
    study = ""
    for f in files:
        r = admin.post("/instances", data=f.read_bytes())
        assert r.status_code == 200, r.text
        study = r.json()["ParentStudy"]
    r = admin.post(f"/api/images/{study}/share", {})
    assert r.status_code == 200, r.text
    return str(r.json()["url"]).rsplit("/", 1)[1]


def test_default_landing_sends_no_description(orthanc: OrthancServer, admin: Client,
                                              tmp_path: Path) -> None:
    token = shared(admin, tmp_path, "LANDING-1")
    r = orthanc.client().get(f"/api/shared/{token}")
    assert r.status_code == 200
    info = r.json()
    assert info["study_date"] == "20240105" and info["instance_count"] == 2
    assert not {"study_description", "description", "modalities"} & set(info)
    assert "Smith" not in r.text and "carcinoma" not in r.text and "LANDING" not in r.text


def test_configured_fields_are_sent(tmp_path: Path) -> None:
    fields = ["study_date", "instance_count", "study_description", "modalities"]
    server = OrthancServer(tmp_path / "o", deep_merge(FAST, {"OrthancNAS": {"shares": {
        "landing_fields": fields}}})).start()
    try:
        admin = server.client()
        admin.onboard(admin_account(), "Blue-Harbor-PIN-2024!")
        token = shared(admin, tmp_path / "dcm", "LANDING-2")
        info = server.client().get(f"/api/shared/{token}").json()
        assert info["study_description"] == PHI and info["modalities"] == ["CT"]
        assert info["instance_count"] == 2 and "LANDING" not in str(info)
    finally:
        server.stop()


def test_landing_page_shows_date_and_count_only(orthanc: OrthancServer, admin: Client,
                                                browser: WebDriver, tmp_path: Path) -> None:
    token = shared(admin, tmp_path, "LANDING-3")
    shots = Path(os.environ.get("ORTHANC_NAS_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    browser.delete_all_cookies()
    try:
        for width, height in ((1280, 800), (390, 844)):
            browser.set_window_size(width, height)
            browser.get(f"{orthanc.url}/s/{token}")
            wait(browser).until(ec.visibility_of_element_located((By.ID, "share-info")))
            assert browser.execute_script("return window.innerWidth") <= width
            text = browser.find_element(By.ID, "share-info").text
            assert "Study date" in text and "2024-01-05" in text and "Images" in text
            assert "Description" not in text and "Smith" not in browser.page_source
            assert browser.find_element(By.ID, "share-view").is_displayed()
            assert browser.execute_script(  # nothing pushes the page sideways
                "return document.documentElement.scrollWidth <= window.innerWidth")
            browser.save_screenshot(str(shots / f"share-landing-{width}x{height}.png"))
    finally:
        browser.set_window_size(1280, 900)
