"""Headless Chromium (Debian's `chromium` and `chromium-driver`) driven by Selenium against
a real server process: the web client as people use it. Screenshots go to $ARTIFACTS_DIR
(default tests/browser/artifacts/, git-ignored)."""

import os
import shutil
from pathlib import Path

import pytest

from tests.support import services
from tests.support.live import REPO_DIR, LiveServer, free_port, http_json, manage, server_env

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PASSWORD = "Browser-test-Passw0rd!"
DESKTOP = (1280, 800)
PHONE = (390, 760)


def chrome_paths():
    """(chromium, chromedriver), or skip loudly (fail under REQUIRE_SERVICES=1)."""
    chromium = shutil.which("chromium") or (CHROMIUM if os.access(CHROMIUM, os.X_OK) else None)
    driver = shutil.which("chromedriver") or (CHROMEDRIVER if os.access(CHROMEDRIVER, os.X_OK) else None)
    services.require("chromium and chromedriver", chromium and driver,
                     "apt-get install chromium chromium-driver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        services.require("selenium", False, "pip install -r requirements/dev.txt")
    return chromium, driver


@pytest.fixture(scope="session")
def artifacts_dir():
    path = Path(os.environ.get("ARTIFACTS_DIR") or REPO_DIR / "tests" / "browser" / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def server(request, tmp_path_factory):
    """One server process, as `make run` serves (SQLite, in-memory layer); sends unthrottled
    so a test can fill a thread quickly. A test module adds settings in SERVER_ENV."""
    chrome_paths()
    state = tmp_path_factory.mktemp("browser")
    env = server_env(state, CHAT_SEND_BURST=1000, CHAT_SEND_RATE=1000, **getattr(request.module, "SERVER_ENV", {}))
    manage(env, "migrate", "--noinput")
    live = LiveServer(env, [free_port()], state / "server.log")
    with live:
        yield live


def register(server, username, first_name, last_name):
    """A user through the API: {"id", "username", "token"}."""
    status, body = http_json("POST", f"{server.http_url()}/api/users/", {
        "username": username, "email": f"{username}@example.test", "password": PASSWORD,
        "first_name": first_name, "last_name": last_name})
    assert status == 201, body
    status, body = http_json("POST", f"{server.http_url()}/api/login/", {"username": username, "password": PASSWORD})
    assert status == 200, body
    token = body["data"]["access"]
    status, me = http_json("GET", f"{server.http_url()}/api/users/me/", token=token)
    return {"id": me["data"]["id"], "username": username, "token": token}


def console_errors(driver):
    """Errors the page logged since the last call (script errors, CSP violations, failed loads)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def sign_in(driver, server, username):
    """Log in through the page; returns once the socket is online."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(server.http_url() + "/")
    driver.find_element(By.ID, "login-username").send_keys(username)
    driver.find_element(By.ID, "login-password").send_keys(PASSWORD)
    driver.find_element(By.ID, "login-submit").click()
    WebDriverWait(driver, 10, poll_frequency=0.1).until(
        lambda d: d.find_element(By.ID, "connection").get_attribute("data-state") == "online")


@pytest.fixture(scope="module")
def open_browser(tmp_path_factory):
    """open_browser(): a fresh headless Chromium session (its own profile); all quit at the end."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = chrome_paths()
    drivers = []

    def open_one():
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for argument in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                         "--force-device-scale-factor=1", f"--window-size={DESKTOP[0]},{DESKTOP[1]}",
                         # both sessions stay "visible": no throttled timers in the one not in front
                         "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
                         "--disable-backgrounding-occluded-windows",
                         f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"]:
            options.add_argument(argument)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # console_errors()
        driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
        driver.set_window_size(*DESKTOP)
        drivers.append(driver)
        return driver

    yield open_one
    for driver in drivers:
        driver.quit()
