"""In real headless Chromium: the account page asks for the PIN to create an API token (the
error shown by the field), and the admin page lists a user's tokens and revokes one."""

from __future__ import annotations

import os
from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec

from browser import browser_login, wait
from harness import Client, OrthancServer, make_user

SIZES = {"desktop": (1280, 800), "phone": (390, 844)}


def screenshots(driver: WebDriver, folder: Path, name: str, element_id: str) -> None:
    """The page at both sizes, scrolled to ``element_id`` (kept in ORTHANC_NAS_SCREENSHOTS
    when set, to look at)."""
    keep = os.environ.get("ORTHANC_NAS_SCREENSHOTS")
    out = Path(keep) if keep else folder
    out.mkdir(parents=True, exist_ok=True)
    for size, (width, height) in SIZES.items():  # the viewport exactly, as a phone for 390
        driver.execute_cdp_cmd(  # type: ignore[attr-defined]
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600})
        driver.execute_script("document.getElementById(arguments[0]).scrollIntoView()",
                              element_id)
        assert driver.save_screenshot(str(out / f"{name}-{size}.png"))
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})  # type: ignore[attr-defined]


def test_account_page_asks_the_pin_for_a_new_token(
        browser: WebDriver, orthanc: OrthancServer, admin: Client, tmp_path: Path) -> None:
    client, account = make_user(admin, "browser-tokens", "user")
    browser_login(browser, orthanc.url + "/ui/account", client, account)
    wait(browser).until(ec.visibility_of_element_located((By.ID, "tokens-section")))
    browser.find_element(By.ID, "token-name").send_keys("nightly export")
    browser.find_element(By.ID, "token-pin").send_keys("Wrong-Guess-PIN-9999")
    browser.find_element(By.ID, "token-create").click()
    error = wait(browser).until(ec.visibility_of_element_located((By.ID, "token-pin-error")))
    assert error.text == "current PIN is wrong"
    assert browser.find_element(By.ID, "token-pin").get_attribute("aria-invalid") == "true"
    assert not browser.find_element(By.ID, "tokens-error").is_displayed()
    screenshots(browser, tmp_path, "account-token-wrong-pin", "tokens-section")

    browser.find_element(By.ID, "token-pin").send_keys(account.pin)
    browser.find_element(By.ID, "token-create").click()
    value = wait(browser).until(ec.visibility_of_element_located((By.ID, "token-value")))
    assert value.text.startswith("onat_")
    assert not error.is_displayed()
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "tokens-table"),
                                                         "nightly export"))
    row = browser.find_element(By.CSS_SELECTOR, "#tokens-table tbody tr")
    assert "Never" not in row.find_elements(By.TAG_NAME, "td")[2].text  # it expires
    screenshots(browser, tmp_path, "account-token-created", "tokens-section")


def test_admin_page_lists_and_revokes_a_users_tokens(
        browser: WebDriver, orthanc: OrthancServer, admin: Client, tmp_path: Path) -> None:
    owner, owner_account = make_user(admin, "token-owner", "user")
    for name in ("backup script", "dicomweb"):
        r = owner.post("/api/tokens", {"name": name, "pin": owner_account.pin})
        assert r.status_code == 200, r.text
    token = r.json()["token"]
    client, account = make_user(admin, "tokens-admin", "admin")
    browser_login(browser, orthanc.url + "/ui/admin", client, account)
    wait(browser).until(ec.element_to_be_clickable(
        (By.CSS_SELECTOR, "button[aria-label='API tokens token-owner']"))).click()
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "user-tokens-table"),
                                                         "dicomweb"))
    assert browser.find_element(By.ID, "user-tokens-name").text == "token-owner"
    assert token not in browser.page_source
    screenshots(browser, tmp_path, "admin-user-tokens", "user-tokens")

    browser.find_element(By.CSS_SELECTOR,
                         "button[aria-label='Revoke token dicomweb of token-owner']").click()
    wait(browser).until(ec.alert_is_present()).accept()
    ok = wait(browser).until(ec.visibility_of_element_located((By.ID, "user-tokens-ok")))
    assert "revoked" in ok.text
    wait(browser).until(lambda d: "dicomweb" not in d.find_element(
        By.ID, "user-tokens-table").text)
    script = orthanc.client()
    del script.http.headers["Origin"]
    assert script.get("/patients", headers={"Authorization": f"Bearer {token}"}
                      ).status_code == 403
    screenshots(browser, tmp_path, "admin-user-tokens-revoked", "user-tokens")
