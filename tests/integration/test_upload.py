"""Uploads in every form Orthanc accepts (a DICOM body, a ZIP, multipart/form-data with one or
several files, with and without the trailing slash), by role, with the uploader recorded and
audited; the study takeover by upload (issue 11, 2); Orthanc Explorer's Upload page in Chromium.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec

from browser import browser_login, wait
from dicom_factory import ct_instance
from harness import Account, Client, OrthancServer, make_user, storescu

Files = list[tuple[str, bytes]]


def orthanc_id(*parts: str) -> str:
    digest = hashlib.sha1("|".join(parts).encode(), usedforsecurity=False).hexdigest()
    return "-".join(digest[i:i + 8] for i in range(0, 40, 8))


def study_id_of(ds: Dataset) -> str:
    return orthanc_id(ds.PatientID, ds.StudyInstanceUID)


def instance_id_of(ds: Dataset) -> str:
    return orthanc_id(ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID,
                      ds.SOPInstanceUID)


def encoded(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def new_study(count: int, **kwargs: Any) -> list[Dataset]:
    study_uid, series_uid = generate_uid(), generate_uid()
    return [ct_instance(study_uid=study_uid, series_uid=series_uid, instance_number=i + 1,
                        size=16, **kwargs) for i in range(count)]


def raw(path: str) -> Callable[[Client, Files], list[requests.Response]]:
    return lambda client, files: [client.post(path, data=body) for _, body in files]


def zipped(client: Client, files: Files) -> list[requests.Response]:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, body in files:
            archive.writestr(name, body)
    return [client.post("/instances", data=out.getvalue(),
                        headers={"Content-Type": "application/zip"})]


def multipart(path: str, per_request: int) -> Callable[[Client, Files],
                                                       list[requests.Response]]:
    """As jQuery File Upload sends it (Orthanc Explorer: one file per request)."""
    def send(client: Client, files: Files) -> list[requests.Response]:
        return [client.post(path, files=[("files[]", (name, body, "application/octet-stream"))
                                         for name, body in files[i:i + per_request]],
                            headers={"X-Requested-With": "XMLHttpRequest"})
                for i in range(0, len(files), per_request)]
    return send


FORMS = {"raw": raw("/instances"), "raw-slash": raw("/instances/"), "zip": zipped,
         "multipart-one": multipart("/instances/", 1),
         "multipart-several": multipart("/instances/", 3),
         "multipart-no-slash": multipart("/instances", 3)}


@pytest.fixture(scope="module")
def people(admin_session: tuple[Client, Account]) -> dict[str, tuple[Client, Account]]:
    admin = admin_session[0]
    admin.ensure_logged_in()
    return {"user": make_user(admin, "up-user", "user"),
            "other": make_user(admin, "up-other", "user"),
            "viewer": make_user(admin, "up-viewer", "viewer"),
            "admin": admin_session}


@pytest.fixture(autouse=True)
def _sessions_alive(people: dict[str, tuple[Client, Account]]) -> None:
    for client, _ in people.values():
        client.ensure_logged_in()


def as_files(datasets: list[Dataset]) -> Files:
    return [(f"{ds.SOPInstanceUID}.dcm", encoded(ds)) for ds in datasets]


def uploads_audited(admin: Client, study_id: str) -> list[dict[str, Any]]:
    r = admin.post("/api/audit/search", {"event": "instance_uploaded", "target": study_id})
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def owners_shown(client: Client, study_id: str) -> list[str] | None:
    r = client.get(f"/api/images/{study_id}")
    return r.json()["uploaded_by"] if r.status_code == 200 else None


def assert_uploaded(admin: Client, uploader: Account, datasets: list[Dataset]) -> None:
    """Stored, owned by the uploader, one audit row per instance."""
    study_id = study_id_of(datasets[0])
    for ds in datasets:
        assert admin.get(f"/instances/{instance_id_of(ds)}").status_code == 200
    assert owners_shown(admin, study_id) == [uploader.username]
    rows = uploads_audited(admin, study_id)
    assert sorted(r["details"]["instance"] for r in rows) == sorted(
        instance_id_of(ds) for ds in datasets)
    assert {(r["actor"], r["details"]["ownership"], r["patient_id"]) for r in rows} == {
        (uploader.username, "owner", datasets[0].PatientID)}


@pytest.mark.parametrize("role", ["user", "admin"])
@pytest.mark.parametrize("form", sorted(FORMS))
def test_every_upload_form_stores_records_and_audits(
        people: dict[str, tuple[Client, Account]], form: str, role: str) -> None:
    client, account = people[role]
    datasets = new_study(3, patient_id=f"UP-{form}-{role}"[:60])
    answers = FORMS[form](client, as_files(datasets))
    assert all(a.status_code == 200 for a in answers), answers[0].text
    assert_uploaded(people["admin"][0], account, datasets)
    if role == "user":
        r = client.post("/api/images/search", {"patient_id": datasets[0].PatientID})
        assert [i["id"] for i in r.json()["items"]] == [study_id_of(datasets[0])]


def test_answers_are_orthanc_s_own(people: dict[str, tuple[Client, Account]]) -> None:
    """What Orthanc Explorer and scripts expect: the instance for a body, a list for a ZIP,
    an empty 200 for multipart (jQuery File Upload shows Done on any 2xx)."""
    client = people["user"][0]
    one, two, three = new_study(3, patient_id="UP-ANSWERS")
    body = client.post("/instances", data=encoded(one)).json()
    assert body["ID"] == instance_id_of(one) and body["Status"] == "Success"
    assert body["ParentStudy"] == study_id_of(one)
    listed = zipped(client, as_files([two]))[0].json()
    assert [i["ID"] for i in listed] == [instance_id_of(two)]
    r = multipart("/instances/", 1)(client, as_files([three]))[0]
    assert (r.status_code, r.content) == (200, b"")


@pytest.mark.parametrize("form", sorted(FORMS))
def test_a_viewer_cannot_upload_in_any_form(people: dict[str, tuple[Client, Account]],
                                            form: str) -> None:
    datasets = new_study(2, patient_id=f"UP-VIEWER-{form}")
    answers = FORMS[form](people["viewer"][0], as_files(datasets))
    assert {a.status_code for a in answers} == {403}
    admin = people["admin"][0]
    assert all(admin.get(f"/instances/{instance_id_of(ds)}").status_code == 404
               for ds in datasets)
    assert uploads_audited(admin, study_id_of(datasets[0])) == []


@pytest.mark.parametrize("form", ["raw", "multipart-one", "multipart-several", "zip"])
def test_garbage_is_refused_as_plain_orthanc_refuses_it(
        people: dict[str, tuple[Client, Account]], form: str) -> None:
    """A JSON 400 with Orthanc's message (Explorer shows Failure); in a ZIP, Orthanc skips
    what is not DICOM and lists what it stored: nothing."""
    admin = people["admin"][0]
    before = admin.get("/statistics").json()["CountInstances"]
    answers = FORMS[form](people["user"][0], [("junk.dcm", b"not a DICOM file " * 64)])
    assert len(answers) == 1
    if form == "zip":
        assert (answers[0].status_code, answers[0].json()) == (200, [])
    else:
        assert answers[0].status_code == 400
        assert answers[0].json()["Message"] == "Bad file format"
    assert admin.get("/statistics").json()["CountInstances"] == before


# ---- the study takeover by upload (issue 11, 2) -----------------------------------------------


@pytest.mark.parametrize("form", ["raw", "multipart-one", "zip"])
def test_uploading_into_another_user_s_study_takes_nothing(
        people: dict[str, tuple[Client, Account]], form: str) -> None:
    (alice, alice_account), (bob, bob_account) = people["user"], people["other"]
    admin = people["admin"][0]
    original = new_study(2, patient_id=f"UP-VICTIM-{form}")
    assert all(r.status_code == 200 for r in FORMS["raw"](alice, as_files(original)))
    study_id = study_id_of(original[0])
    # bob reads the identifiers (role-based native reads), then sends an instance with them
    seen = bob.get(f"/studies/{study_id}").json()
    crafted = ct_instance(patient_id=seen["PatientMainDicomTags"]["PatientID"],
                          study_uid=seen["MainDicomTags"]["StudyInstanceUID"], size=16)
    answers = FORMS[form](bob, as_files([crafted]))
    assert all(a.status_code == 200 for a in answers)
    assert admin.get(f"/instances/{instance_id_of(crafted)}").status_code == 200  # stored

    # The shared mode shows bob every study; it is still not his: not "mine", not his to give.
    r = bob.post("/api/images/search", {"patient_id": crafted.PatientID, "mine": True})
    assert r.status_code == 200 and r.json()["items"] == []
    assert bob.post(f"/api/images/{study_id}/share", {"allow_download": True}).status_code == 403
    assert bob.post(f"/api/images/{study_id}/assign",
                    {"username": bob_account.username}).status_code == 403
    assert bob.post(f"/api/images/{instance_id_of(crafted)}/share", {}).status_code == 403
    assert owners_shown(alice, study_id) == [alice_account.username]
    joined = [r for r in uploads_audited(admin, study_id) if r["actor"] == bob_account.username]
    assert [(r["details"]["ownership"], r["details"].get("joined_study_owned_by_others"))
            for r in joined] == [("joined", True)]


def test_a_modality_mapped_to_a_user_takes_no_study_of_another(
        orthanc: OrthancServer, people: dict[str, tuple[Client, Account]],
        tmp_path: Path) -> None:
    """The same rule on the C-STORE path: the AE title's user owns only what it starts."""
    (alice, alice_account), (bob, bob_account) = people["user"], people["other"]
    admin = people["admin"][0]
    original = new_study(1, patient_id="UP-VICTIM-CSTORE")
    assert alice.post("/instances", data=encoded(original[0])).status_code == 200
    study_id = study_id_of(original[0])
    crafted = ct_instance(patient_id=original[0].PatientID,
                          study_uid=original[0].StudyInstanceUID, size=16)
    path = tmp_path / "crafted.dcm"
    crafted.save_as(path, enforce_file_format=True)
    assert admin.put("/api/admin/modalities/storescu", {
        "aet": "STORESCU", "host": "127.0.0.1", "port": 11112,
        "owner": bob_account.username}).status_code == 200
    try:
        result = storescu(orthanc, [path])
        assert result.returncode == 0, result.stderr
    finally:
        admin.delete("/api/admin/modalities/storescu")
    assert admin.get(f"/instances/{instance_id_of(crafted)}").status_code == 200
    assert bob.post(f"/api/images/{study_id}/share", {}).status_code == 403
    assert owners_shown(alice, study_id) == [alice_account.username]


# ---- Orthanc Explorer's Upload page in Chromium ------------------------------------------------


def test_orthanc_explorer_upload_page_stores_owns_and_audits(
        browser: WebDriver, orthanc: OrthancServer,
        people: dict[str, tuple[Client, Account]], tmp_path: Path) -> None:
    client, account = people["user"]
    datasets = new_study(2, patient_id="UP-EXPLORER", patient_name="Explorer^Upload")
    paths = []
    for ds in datasets:
        path = tmp_path / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(str(path))

    browser_login(browser, orthanc.url + "/app/explorer.html", client, account)
    browser.get(orthanc.url + "/app/explorer.html#upload")
    wait(browser).until(ec.presence_of_element_located((By.ID, "fileupload")))
    browser.find_element(By.ID, "fileupload").send_keys("\n".join(paths))
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "upload-list"),
                                                         datasets[1].SOPInstanceUID))
    wait(browser).until(ec.element_to_be_clickable((By.ID, "upload-button"))).click()
    label = (By.CSS_SELECTOR, "#progress .label")
    wait(browser).until(lambda d: d.find_element(*label).text in ("Done", "Failure"))
    browser.save_screenshot(str(tmp_path / "explorer-upload.png"))
    assert browser.find_element(*label).text == "Done"
    assert_uploaded(people["admin"][0], account, datasets)
