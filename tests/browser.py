"""Real headless Chromium (Debian's, driven by Selenium) for the page tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from harness import Account, Client

TIMEOUT = 30


@pytest.fixture(scope="session")
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


def browser_login(driver: WebDriver, url: str, client: Client, account: Account) -> None:
    """Opens ``url`` with no session, and signs in on the login page it lands on."""
    driver.delete_all_cookies()
    driver.get(url)
    wait(driver).until(ec.url_contains("/ui/login"))
    driver.find_element(By.ID, "username").send_keys(account.username)
    driver.find_element(By.ID, "pin").send_keys(account.pin)
    driver.find_element(By.ID, "login-submit").click()
    if account.totp_secret:
        code = wait(driver).until(ec.visibility_of_element_located((By.ID, "code")))
        code.send_keys(client.totp_code(account))
        driver.find_element(By.ID, "code-submit").click()
    # "/ui/login?next=/ui/x" contains "/ui/x": wait until the login page is really left.
    wait(driver).until(lambda d: "/ui/login" not in d.current_url)
