"""Images as modalities send them (compressed transfer syntaxes, cine, MONOCHROME1, signed),
decoded by Orthanc with orthanc-gdcm and shown by the viewer, behind the login and through share
links that reach only the shared study."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select

from browser import browser_login, wait
from harness import Account, Client, OrthancServer, make_user

SHOTS = Path(os.environ.get("ORTHANC_NAS_SHOTS", "/tmp/viewer-shots"))
CR_UID = "1.2.840.10008.5.1.4.1.1.1"  # Computed Radiography Image Storage


def _fresh_uids(ds: Dataset, patient: str) -> Dataset:
    """pydicom's test files share UIDs (MR_small_*): each kind becomes its own study."""
    ds.PatientID, ds.PatientName = patient, f"Kind^{patient}"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    return ds


def _test_file(name: str, patient: str) -> Dataset:
    path = get_testdata_file(name)
    assert path, name
    return _fresh_uids(pydicom.dcmread(path), patient)


def _cr_mono1() -> Dataset:
    """A MONOCHROME1 CR (none ships with pydicom): 12-bit, uncompressed, with a window."""
    ds = _test_file("CT_small.dcm", "VIEW-CR-M1")
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = CR_UID
    ds.Modality, ds.PhotometricInterpretation = "CR", "MONOCHROME1"
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.WindowCenter, ds.WindowWidth = -850, 400
    return ds


def _cr_j2k() -> Dataset:
    """A JPEG 2000 CR: pydicom's 512x512 JPEG 2000 image, declared a MONOCHROME1 CR."""
    ds = _test_file("693_J2KI.dcm", "VIEW-CR-J2K")
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = CR_UID
    ds.Modality, ds.PhotometricInterpretation = "CR", "MONOCHROME1"
    return ds


# kind -> the dataset a modality would send
KINDS = {
    "JPEG 2000 lossless": lambda: _test_file("MR_small_jp2klossless.dcm", "VIEW-J2K-LL"),
    "JPEG 2000 lossy, 16-bit signed": lambda: _test_file("JPEG2000.dcm", "VIEW-J2K"),
    "JPEG 2000 CR, MONOCHROME1": _cr_j2k,
    "JPEG-LS lossless": lambda: _test_file("MR_small_jpeg_ls_lossless.dcm", "VIEW-JLS"),
    "RLE lossless, 16-bit": lambda: _test_file("MR_small_RLE.dcm", "VIEW-RLE"),
    "JPEG lossless (process 14), colour": lambda: _test_file("SC_rgb_jpeg_gdcm.dcm", "VIEW-JLL"),
    "JPEG baseline, colour": lambda: _test_file("SC_rgb_jpeg_dcmtk.dcm", "VIEW-JPG"),
    "JPEG extended, 12-bit": lambda: _test_file("JPGExtended.dcm", "VIEW-JPGX"),
    "multi-frame ultrasound (30 frames, JPEG)": lambda: _test_file("examples_ybr_color.dcm",
                                                                   "VIEW-US"),
    "MONOCHROME1 CR": _cr_mono1,
    "16-bit signed CT": lambda: _test_file("CT_small.dcm", "VIEW-CT"),
    "big endian": lambda: _test_file("MR_small_bigendian.dcm", "VIEW-BE"),
}


def _is_image(body: bytes) -> bool:
    return body.startswith(b"\x89PNG\r\n\x1a\n") or body.startswith(b"\xff\xd8")


@pytest.fixture(scope="module")
def reader(admin_session: tuple[Client, Account]) -> tuple[Client, Account]:
    admin_session[0].ensure_logged_in()
    return make_user(admin_session[0], "view-reader", "viewer")


@pytest.fixture(scope="module")
def kinds(admin_session: tuple[Client, Account],
          tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    """Each kind uploaded as a modality sent it: kind -> its instance, series and study."""
    admin = admin_session[0]
    admin.ensure_logged_in()
    folder = tmp_path_factory.mktemp("kinds")
    out = {}
    for i, (kind, make) in enumerate(KINDS.items()):
        path = folder / f"{i}.dcm"
        make().save_as(path, enforce_file_format=True)
        r = admin.post("/instances", data=path.read_bytes())
        assert r.status_code == 200, (kind, r.text)
        body = r.json()
        out[kind] = {"instance": body["ID"], "series": body["ParentSeries"],
                     "study": body["ParentStudy"]}
    return out


def test_every_kind_is_decoded_for_a_viewer(reader: tuple[Client, Account],
                                            kinds: dict[str, dict[str, str]]) -> None:
    client = reader[0]
    client.ensure_logged_in()
    failed = []
    for kind, ids in kinds.items():
        base = f"/instances/{ids['instance']}"
        for uri in (f"{base}/preview", f"{base}/frames/0/rendered", f"{base}/frames/0/preview",
                    f"{base}/frames/0/rendered?window-center=40&window-width=400",
                    f"/api/viewer/thumbnail/{ids['study']}"):
            r = client.get(uri)
            if r.status_code != 200 or not _is_image(r.content):
                failed.append((kind, uri, r.status_code))
        stack = client.get(f"/api/viewer/series/{ids['series']}")
        if stack.status_code != 200:
            failed.append((kind, "series", stack.status_code))
    assert not failed
    us_series = kinds["multi-frame ultrasound (30 frames, JPEG)"]["series"]
    us = client.get(f"/api/viewer/series/{us_series}")
    assert len(us.json()["frames"]) == 30 and us.json()["colour"] is True
    cr = client.get(f"/api/viewer/series/{kinds['MONOCHROME1 CR']['series']}").json()
    assert cr["window"] == [-850.0, 400.0] and cr["photometric"] == "MONOCHROME1"


def _open_share(admin: Client, server: OrthancServer, study: str) -> tuple[str, Client]:
    r = admin.post(f"/api/images/{study}/share", {"max_views": 2})
    assert r.status_code == 200, r.text
    token = str(r.json()["url"]).rsplit("/s/", 1)[1]
    visitor = server.client()
    assert visitor.post(f"/api/shared/{token}/open", {}).status_code == 200
    return token, visitor


def test_a_share_reaches_its_study_and_nothing_else_through_every_viewer_route(
        orthanc: OrthancServer, admin: Client, kinds: dict[str, dict[str, str]]) -> None:
    mine, other = kinds["JPEG 2000 CR, MONOCHROME1"], kinds["JPEG-LS lossless"]
    token, visitor = _open_share(admin, orthanc, mine["study"])
    link = f"/s/{token}"
    routes = ("{link}/frames/{i}/0/rendered", "{link}/frames/{i}/0/preview",
              "{link}/frames/{i}/0/rendered?window-center=40&window-width=400",
              "{link}/preview/{i}", "{link}/series/{s}")
    for template in routes:
        ok = visitor.get(template.format(link=link, i=mine["instance"], s=mine["series"]))
        assert ok.status_code == 200, (template, ok.text)
        stolen = visitor.get(template.format(link=link, i=other["instance"], s=other["series"]))
        assert stolen.status_code == 404, (template, stolen.status_code)
        assert not _is_image(stolen.content) and "frames" not in stolen.text
    # Orthanc's own routes stay closed to a viewing session (it is no login).
    for uri in (f"/instances/{other['instance']}/frames/0/rendered",
                f"/instances/{mine['instance']}/preview", f"/series/{mine['series']}"):
        assert visitor.get(uri).status_code in (401, 403), uri
    # Parameters the viewer never sends are refused, not forwarded to Orthanc.
    for query in ("?width=4000", "?window-center=1", "?window-center=1%26x=2&window-width=3"):
        r = visitor.get(f"{link}/frames/{mine['instance']}/0/rendered{query}")
        assert r.status_code == 400 and "error" in r.json(), query
    # Many images, one view: only "View" counts.
    shares = admin.get("/api/shares").json()["shares"]
    assert next(s for s in shares if s["study_id"] == mine["study"])["views"] == 1


def test_a_share_of_one_series_lists_only_it(orthanc: OrthancServer, admin: Client,
                                            kinds: dict[str, dict[str, str]]) -> None:
    mine = kinds["multi-frame ultrasound (30 frames, JPEG)"]
    token, visitor = _open_share(admin, orthanc, mine["study"])
    stack = visitor.get(f"/s/{token}/series/{mine['series']}").json()
    assert len(stack["frames"]) == 30 and {f[0] for f in stack["frames"]} == {mine["instance"]}
    assert visitor.get(f"/s/{token}/frames/{mine['instance']}/29/rendered").status_code == 200
    anonymous = orthanc.client()
    assert anonymous.get(f"/s/{token}/series/{mine['series']}").status_code == 403


@pytest.fixture
def fresh_browser(tmp_path: Path) -> Iterator[WebDriver]:
    """A new Chromium profile: what a doctor who receives a link has."""
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--window-size=1280,800",
                 f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    os.environ.setdefault("SE_OFFLINE", "true")
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    yield driver
    driver.quit()


def _drawn(driver: WebDriver) -> bool:
    return bool(driver.execute_script(
        "const s = window.imageViewer && window.imageViewer.state();"
        "return s && s.shown !== '' && document.querySelector('#iv .iv-note').hidden"
        " && document.querySelector('#iv .iv-canvas').width > 0;"))


def _state(driver: WebDriver) -> dict[str, object]:
    state: dict[str, object] = driver.execute_script("return window.imageViewer.state();")
    return state


def _shoot(driver: WebDriver, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    for width, height in ((1280, 800), (390, 844)):
        driver.set_window_size(width, height)
        wait(driver).until(_drawn)
        driver.save_screenshot(str(SHOTS / f"{name}-{width}.png"))
    driver.set_window_size(1280, 800)


@pytest.mark.parametrize("kind", ["multi-frame ultrasound (30 frames, JPEG)",
                                  "JPEG 2000 CR, MONOCHROME1"])
def test_a_share_link_opens_the_viewer_in_a_fresh_browser(
        fresh_browser: WebDriver, orthanc: OrthancServer, admin: Client,
        kinds: dict[str, dict[str, str]], kind: str) -> None:
    driver = fresh_browser
    r = admin.post(f"/api/images/{kinds[kind]['study']}/share", {"max_views": 1})
    driver.get(str(r.json()["url"]).replace(str(r.json()["url"]).split("/s/")[0], orthanc.url))
    wait(driver).until(ec.element_to_be_clickable((By.ID, "share-view"))).click()
    wait(driver).until(ec.url_contains("/viewer"))
    wait(driver).until(_drawn)
    name = "share-us" if "ultrasound" in kind else "share-cr-j2k"
    stage = driver.find_element(By.CSS_SELECTOR, "#iv .iv-stage")
    driver.find_element(By.CSS_SELECTOR, "#iv .iv-zoom-in").click()
    driver.find_element(By.CSS_SELECTOR, "#iv .iv-zoom-in").click()
    assert abs(float(str(_state(driver)["zoom"])) - 1.5625) < 1e-6
    if "ultrasound" in kind:
        assert _state(driver)["frames"] == 30
        stage.click()
        ActionChains(driver).send_keys("\ue014" * 5).perform()  # → five times
        wait(driver).until(lambda d: _state(d)["pos"] == 5 and _drawn(d))
    else:
        before = _state(driver)["wl"]
        assert before == [2048.0, 4096.0] or before  # from the file's own window, or auto
        ActionChains(driver).move_to_element(stage).click_and_hold().move_by_offset(
            80, -60).release().perform()
        wait(driver).until(lambda d: _state(d)["wl"] != before and _drawn(d))
        Select(driver.find_element(By.CSS_SELECTOR, "#iv .iv-preset")).select_by_value("auto")
        wait(driver).until(_drawn)
    _shoot(driver, name)
    assert "Kind^" not in driver.page_source or "VIEW-" in driver.page_source


def test_images_page_shows_thumbnails_and_opens_the_viewer(
        browser: WebDriver, orthanc: OrthancServer, reader: tuple[Client, Account],
        kinds: dict[str, dict[str, str]]) -> None:
    client, account = reader
    browser_login(browser, orthanc.url + "/ui/images", client, account)
    wait(browser).until(ec.url_contains("/ui/images"))
    wait(browser).until(lambda d: d.execute_script(
        "const i = [...document.querySelectorAll('img.study-thumb')];"
        "return i.length > 3 && i.filter(x => x.complete && x.naturalWidth > 0).length > 3;"))
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.set_window_size(1280, 800)
    browser.execute_script("document.getElementById('results').scrollIntoView();")
    browser.save_screenshot(str(SHOTS / "images-1280.png"))
    browser.get(f"{orthanc.url}/ui/viewer#study={kinds['16-bit signed CT']['study']}")
    wait(browser).until(_drawn)
    Select(browser.find_element(By.CSS_SELECTOR, "#iv .iv-preset")).select_by_value("Lung")
    wait(browser).until(lambda d: _state(d)["wl"] == [-600, 1500] and _drawn(d))
    browser.save_screenshot(str(SHOTS / "viewer-ct-lung-1280.png"))
