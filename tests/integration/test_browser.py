"""End to end in real headless Chromium: login page, PIN + TOTP, Orthanc Explorer, logout."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from dicom_factory import write_series
from harness import Client, OrthancServer, make_user

TIMEOUT = 30


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--window-size=1280,900",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager download
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    yield driver
    driver.quit()


def wait(driver: WebDriver) -> WebDriverWait[WebDriver]:
    return WebDriverWait(driver, TIMEOUT)


def test_login_with_totp_lands_in_orthanc_explorer_then_logout(
        browser: WebDriver, orthanc: OrthancServer, admin: Client, tmp_path: Path) -> None:
    for f in write_series(tmp_path, 1, patient_id="E2E-1", patient_name="Browser^Test",
                          description="Chromium study"):
        assert admin.post("/instances", data=f.read_bytes()).status_code == 200
    _, account = make_user(admin, "browser-user", "user")
    client = orthanc.client()  # only to compute TOTP codes the server has not seen

    browser.delete_all_cookies()
    browser.get(orthanc.url + "/")
    wait(browser).until(ec.url_contains("/ui/login"))
    browser.find_element(By.ID, "username").send_keys(account.username)
    browser.find_element(By.ID, "pin").send_keys(account.pin)
    browser.find_element(By.ID, "login-submit").click()
    code = wait(browser).until(ec.visibility_of_element_located((By.ID, "code")))
    code.send_keys(client.totp_code(account))
    browser.find_element(By.ID, "code-submit").click()
    wait(browser).until(ec.url_contains("/app/explorer.html"))

    browser.get(orthanc.url + "/app/explorer.html#find-patients")
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "all-patients"), "Browser"))
    browser.find_element(By.PARTIAL_LINK_TEXT, "Browser").click()
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "list-studies"),
                                                         "Chromium study"))
    assert not browser.find_element(By.CSS_SELECTOR, ".warning-insecure").is_displayed()
    browser.save_screenshot(str(tmp_path / "explorer.png"))
    assert not [e for e in browser.get_log("browser") if "Content Security Policy" in
                e.get("message", "")]

    logout = wait(browser).until(ec.element_to_be_clickable((By.ID, "onas-logout-button")))
    logout.click()
    wait(browser).until(ec.url_contains("/ui/login"))
    browser.get(orthanc.url + "/app/explorer.html")  # the session is gone server-side
    wait(browser).until(ec.url_contains("/ui/login"))
    assert "Browser" not in browser.page_source
