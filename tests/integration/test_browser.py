"""End to end in real headless Chromium: login page, PIN + TOTP, Orthanc Explorer, logout,
and the admin page's audit log (filters, export, chain verification)."""

from __future__ import annotations

from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec

from browser import browser_login, wait
from dicom_factory import write_series
from harness import Client, OrthancServer, make_user, wait_until


def test_login_with_totp_lands_in_orthanc_explorer_then_logout(
        browser: WebDriver, orthanc: OrthancServer, admin: Client, tmp_path: Path) -> None:
    for f in write_series(tmp_path, 1, patient_id="E2E-1", patient_name="Browser^Test",
                          description="Chromium study"):
        assert admin.post("/instances", data=f.read_bytes()).status_code == 200
    _, account = make_user(admin, "browser-user", "user")
    client = orthanc.client()  # only to compute TOTP codes the server has not seen

    browser_login(browser, orthanc.url + "/", client, account)
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


def test_admin_filters_exports_and_verifies_the_audit_log(
        browser: WebDriver, orthanc: OrthancServer, admin: Client, tmp_path: Path) -> None:
    client, account = make_user(admin, "audit-admin", "admin")
    browser_login(browser, orthanc.url + "/ui/admin", client, account)
    browser.find_element(By.ID, "audit-user").send_keys("audit-admin")
    browser.find_element(By.ID, "audit-event").send_keys("login")
    browser.find_element(By.ID, "audit-search").click()

    def actors(driver: WebDriver) -> list[str] | None:
        found: list[str] = driver.execute_script(  # read at once: the table is re-rendered
            "return Array.from(document.querySelectorAll('#audit-table tbody tr'))"
            ".filter(r => r.cells.length > 1).map(r => r.cells[1].firstChild.textContent)")
        return found if found and set(found) == {"audit-admin"} else None

    assert wait(browser).until(actors)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.execute_cdp_cmd("Browser.setDownloadBehavior",  # type: ignore[attr-defined]
                            {"behavior": "allow", "downloadPath": str(downloads)})
    browser.find_element(By.ID, "audit-csv").click()  # the filters go in a POST body
    exported = wait_until(lambda: (f := downloads / "audit.csv").exists() and f.read_text(), 30,
                          "the CSV export to be downloaded")
    lines = exported.strip().split("\n")
    assert len(lines) >= 2 and lines[0].startswith("id,ts,actor")
    assert all(",audit-admin," in line for line in lines[1:])

    browser.find_element(By.ID, "audit-verify").click()
    result = wait(browser).until(ec.visibility_of_element_located((By.ID, "audit-verify-result")))
    wait(browser).until(lambda _d: result.text.startswith("The chain verifies"))


@pytest.mark.parametrize("next_path", ["/.//example.invalid/", "/..//example.invalid/",
                                       "/%2e%2e//example.invalid/"])
def test_login_never_sends_the_browser_to_another_site(
        browser: WebDriver, orthanc: OrthancServer, admin: Client, next_path: str) -> None:
    assert admin.account is not None
    browser_login(browser, f"{orthanc.url}/ui/login?next={next_path}", orthanc.client(),
                  admin.account)
    assert browser.current_url.startswith(orthanc.url + "/")
