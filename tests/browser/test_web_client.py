"""The web client at / in two headless Chromium sessions against a real server process:
alice (registered through the page) and bob (logged in through the page) chat live, with
unread badges, read ticks, typing, edits and deletions, scroll-back, a server restart in
the middle of the conversation, and hostile text that must stay text."""

import json
import uuid

import pytest

from tests.browser.conftest import DESKTOP, PASSWORD, PHONE, console_errors, register, sign_in
from tests.support.live import http_json

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

WAIT = 10  # seconds for something the page must show


def wait_until(driver, check, what, timeout=WAIT):
    """Poll `check(driver)` until truthy; its last value is returned."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(check)
    except TimeoutException:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}") from None


def by_id(driver, element_id):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id)


def text_marker(label):
    return f"{label} {uuid.uuid4().hex[:8]}"


def messages(driver):
    """The open thread as shown: [{"id", "status", "text"}] in page order."""
    return driver.execute_script("""
        return [...document.querySelectorAll('#messages li.message')].map(li => ({
            id: li.dataset.id ? Number(li.dataset.id) : null, status: li.dataset.status || null,
            text: li.querySelector('.bubble').textContent}));""")


def badge(driver, user_id):
    """The unread badge of the conversation with user_id (None: no such conversation)."""
    return driver.execute_script(
        "const b = document.querySelector(`#conversations li[data-user='${arguments[0]}'] .badge`);"
        "return b ? Number(b.dataset.count) : null;", user_id)


def conversation_order(driver):
    return driver.execute_script(
        "return [...document.querySelectorAll('#conversations li')].map(li => Number(li.dataset.user));")


def connection(driver):
    return by_id(driver, "connection").get_attribute("data-state")


def open_conversation(driver, user_id):
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, f"#conversations li[data-user='{user_id}'] button").click()
    wait_until(driver, lambda d: by_id(d, "thread").is_displayed(), "the thread")


def type_and_send(driver, text):
    from selenium.webdriver.common.keys import Keys

    box = by_id(driver, "composer-input")
    box.send_keys(text)
    box.send_keys(Keys.ENTER)


def shown_once_in_order(driver, texts):
    shown = [m["text"] for m in messages(driver)]
    return all(shown.count(t) == 1 for t in texts) and [t for t in shown if t in texts] == texts


def screenshot(driver, artifacts_dir, name):
    driver.save_screenshot(str(artifacts_dir / f"{name}.png"))


def rest_thread(server, user, other_id):
    status, body = http_json("GET", f"{server.http_url()}/api/messages/thread/?other_user_id={other_id}&page_size=100",
                             token=user["token"])
    assert status == 200, body
    return list(reversed(body["data"]["results"]))


@pytest.fixture(scope="module")
def people(server):
    """bob and carol exist; alice registers through the page (the `alice` fixture)."""
    return {"bob": register(server, "bob", "Bob", "Rojas"), "carol": register(server, "carol", "Carol", "Vaca")}


@pytest.fixture(scope="module")
def alice(server, people, open_browser, artifacts_dir):
    """alice's browser: registered through the page, signed in, socket online."""
    driver = open_browser()
    driver.get(server.http_url() + "/")
    wait_until(driver, lambda d: by_id(d, "login-form").is_displayed(), "the login form")
    screenshot(driver, artifacts_dir, "login")
    by_id(driver, "show-register").click()
    for field, value in [("username", "alice"), ("email", "alice@example.test"), ("first-name", "Alice"),
                         ("last-name", "Martín"), ("password", PASSWORD)]:
        by_id(driver, f"register-{field}").send_keys(value)
    by_id(driver, "register-submit").click()
    wait_until(driver, lambda d: connection(d) == "online", "alice online")
    status, body = http_json("POST", f"{server.http_url()}/api/login/", {"username": "alice", "password": PASSWORD})
    me = http_json("GET", f"{server.http_url()}/api/users/me/", token=body["data"]["access"])[1]["data"]
    driver.user = {"id": me["id"], "username": "alice", "token": body["data"]["access"]}
    return driver


@pytest.fixture(scope="module")
def bob(server, people, open_browser):
    """bob's browser: logged in through the page, socket online."""
    driver = open_browser()
    sign_in(driver, server, "bob")
    driver.user = people["bob"]
    return driver


def start_conversation(driver, name, user_id):
    """Search for `name`, pick user_id from the results: the thread opens."""
    from selenium.webdriver.common.by import By

    box = by_id(driver, "search-input")
    box.clear()
    box.send_keys(name)
    wait_until(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#search-results button"), "search results")
    driver.find_element(By.CSS_SELECTOR, "#search-results button").click()
    wait_until(driver, lambda d: by_id(d, "thread").is_displayed(), "the new thread")
    wait_until(driver, lambda d: d.find_elements(By.CSS_SELECTOR, f"#conversations li[data-user='{user_id}']"),
               "the conversation in the list")


def test_alice_sends_bob_sees_it_live_with_a_rising_badge_and_alice_sees_the_read_tick(
        server, alice, bob, people, artifacts_dir):
    carol = people["carol"]
    http_json("POST", f"{server.http_url()}/api/messages/", {"receiver": bob.user["id"], "content": "Is the flat on Calle Sucre still free?"},
              token=carol["token"])
    start_conversation(alice, "bob", bob.user["id"])
    first = "Hi Bob, I saw your flat on Avenida Banzer."  # the first messages on a fresh server
    type_and_send(alice, first)
    shown = wait_until(alice, lambda d: [m for m in messages(d) if m["text"] == first], "alice's own message")
    assert shown[0]["status"] in {"pending", "sent"}
    wait_until(alice, lambda d: [m for m in messages(d) if m["text"] == first and m["status"] == "sent"],
               "the sent tick (ack)")

    wait_until(bob, lambda d: badge(d, alice.user["id"]) == 1, "bob's badge at 1")
    assert conversation_order(bob)[0] == alice.user["id"], "the newest conversation moves to the top"
    second = "Is it still available?"
    type_and_send(alice, second)
    wait_until(bob, lambda d: badge(d, alice.user["id"]) == 2, "bob's badge rising to 2")
    screenshot(bob, artifacts_dir, "conversations")

    open_conversation(bob, alice.user["id"])
    wait_until(bob, lambda d: shown_once_in_order(d, [first, second]), "both messages in bob's thread")
    wait_until(bob, lambda d: badge(d, alice.user["id"]) == 0, "bob's badge cleared")
    wait_until(alice, lambda d: all(m["status"] == "read" for m in messages(d) if m["text"] in {first, second}),
               "alice's read ticks")
    type_and_send(bob, "Yes, it is! When would you like to visit?")
    wait_until(alice, lambda d: len(messages(d)) == 3, "bob's answer at alice")
    wait_until(alice, lambda d: by_id(d, "thread-status").text == "online", "bob's presence, a contact now")
    screenshot(alice, artifacts_dir, "thread-desktop")


def test_hostile_text_renders_as_text(alice, bob):
    hostile = "<script>alert(1)</script><img src=x onerror=alert(2)> & <b>bold</b>"
    open_conversation(bob, alice.user["id"])
    type_and_send(alice, hostile)
    wait_until(bob, lambda d: [m for m in messages(d) if m["text"] == hostile], "the text, verbatim, at bob")
    for driver in (alice, bob):
        counts = driver.execute_script(
            "const m = document.getElementById('messages');"
            "return [m.querySelectorAll('script').length, m.querySelectorAll('img').length, m.querySelectorAll('b').length,"
            " document.querySelectorAll('script').length];")
        assert counts == [0, 0, 0, 1], counts  # only the page's own app.js
        assert_no_alert(driver)
        assert console_errors(driver) == [], "no script error, no CSP violation, no failed load"


def assert_no_alert(driver):
    from selenium.common.exceptions import NoAlertPresentException

    try:
        text = driver.switch_to.alert.text
    except NoAlertPresentException:
        return
    raise AssertionError(f"an alert opened: {text!r}")


def test_typing_shows_and_clears(alice, bob):
    from selenium.webdriver.common.keys import Keys

    open_conversation(bob, alice.user["id"])
    box = by_id(alice, "composer-input")
    box.send_keys("I could come on")
    wait_until(bob, lambda d: "typing" in by_id(d, "typing").text, "the typing indicator at bob")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)  # an emptied box sends "stop"
    wait_until(bob, lambda d: by_id(d, "typing").text == "", "the indicator cleared by stop", timeout=3)
    box.send_keys("Saturday?")
    wait_until(bob, lambda d: "typing" in by_id(d, "typing").text, "typing again")
    box.send_keys(Keys.ENTER)  # sending stops typing
    wait_until(bob, lambda d: by_id(d, "typing").text == "", "the indicator cleared by the message", timeout=3)


def test_edit_and_delete_own_messages(alice, bob):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    open_conversation(bob, alice.user["id"])
    original = text_marker("See you at 10")
    type_and_send(alice, original)
    sent = wait_until(alice, lambda d: [m for m in messages(d) if m["text"] == original and m["id"]], "the stored message")[0]
    wait_until(bob, lambda d: [m for m in messages(d) if m["text"] == original], "the message at bob")

    alice.find_element(By.CSS_SELECTOR, f"#messages li[data-id='{sent['id']}'] .actions button").click()  # Edit
    box = by_id(alice, "composer-input")
    assert box.get_attribute("value") == original
    box.send_keys(Keys.ESCAPE)  # cancel: nothing changes
    assert box.get_attribute("value") == "" and not by_id(alice, "editing").is_displayed()
    alice.find_element(By.CSS_SELECTOR, f"#messages li[data-id='{sent['id']}'] .actions button").click()
    box.send_keys(Keys.CONTROL, "a")
    edited = text_marker("See you at 11")
    box.send_keys(edited, Keys.ENTER)
    for driver in (alice, bob):
        wait_until(driver, lambda d: [m for m in messages(d) if m["id"] == sent["id"] and m["text"] == edited], "the edit")
    assert "edited" in bob.find_element(By.CSS_SELECTOR, f"#messages li[data-id='{sent['id']}'] .meta").text

    alice.find_element(By.CSS_SELECTOR, f"#messages li[data-id='{sent['id']}'] .actions button + button").click()
    alice.switch_to.alert.accept()
    for driver in (alice, bob):
        wait_until(driver, lambda d: all(m["id"] != sent["id"] for m in messages(d)), "the deletion")


def test_scroll_back_by_cursor(server, alice, people):
    """75 messages: the thread opens with the newest 30 and pages back by before_id."""
    from selenium.webdriver.common.by import By

    carol = people["carol"]
    texts = [f"listing note {n:02d}" for n in range(75)]
    for text in texts:
        status, body = http_json("POST", f"{server.http_url()}/api/messages/", {"receiver": alice.user["id"], "content": text},
                                 token=carol["token"])
        assert status == 201, body
    wait_until(alice, lambda d: badge(d, carol["id"]) == 75, "carol's 75 unread at alice")
    open_conversation(alice, carol["id"])
    wait_until(alice, lambda d: len(messages(d)) >= 30, "the newest page")
    shown = [m["text"] for m in messages(alice)]
    assert len(shown) in {30, 60} and shown == texts[-len(shown):], shown  # 60: the page opened scrolled up
    if len(shown) == 30:
        by_id(alice, "older").click()  # (Selenium scrolls it into view first, which may load a page too)
        wait_until(alice, lambda d: len(messages(d)) >= 60, "the second page")
    alice.execute_script("document.getElementById('scroller').scrollTop = 0")  # scrolling up loads the rest
    wait_until(alice, lambda d: len(messages(d)) == 75, "the last page")
    assert [m["text"] for m in messages(alice)] == texts
    assert not alice.find_element(By.ID, "older").is_displayed()
    wait_until(alice, lambda d: badge(d, carol["id"]) == 0, "read when open")


def test_clear_hides_the_conversation_for_the_one_who_clears_it(server, bob, people):
    carol = people["carol"]
    open_conversation(bob, carol["id"])
    wait_until(bob, lambda d: [m for m in messages(d) if m["text"] == "Is the flat on Calle Sucre still free?"],
               "carol's message")
    by_id(bob, "clear").click()
    bob.switch_to.alert.accept()
    wait_until(bob, lambda d: messages(d) == [], "an empty thread")
    assert "No messages yet" in bob.find_element("css selector", f"#conversations li[data-user='{carol['id']}']").text
    assert conversation_order(bob)[-1] == carol["id"], "a cleared conversation goes to the bottom"
    assert [m["content"] for m in rest_thread(server, carol, bob.user["id"])] == ["Is the flat on Calle Sucre still free?"]


def test_phone_sized_screens(alice, bob, artifacts_dir):
    try:
        bob.set_window_size(*PHONE)
        if by_id(bob, "back").is_displayed():
            by_id(bob, "back").click()
        screenshot(bob, artifacts_dir, "conversations-phone")
        open_conversation(bob, alice.user["id"])
        assert not by_id(bob, "list-pane").is_displayed(), "one view at a time on a phone"
        screenshot(bob, artifacts_dir, "thread-phone")
        by_id(bob, "back").click()
        wait_until(bob, lambda d: by_id(d, "list-pane").is_displayed(), "the list view")
        assert not by_id(bob, "thread-pane").is_displayed()
    finally:
        bob.set_window_size(*DESKTOP)


def test_presence_and_last_seen(server, alice, bob):
    open_conversation(alice, bob.user["id"])
    wait_until(alice, lambda d: by_id(d, "thread-status").text == "online", "bob online")
    bob.get("about:blank")  # bob's only device goes away
    wait_until(alice, lambda d: by_id(d, "thread-status").text.startswith("last seen "), "bob's last seen")
    assert "online" not in by_id(alice, "thread-dot").get_attribute("class")
    bob.get(server.http_url() + "/")  # still signed in
    wait_until(alice, lambda d: by_id(d, "thread-status").text == "online", "bob back online")
    wait_until(bob, lambda d: connection(d) == "online", "bob's socket")


def network(driver, online):
    """Chromium's network emulation: offline fires the page's `offline` event."""
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.emulateNetworkConditions", {
        "offline": not online, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})


def test_resume_after_going_offline_replays_messages_edits_and_deletions(server, alice, bob, people):
    """bob's socket drops while alice writes, edits and deletes: back online, bob's client
    resumes (after_id, since, recent) and holds everything once, in order."""
    open_conversation(bob, alice.user["id"])
    open_conversation(alice, bob.user["id"])
    to_edit, to_delete = text_marker("will be edited"), text_marker("will be deleted")
    for text in (to_edit, to_delete):
        type_and_send(alice, text)
    wait_until(bob, lambda d: shown_once_in_order(d, [to_edit, to_delete]), "both at bob")
    start_conversation(bob, "carol", people["carol"]["id"])  # alice's thread is not on bob's screen

    network(bob, online=False)
    try:
        wait_until(bob, lambda d: connection(d) == "offline", "bob offline")
        missed = [text_marker(f"missed {n}") for n in range(3)]
        for text in missed:
            type_and_send(alice, text)
        wait_until(alice, lambda d: all(m["status"] == "sent" for m in messages(d) if m["text"] in missed)
                   and len([m for m in messages(d) if m["text"] in missed]) == 3, "stored while bob is away")
        ids = {m["content"]: m["id"] for m in rest_thread(server, alice.user, bob.user["id"])}
        edited = text_marker("edited while bob was away")
        base, token = f"{server.http_url()}/api/messages", alice.user["token"]
        assert http_json("PATCH", f"{base}/{ids[to_edit]}/", {"content": edited}, token=token)[0] == 200
        assert http_json("DELETE", f"{base}/{ids[to_delete]}/", token=token)[0] in {200, 204}
    finally:
        network(bob, online=True)
    wait_until(bob, lambda d: connection(d) == "online", "bob back")
    wait_until(bob, lambda d: badge(d, alice.user["id"]) == 3, "three unread from the replay")
    open_conversation(bob, alice.user["id"])
    wait_until(bob, lambda d: shown_once_in_order(d, [edited, *missed]), "the replay, once and in order")
    assert all(m["text"] != to_delete for m in messages(bob)), "the deletion replayed"
    assert not [m for m in messages(bob) if m["text"] == to_edit]


def test_server_restart_mid_conversation_loses_and_duplicates_nothing(server, alice, bob):
    open_conversation(alice, bob.user["id"])
    open_conversation(bob, alice.user["id"])
    before = text_marker("before the restart")
    type_and_send(alice, before)
    wait_until(bob, lambda d: [m for m in messages(d) if m["text"] == before], "the last message before the restart")

    server.stop()
    for driver in (alice, bob):
        wait_until(driver, lambda d: connection(d) == "offline", "the page noticing the server is gone")
    queued = [text_marker("sent while down, 1"), text_marker("sent while down, 2")]
    for text in queued:
        type_and_send(alice, text)
    answer = text_marker("bob while down")
    type_and_send(bob, answer)
    wait_until(alice, lambda d: [m["status"] for m in messages(d) if m["text"] in queued] == ["pending", "pending"],
               "alice's queued messages pending")
    stored = json.loads(alice.execute_script(
        f"return localStorage.getItem('habitto.outbox.{alice.user['id']}')"))
    assert [item["content"] for item in stored] == queued, "kept across a page reload"

    assert by_id(alice, "reconnect").is_displayed()
    by_id(alice, "reconnect").click()  # tried at once: still down, so offline again
    wait_until(alice, lambda d: connection(d) == "offline", "a failed attempt")
    server.start()
    for driver in (alice, bob):
        wait_until(driver, lambda d: connection(d) == "online", "back online", timeout=40)
    wait_until(bob, lambda d: shown_once_in_order(d, [before, *queued, answer]) or shown_once_in_order(d, [before, answer, *queued]),
               "bob holding everything once, in order")
    wait_until(alice, lambda d: shown_once_in_order(d, [before, *queued]) and shown_once_in_order(d, [before, answer]),
               "alice holding everything once, in order")
    wait_until(alice, lambda d: [m["status"] for m in messages(d) if m["text"] in queued] == ["read", "read"],
               "the queued messages delivered and read")
    assert alice.execute_script(f"return localStorage.getItem('habitto.outbox.{alice.user['id']}')") == "[]"

    stored = [m["content"] for m in rest_thread(server, alice.user, bob.user["id"])]
    for text in [before, *queued, answer]:
        assert stored.count(text) == 1, (text, stored)
    assert stored.index(queued[0]) < stored.index(queued[1])
    after = text_marker("after the restart")
    type_and_send(bob, after)
    wait_until(alice, lambda d: [m for m in messages(d) if m["text"] == after], "live again after the restart")


def test_unsent_message_survives_closing_the_page_and_is_sent_once_on_return(server, alice, bob):
    open_conversation(bob, alice.user["id"])
    open_conversation(alice, bob.user["id"])
    server.stop()
    wait_until(alice, lambda d: connection(d) == "offline", "alice offline")
    kept = text_marker("written offline, page closed")
    type_and_send(alice, kept)
    wait_until(alice, lambda d: [m for m in messages(d) if m["text"] == kept and m["status"] == "pending"], "pending")
    alice.get("about:blank")
    server.start()
    alice.get(server.http_url() + "/")  # still signed in (stored tokens); the outbox is read back
    wait_until(alice, lambda d: connection(d) == "online", "alice back")
    wait_until(bob, lambda d: [m for m in messages(d) if m["text"] == kept], "the kept message at bob", timeout=40)
    open_conversation(alice, bob.user["id"])
    wait_until(alice, lambda d: [m["status"] for m in messages(d) if m["text"] == kept] == ["read"], "sent once and read")
    assert [m["text"] for m in messages(bob)].count(kept) == 1
    assert [m["content"] for m in rest_thread(server, alice.user, bob.user["id"])].count(kept) == 1
