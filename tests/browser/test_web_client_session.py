"""The web client's session against a server issuing 6-second access tokens: it refreshes
before expiry and moves its socket to the new token without going offline; logging out
revokes the tokens and forgets them."""

import json
import time

import pytest

from tests.browser.conftest import register, sign_in
from tests.support.live import http_json

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TOKEN_SECONDS = 6
SERVER_ENV = {"ACCESS_TOKEN_SECONDS": TOKEN_SECONDS}


def stored_auth(driver):
    return json.loads(driver.execute_script("return localStorage.getItem('habitto.auth')") or "null")


def connection(driver):
    return driver.execute_script("return document.getElementById('connection').dataset.state")


def test_token_refreshed_before_expiry_without_going_offline_then_logout(server, open_browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    dana, erik = register(server, "dana", "Dana", "Reyes"), register(server, "erik", "Erik", "Soria")
    http_json("POST", f"{server.http_url()}/api/messages/", {"receiver": dana["id"], "content": "hola"}, token=erik["token"])
    driver = open_browser()
    sign_in(driver, server, "dana")
    driver.execute_script("""
        window.connectionStates = [];
        new MutationObserver(() => window.connectionStates.push(document.getElementById('connection').dataset.state))
            .observe(document.getElementById('connection'), {attributes: true});""")
    first = stored_auth(driver)

    time.sleep(TOKEN_SECONDS * 2 + 1)  # two lifetimes: two refreshes, each socket past its token's expiry
    assert stored_auth(driver)["access"] != first["access"]
    assert connection(driver) == "online"
    assert "offline" not in driver.execute_script("return window.connectionStates"), "never dropped"
    driver.find_element(By.CSS_SELECTOR, f"#conversations li[data-user='{erik['id']}'] button").click()
    driver.find_element(By.ID, "composer-input").send_keys("still here", Keys.ENTER)
    WebDriverWait(driver, 5).until(lambda d: d.execute_script(
        "return [...document.querySelectorAll('#messages li.mine')].some(li => li.dataset.status === 'sent')"))

    spent = stored_auth(driver)
    driver.find_element(By.ID, "logout").click()
    WebDriverWait(driver, 5).until(lambda d: d.find_element(By.ID, "login-form").is_displayed())
    assert stored_auth(driver) is None
    status, _ = http_json("POST", f"{server.http_url()}/api/token/refresh/", {"refresh": spent["refresh"]})
    assert status == 401, "logging out revoked the refresh token"
