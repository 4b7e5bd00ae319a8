"""A clinic's first day in headless Chromium (issue 13): an admin declares a modality on the
admin screen and tests it, the modality sends by storescu, the dashboard counts it, a user finds
the patient by part of the name and sees it as "Mine", the audit trail reads as words. Every page
is saved as a screenshot at a desktop's and a phone's width (ORTHANC_NAS_SCREENSHOTS, else the
test's folder) for people to look at."""

from __future__ import annotations

import base64
import os
from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select

from browser import browser_login, wait
from dicom_factory import write_series
from harness import Client, OrthancServer, free_port, make_user, storescu

SIZES = {"desktop": (1280, 800), "phone": (390, 844)}


def shoot(driver: WebDriver, folder: Path, name: str) -> None:
    """The whole page, at each width (the height grows to the page's)."""
    for label, (width, height) in SIZES.items():
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {  # type: ignore[attr-defined]
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": label == "phone"})
        full = driver.execute_script("return document.documentElement.scrollHeight")
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {  # type: ignore[attr-defined]
            "width": width, "height": max(height, min(int(full), 6000)), "deviceScaleFactor": 1,
            "mobile": label == "phone"})
        shot = driver.execute_cdp_cmd("Page.captureScreenshot",  # type: ignore[attr-defined]
                                      {"format": "png"})
        (folder / f"{name}-{label}.png").write_bytes(base64.b64decode(shot["data"]))
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})  # type: ignore[attr-defined]


def no_horizontal_overflow(driver: WebDriver, selector: str) -> bool:
    return bool(driver.execute_script(
        "const t = document.querySelector(arguments[0]);"
        "return t.getBoundingClientRect().width <= t.parentElement.clientWidth + 1;", selector))


def test_first_day_of_a_clinic(browser: WebDriver, orthanc: OrthancServer, admin: Client,
                               tmp_path: Path) -> None:
    shots = Path(os.environ.get("ORTHANC_NAS_SCREENSHOTS", tmp_path / "screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    user_client, user = make_user(admin, "day-user", "user")
    assert admin.account is not None
    port = free_port()

    # The admin declares the CT on the admin screen, and tests it.
    browser_login(browser, orthanc.url + "/ui/admin", orthanc.client(), admin.account)
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "modalities-table"), "storescu"))
    wait(browser).until(lambda d: len(Select(d.find_element(By.ID, "mod-owner")).options) > 1)
    browser.find_element(By.ID, "mod-name").send_keys("ct-room")
    browser.find_element(By.ID, "mod-aet").send_keys("CTROOM")
    browser.find_element(By.ID, "mod-host").send_keys("http://wrong")
    port_input = browser.find_element(By.ID, "mod-port")
    port_input.clear()
    port_input.send_keys(str(port))
    Select(browser.find_element(By.ID, "mod-owner")).select_by_value("day-user")
    browser.find_element(By.ID, "mod-save").click()
    host_error = browser.find_element(By.CSS_SELECTOR, "#mod-host ~ .field-error")
    wait(browser).until(lambda _d: host_error.is_displayed())  # under the field that failed
    assert host_error.text.startswith("host:")
    host = browser.find_element(By.ID, "mod-host")
    host.clear()
    host.send_keys("127.0.0.1")
    browser.find_element(By.ID, "mod-save").click()
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "mod-ok"),
                                                         "Orthanc now accepts images from CTROOM"))
    row = wait(browser).until(ec.presence_of_element_located(
        (By.CSS_SELECTOR, '#modalities-table tr[data-name="ct-room"]')))
    assert "day-user" in row.text and f"127.0.0.1:{port}" in row.text
    row.find_element(By.CSS_SELECTOR, '[data-action="echo"]').click()
    result = row.find_element(By.CLASS_NAME, "echo-result")
    wait(browser).until(lambda _d: result.text.startswith("No answer from CTROOM"))
    shoot(browser, shots, "admin")

    # The CT sends; Orthanc accepts it because it was declared on the screen.
    files = write_series(tmp_path / "ct", 3, patient_id="DAY-1", patient_name="Smith^John",
                         description="Chest CT")
    sent = storescu(orthanc, files, aet="CTROOM")
    assert sent.returncode == 0 and not sent.stderr, sent.stderr

    # The dashboard counts them, by source.
    browser.get(orthanc.url + "/ui/dashboard")
    total = wait(browser).until(ec.visibility_of_element_located((By.ID, "received-total")))
    assert "from modalities (DICOM)" in total.text
    figure = int(browser.find_element(By.ID, "stat-received-30d").text.replace(",", ""))
    assert figure >= 3
    origins = browser.find_element(By.ID, "chart-origins")
    assert origins.find_element(By.CSS_SELECTOR, 'g[data-label="AE CTROOM"]').get_attribute(
        "data-value") == "3"
    shoot(browser, shots, "dashboard-admin")

    # The audit trail reads as words, fits the page, and names the patient.
    browser.get(orthanc.url + "/ui/admin")
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "audit-table"),
                                                         "Modality saved"))
    table = browser.find_element(By.ID, "audit-table")
    assert "modality_saved" not in table.text and "Aet: CTROOM" in table.text
    browser.set_window_size(1280, 800)
    assert no_horizontal_overflow(browser, "#audit-table")
    browser.find_element(By.ID, "audit-event").send_keys("instances_imported")


    def imported_row(driver: WebDriver) -> bool:  # recorded once the modality pauses
        driver.find_element(By.ID, "audit-search").click()
        return "Smith, John" in driver.find_element(By.ID, "audit-table").text

    wait(browser).until(imported_row)
    shoot(browser, shots, "audit")

    # The user finds the patient by part of the name, as people write it.
    browser_login(browser, orthanc.url + "/ui/images", user_client, user)
    wait(browser).until(lambda d: "Loading" not in d.find_element(By.ID, "results").text)
    browser.find_element(By.ID, "f-patient_name").send_keys("smith")
    browser.find_element(By.ID, "search-submit").click()
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "results"), "Smith, John"))
    browser.find_element(By.ID, "f-mine").click()
    browser.find_element(By.ID, "search-submit").click()
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "page-info"),
                                                         "\u2013" + "1 of 1"))
    assert "DAY-1" in browser.find_element(By.ID, "results").text
    shoot(browser, shots, "images-user")
    patient = browser.find_element(By.ID, "f-patient_name")
    patient.clear()
    patient.send_keys("nobody-by-that-name")
    browser.find_element(By.ID, "search-submit").click()
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "results"),
                                                         "No study matches these filters"))

    browser.get(orthanc.url + "/ui/dashboard")
    wait(browser).until(ec.visibility_of_element_located((By.ID, "received-total")))
    assert int(browser.find_element(By.ID, "stat-received-30d").text.replace(",", "")) >= 3
    shoot(browser, shots, "dashboard-user")
    browser.get(orthanc.url + "/ui/account")
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "who-name"), "day-user"))
    shoot(browser, shots, "account-user")

    # The admin's NAS page and Orthanc Explorer, for the record.
    browser_login(browser, orthanc.url + "/ui/nas", orthanc.client(), admin.account)
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "who-name"), "Administrator"))
    shoot(browser, shots, "nas")
    browser.get(orthanc.url + "/app/explorer.html#find-patients")
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "all-patients"), "Smith"))
    header = browser.find_element(By.CSS_SELECTOR, ".ui-page-active .onas-bar")
    wait(browser).until(lambda _d: header.find_element(By.CLASS_NAME, "onas-nas").is_displayed())
    assert [a.text for a in header.find_elements(By.TAG_NAME, "a")] == [
        "Images", "Dashboard", "NAS mirror", "Account"]  # the way back to the plugin's pages
    shoot(browser, shots, "explorer")
    admin.delete("/api/admin/modalities/ct-room")
