"""In real headless Chromium: the admin page's Backups section sets the passphrase, backs up
now to a local NAS folder and lists the backup with its size and age (screenshots at 1280x800
and 390x844)."""

from __future__ import annotations

from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from tests.integration.test_browser_tokens import screenshots

from browser import browser_login, wait
from conftest import FAST
from harness import OrthancServer, admin_account, deep_merge


def test_admin_page_backs_up(browser: WebDriver, tmp_path: Path) -> None:
    nas = tmp_path / "nas"
    nas.mkdir()
    server = OrthancServer(tmp_path / "o", deep_merge(FAST, {"OrthancNAS": {"nas": {
        "type": "local", "path": str(nas), "local_roots": [str(nas)]}}})).start()
    try:
        admin = server.client()
        account = admin_account()
        admin.onboard(account, "Blue-Harbor-PIN-2024!")
        browser_login(browser, server.url + "/ui/admin", admin, account)
        state = wait(browser).until(ec.visibility_of_element_located((By.ID, "bk-state")))
        wait(browser).until(lambda d: "passphrase" in state.text)
        assert not browser.find_element(By.ID, "bk-run").is_enabled()
        browser.find_element(By.ID, "bk-passphrase").send_keys("Clinic-Backup-Passphrase-26")
        browser.find_element(By.ID, "bk-save").click()
        wait(browser).until(ec.text_to_be_present_in_element((By.ID, "bk-ok"), "Passphrase set"))
        wait(browser).until(ec.element_to_be_clickable((By.ID, "bk-run"))).click()
        wait(browser).until(ec.text_to_be_present_in_element((By.ID, "bk-ok"), "Backed up"))
        wait(browser).until(ec.text_to_be_present_in_element((By.ID, "bk-table"), ".onasbk"))
        row = browser.find_element(By.CSS_SELECTOR, "#bk-table tbody tr")
        cells = [c.text for c in row.find_elements(By.TAG_NAME, "td")]
        assert cells[0].startswith("orthanc-nas-") and "KiB" in cells[1] and "min" in cells[2]
        assert list((nas / "_orthanc-nas" / "backups").glob("*.onasbk"))
        screenshots(browser, tmp_path, "admin-backups", "bk-title")
    finally:
        server.stop()
