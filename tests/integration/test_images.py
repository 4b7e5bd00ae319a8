"""Images: ownership, search, tags, share links and the dashboard, against a real Orthanc."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from pydicom.uid import generate_uid
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec

from browser import browser_login, wait
from dicom_factory import ct_instance, write_series
from harness import Account, Client, OrthancServer, make_user, storescu

# A generated set: (patient id, name, modality, date, description), one study each.
STUDIES = [(f"IMG-{i:02d}", f"{last}^{first}", modality, f"2024{month:02d}{day:02d}", desc)
           for i, (last, first, modality, month, day, desc) in enumerate([
               ("Smith", "Anna", "CT", 1, 5, "Chest CT"), ("Smith", "Bob", "MR", 2, 10,
                                                            "Knee MRI"),
               ("Jones", "Carl", "CT", 3, 15, "Head CT"), ("Brown", "Dora", "US", 4, 20,
                                                          "Abdomen US"),
               ("Smithers", "Eve", "MR", 5, 25, "Brain MRI"), ("Taylor", "Fay", "CT", 6, 1,
                                                              "Chest CT follow-up"),
               ("Wilson", "Gus", "US", 7, 7, "Thyroid US"), ("Moore", "Hal", "CT", 8, 8,
                                                            "Spine CT"),
           ])]


@pytest.fixture(scope="module")
def people(admin_session: tuple[Client, Account]) -> dict[str, tuple[Client, Account]]:
    admin = admin_session[0]
    admin.ensure_logged_in()
    return {"uploader": make_user(admin, "img-uploader", "user"),
            "other": make_user(admin, "img-other", "user"),
            "reader": make_user(admin, "img-viewer", "viewer")}


@pytest.fixture(autouse=True)
def _sessions_alive(people: dict[str, tuple[Client, Account]]) -> None:
    """Some tests move the server's clock past the idle timeout."""
    for client, _ in people.values():
        client.ensure_logged_in()


@pytest.fixture(scope="module")
def library(people: dict[str, tuple[Client, Account]],
            tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The generated studies, uploaded by `img-uploader`; patient id -> Orthanc study id."""
    uploader = people["uploader"][0]
    folder = tmp_path_factory.mktemp("library")
    ids = {}
    for pid, name, modality, date, desc in STUDIES:
        files = write_series(folder / pid, 2, patient_id=pid, patient_name=name,
                             modality=modality, study_date=date, description=desc)
        answers = [uploader.post("/instances", data=f.read_bytes()) for f in files]
        assert all(a.status_code == 200 for a in answers), answers[0].text
        ids[pid] = answers[0].json()["ParentStudy"]
    return ids


def search(client: Client, **params: object) -> dict[str, object]:
    """Searches by GET (query string) and by POST (JSON body, what the page uses): the same."""
    r = client.get("/api/images", params={"limit": 100, **params})
    assert r.status_code == 200, r.text
    body: dict[str, object] = r.json()
    posted = client.post("/api/images/search", {"limit": 100, **params})
    assert posted.status_code == 200 and posted.json() == body, posted.text
    return body


def pids(body: dict[str, object]) -> list[str]:
    items = body["items"]
    assert isinstance(items, list)
    return [i["PatientID"] for i in items if str(i["PatientID"]).startswith("IMG-")]


def test_uploads_belong_to_their_uploader(people: dict[str, tuple[Client, Account]],
                                          library: dict[str, str], admin: Client) -> None:
    uploader, other, reader = (people[k][0] for k in ("uploader", "other", "reader"))
    assert sorted(pids(search(uploader, mine=True))) == sorted(library)
    assert sorted(pids(search(other))) == sorted(library)  # shared mode: everyone sees all
    assert pids(search(other, mine=True)) == []  # "mine": brought or given
    assert sorted(pids(search(reader))) == sorted(library)
    assert set(library) <= set(pids(search(admin)))
    study = library["IMG-00"]
    detail = uploader.get(f"/api/images/{study}").json()
    assert detail["uploaded_by"] == ["img-uploader"] and detail["level"] == "study"
    assert detail["patient"]["PatientID"] == "IMG-00" and len(detail["series"]) == 1
    series_id = detail["series"][0]["id"]
    instance_id = detail["series"][0]["instances"][0]
    assert uploader.get(f"/api/images/{series_id}").json()["study_id"] == study
    assert uploader.get(f"/api/images/{instance_id}").json()["level"] == "instance"
    assert other.get(f"/api/images/{study}").status_code == 200  # seen, but not theirs to give:
    assert other.post(f"/api/images/{study}/share", {}).status_code == 403
    assert other.post(f"/api/images/{study}/assign", {"username": "img-other"}
                      ).status_code == 403
    assert other.get("/api/images/00000000-00000000-00000000-00000000-00000000"
                     ).status_code == 404
    assert uploader.get("/api/images/not-an-id").status_code == 403  # no route of that shape


def test_assigned_studies_become_visible(people: dict[str, tuple[Client, Account]],
                                         library: dict[str, str]) -> None:
    uploader, other = people["uploader"][0], people["other"][0]
    study = library["IMG-03"]
    r = uploader.post(f"/api/images/{study}/assign", {"username": "img-other"})
    assert r.status_code == 200
    assert pids(search(other, mine=True)) == ["IMG-03"]
    assert other.post(f"/api/images/{study}/share", {}).status_code == 200  # now theirs to give


def test_cstore_ownership_follows_the_calling_ae_title(
        orthanc: OrthancServer, admin: Client, people: dict[str, tuple[Client, Account]],
        tmp_path: Path) -> None:
    other = people["other"][0]
    modality = {"aet": "STORESCU", "host": "127.0.0.1", "port": 11112}
    assert admin.put("/api/admin/modalities/storescu", {**modality, "owner": "nobody-x"}
                     ).status_code == 400
    r = admin.put("/api/admin/modalities/storescu", {**modality, "owner": "img-other"})
    assert r.status_code == 200, r.text
    try:
        mapped = write_series(tmp_path / "a", 2, patient_id="AE-MAPPED")
        assert storescu(orthanc, mapped).returncode == 0
        unmapped = write_series(tmp_path / "b", 1, patient_id="AE-UNMAPPED")
        assert storescu(orthanc, unmapped, aet="UNMAPPED").returncode == 0
    finally:
        admin.delete("/api/admin/modalities/storescu")
    mine = other.get("/api/images", params={"patient_id": "AE-*", "mine": "true"}
                     ).json()["items"]
    assert [i["PatientID"] for i in mine] == ["AE-MAPPED"]
    assert mine[0]["uploaded_by"] == ["img-other"]
    everything = admin.get("/api/images", params={"patient_id": "AE-UNMAPPED"}).json()
    assert everything["items"][0]["uploaded_by"] == []  # belongs to no user


@pytest.mark.parametrize(("params", "expected"), [
    ({"patient_name": "Smith*"}, {"IMG-00", "IMG-01", "IMG-04"}),
    ({"patient_name": "Smith^?nna"}, {"IMG-00"}),
    ({"patient_id": "IMG-02"}, {"IMG-02"}),
    ({"modality": "US"}, {"IMG-03", "IMG-06"}),
    ({"date_from": "20240301", "date_to": "20240601"}, {"IMG-02", "IMG-03", "IMG-04",
                                                         "IMG-05"}),
    ({"date_from": "2024-07-01"}, {"IMG-06", "IMG-07"}),
    ({"description": "*Chest*"}, {"IMG-00", "IMG-05"}),
    ({"uploader": "img-uploader", "modality": "MR"}, {"IMG-01", "IMG-04"}),
])
def test_filters(people: dict[str, tuple[Client, Account]], library: dict[str, str],
                 params: dict[str, str], expected: set[str]) -> None:
    assert set(pids(search(people["uploader"][0], **params))) == expected


def test_sort_and_pagination(people: dict[str, tuple[Client, Account]],
                             library: dict[str, str]) -> None:
    uploader = people["uploader"][0]
    by_date = [pid for pid, *_ in sorted(STUDIES, key=lambda s: s[3])]
    assert pids(search(uploader, sort="date")) == by_date
    assert pids(search(uploader, sort="-date")) == by_date[::-1]
    pages = [pids(search(uploader, sort="date", limit=3, offset=o, mine=True))
             for o in (0, 3, 6)]
    assert [pid for page in pages for pid in page] == by_date
    assert [len(p) for p in pages] == [3, 3, 2]
    assert search(uploader, limit=3, mine=True)["total"] == len(STUDIES)
    names = [i["PatientName"] for i in search(uploader, sort="patient_name")["items"]]
    assert names == sorted(names)
    for bad in ({"sort": "size"}, {"limit": "0"}, {"date_from": "2024-13"}):
        r = uploader.get("/api/images", params=bad)
        assert r.status_code == 400 and "field" in r.json()


def test_tags(people: dict[str, tuple[Client, Account]], library: dict[str, str]) -> None:
    uploader, reader = people["uploader"][0], people["reader"][0]
    study = library["IMG-07"]
    assert uploader.post(f"/api/images/{study}/tags", {"tag": "urgent review"}
                         ).json()["tags"] == ["urgent review"]
    for bad in ("", "x" * 41, "<script>", "a/b"):
        r = uploader.post(f"/api/images/{study}/tags", {"tag": bad})
        assert r.status_code == 400 and r.json()["field"] == "tag"
    assert reader.post(f"/api/images/{study}/tags", {"tag": "x"}).status_code == 403
    found = search(uploader, tag="urgent review")
    assert pids(found) == ["IMG-07"] and found["items"][0]["tags"] == ["urgent review"]
    assert uploader.delete(f"/api/images/{study}/tags/urgent%20review").status_code == 200
    assert pids(search(uploader, tag="urgent review")) == []


def _share(client: Client, study: str, **body: object) -> tuple[str, dict[str, object]]:
    r = client.post(f"/api/images/{study}/share", body)
    assert r.status_code == 200, r.text
    created: dict[str, object] = r.json()
    url = str(created["url"])
    return url.rsplit("/s/", 1)[1], created


def test_share_lifecycle_with_pin(orthanc: OrthancServer, admin: Client,
                                  people: dict[str, tuple[Client, Account]],
                                  library: dict[str, str]) -> None:
    uploader = people["uploader"][0]
    study = library["IMG-01"]
    token, created = _share(uploader, study, expires_in_hours=24, max_views=2, pin="4321",
                            allow_download=True)
    assert len(token) == 43 and "IMG" not in str(created["url"]) and "Smith" not in token
    doctor = orthanc.client()
    del doctor.http.headers["Origin"]
    landing = doctor.get(f"/s/{token}")
    assert landing.status_code == 200 and "text/html" in landing.headers["Content-Type"]
    assert landing.headers["Referrer-Policy"] == "no-referrer"
    assert landing.headers["Cache-Control"] == "no-store"
    info = doctor.get(f"/api/shared/{token}").json()
    assert info["views_left"] == 2 and info["pin_required"] is True
    assert "Smith" not in str(info) and "IMG-01" not in str(info)  # no patient data yet
    assert doctor.get(f"/s/{token}/content").status_code == 403  # not opened
    assert doctor.post(f"/api/shared/{token}/open", {"pin": "0000"}).status_code == 403
    opened = doctor.post(f"/api/shared/{token}/open", {"pin": "4321"})
    assert opened.status_code == 200 and opened.json()["patient"]["PatientID"] == "IMG-01"
    assert f"Path=/s/{token}/" in opened.headers["Set-Cookie"]
    content = doctor.get(f"/s/{token}/content").json()
    instance = content["series"][0]["instances"][0]
    preview = doctor.get(f"/s/{token}/preview/{instance}")
    assert preview.status_code == 200 and preview.content.startswith(b"\x89PNG")
    foreign = admin.get(f"/studies/{library['IMG-02']}/instances").json()[0]["ID"]
    assert doctor.get(f"/s/{token}/preview/{foreign}").status_code == 404
    assert doctor.get(f"/studies/{library['IMG-02']}").status_code == 403  # no Orthanc API
    assert doctor.get("/patients").status_code == 403
    download = doctor.get(f"/s/{token}/download")
    assert download.status_code == 200 and download.content[:2] == b"PK"
    mine = uploader.get("/api/shares").json()["shares"]
    share = next(s for s in mine if s["id"] == created["id"])
    assert share["views"] == 1 and share["state"] == "active"
    assert uploader.delete(f"/api/shares/{created['id']}").status_code == 200
    assert doctor.get(f"/api/shared/{token}").status_code == 410
    gone = doctor.get(f"/s/{token}")
    assert gone.status_code == 410 and "no longer valid" in gone.text
    assert doctor.get(f"/s/{token}/content").status_code == 403  # revocation ends viewing
    events = {i["event"] for i in admin.get("/api/audit", params={"limit": 1000}
                                            ).json()["items"] if i["details"].get("share")
              == created["id"]}
    assert {"share_created", "share_pin_failed", "share_opened", "share_downloaded",
            "share_revoked"} <= events


def test_share_views_are_counted_atomically(orthanc: OrthancServer,
                                            people: dict[str, tuple[Client, Account]],
                                            library: dict[str, str]) -> None:
    token, _ = _share(people["uploader"][0], library["IMG-02"], max_views=3)
    for _ in range(2):
        assert orthanc.client().post(f"/api/shared/{token}/open", {}).status_code == 200
    results: list[int] = []

    def open_once() -> None:
        results.append(orthanc.client().post(f"/api/shared/{token}/open", {}).status_code)

    threads = [threading.Thread(target=open_once) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200] + [410] * 11
    assert orthanc.client().get(f"/api/shared/{token}").json()["error"].endswith("used up")
    assert orthanc.client().get(f"/s/{token}").status_code == 410


def test_share_expiry_with_the_clock_and_limits(orthanc: OrthancServer, admin: Client,
                                                people: dict[str, tuple[Client, Account]],
                                                library: dict[str, str]) -> None:
    uploader, reader = people["uploader"][0], people["reader"][0]
    study = library["IMG-04"]
    for bad in ({"expires_in_hours": 10_000}, {"max_views": 0}, {"max_views": "3"},
                {"pin": "12"}):
        r = uploader.post(f"/api/images/{study}/share", bad)
        assert r.status_code == 400 and "field" in r.json()
    assert reader.post(f"/api/images/{study}/share", {}).status_code == 403
    other = people["other"][0]
    assert other.post(f"/api/images/{library['IMG-05']}/share", {}).status_code == 403
    token, created = _share(uploader, study, expires_in_hours=1)
    assert orthanc.client().get(f"/api/shared/{token}").status_code == 200
    orthanc.advance_clock(3601)
    r = orthanc.client().get(f"/api/shared/{token}")
    assert r.status_code == 410 and r.json()["reason"] == "expired"
    admin.ensure_logged_in()  # an hour passed: the admin's session idled out
    expired = admin.get("/api/audit", params={"event": "share_expired"}).json()["items"]
    assert any(i["details"]["share"] == created["id"] for i in expired)


def test_share_links_end_with_their_creators_account(orthanc: OrthancServer, admin: Client,
                                                     tmp_path: Path) -> None:
    admin.ensure_logged_in()
    tokens = {}
    for name, change in (("img-leaver", {"enabled": False}), ("img-demoted", {"role": "viewer"}),
                         ("img-deleted", None)):
        client, _ = make_user(admin, name, "user")
        files = write_series(tmp_path / name, 1, patient_id=name.upper())
        study = client.post("/instances", data=files[0].read_bytes()).json()["ParentStudy"]
        token, _ = _share(client, study)
        assert orthanc.client().get(f"/api/shared/{token}").status_code == 200
        uid = next(u["id"] for u in admin.get("/api/admin/users").json()["users"]
                   if u["username"] == name)
        r = (admin.put(f"/api/admin/users/{uid}", change) if change
             else admin.delete(f"/api/admin/users/{uid}"))
        assert r.status_code == 200, r.text
        tokens[name] = token
    for token in tokens.values():
        r = orthanc.client().get(f"/api/shared/{token}")
        assert r.status_code == 410 and r.json()["reason"] == "revoked"
    revoked = admin.get("/api/audit", params={"event": "share_revoked"}).json()["items"]
    assert {"account disabled", "role viewer", "account deleted"} <= {
        i["details"].get("reason") for i in revoked}


def test_a_link_to_deleted_images_is_410(orthanc: OrthancServer, admin: Client,
                                         tmp_path: Path) -> None:
    admin.ensure_logged_in()
    uploader, _ = make_user(admin, "img-gone", "user")  # the shared uploader's counts stay
    files = write_series(tmp_path, 1, patient_id="IMG-GONE")
    study = uploader.post("/instances", data=files[0].read_bytes()).json()["ParentStudy"]
    token, _ = _share(uploader, study)
    assert admin.delete(f"/studies/{study}").status_code == 200
    r = orthanc.client().get(f"/api/shared/{token}")
    assert r.status_code == 410 and "deleted" in r.json()["error"]


def test_unknown_tokens_are_404_and_guessing_is_throttled(orthanc: OrthancServer) -> None:
    guesser = orthanc.client()
    statuses = [guesser.get(f"/api/shared/{'x' * 42}{i % 10}").status_code for i in range(21)]
    assert statuses[0] == 404 and statuses[-1] == 503
    # Not 429: neither Orthanc 1.10.1 nor 1.12.7 lets a plugin send a status missing from its
    # own enumeration (measured: the call is refused and the answer breaks). Retry-After says it.
    r = guesser.get(f"/api/shared/{'z' * 43}")
    assert r.status_code == 503 and r.headers["Retry-After"] == "60"
    assert "too many" in r.json()["error"]
    assert guesser.get("/s/short").status_code == 403  # not even a token: the filter refuses
    orthanc.advance_clock(16 * 60)  # the window passes
    assert guesser.get(f"/api/shared/{'y' * 43}").status_code == 404


def test_dashboard_numbers_match_what_was_stored(admin: Client,
                                                 people: dict[str, tuple[Client, Account]],
                                                 library: dict[str, str]) -> None:
    stats = admin.get("/api/dashboard/stats").json()
    orthanc_stats = admin.get("/statistics").json()
    assert stats["scope"] == "all"
    assert stats["orthanc"]["studies"] == orthanc_stats["CountStudies"]
    assert stats["orthanc"]["instances"] == orthanc_stats["CountInstances"]
    assert stats["orthanc"]["disk_bytes"] == int(orthanc_stats["TotalDiskSize"]) > 0
    series = admin.post("/tools/find", {"Level": "Series", "Query": {"Modality": "US"}}).json()
    assert stats["modalities"]["US"] == len(series)
    assert stats["two_factor"]["user"]["totp"] >= 2 and stats["logins"]["logins_24h"] >= 3
    mine = people["uploader"][0].get("/api/dashboard/stats").json()
    assert mine["scope"] == "mine" and mine["uploaded_instances"] == 2 * len(STUDIES)
    assert mine["own_studies"] == len(STUDIES) and "orthanc" not in mine
    assert mine["studies"] == orthanc_stats["CountStudies"]  # shared mode: sees every study
    uploads = sum(d["instances"] for d in stats["received_per_day"] if d["source"] == "upload")
    assert uploads >= 2 * len(STUDIES)


def test_share_link_in_chromium_with_pin_shows_an_image(
        browser: WebDriver, orthanc: OrthancServer, people: dict[str, tuple[Client, Account]],
        library: dict[str, str]) -> None:
    token, _ = _share(people["uploader"][0], library["IMG-06"], pin="2468")
    browser.delete_all_cookies()
    browser.get(f"{orthanc.url}/s/{token}")
    wait(browser).until(ec.visibility_of_element_located((By.ID, "share-pin"))).send_keys(
        "2468")
    browser.find_element(By.ID, "share-view").click()
    wait(browser).until(ec.url_contains("/viewer"))
    canvas = wait(browser).until(ec.visibility_of_element_located((By.CSS_SELECTOR,
                                                                    "#iv .iv-canvas")))
    wait(browser).until(lambda d: d.execute_script(
        "return arguments[0].width > 0 && window.imageViewer.state().shown !== ''", canvas))
    assert "Wilson" in browser.page_source  # the patient, shown only after View


def test_images_page_searches(browser: WebDriver, orthanc: OrthancServer,
                              people: dict[str, tuple[Client, Account]],
                              library: dict[str, str]) -> None:
    client, account = people["reader"]
    browser_login(browser, orthanc.url + "/ui/images", client, account)
    wait(browser).until(ec.url_contains("/ui/images"))
    browser.find_element(By.ID, "f-modality").send_keys("US")
    browser.find_element(By.ID, "search-submit").click()
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "results"), "IMG-06"))
    rows = browser.find_elements(By.CSS_SELECTOR, "#results [data-study-id]")
    assert {r.get_attribute("data-study-id") for r in rows} >= {library["IMG-03"],
                                                                library["IMG-06"]}


def test_uploading_a_non_dicom_file_is_a_clear_400(people: dict[str, tuple[Client, Account]]
                                                   ) -> None:
    r = people["uploader"][0].post("/instances", data=b"not a DICOM file")
    assert r.status_code == 400 and r.json()["Message"] == "Bad file format"  # Orthanc's own
    ds = ct_instance(patient_id="IMG-ONE", study_uid=generate_uid())
    assert ds.PatientID == "IMG-ONE"
