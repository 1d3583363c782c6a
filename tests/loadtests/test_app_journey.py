"""The app scenario's parts without a server: the journey grammar (loadtests/app_journey.py)
accepts the app's order and refuses others, the refresh triple, the mix of phone kinds,
the tracker's bookkeeping for sockets that are closed or drop, and where the app reads
refreshed tokens (api_service.dart _refreshToken)."""

import itertools

import pytest

from habitto_client.app import _tokens
from loadtests import app_journey as journey
from loadtests.config import phone_kinds as kinds
from loadtests.tracker import Tracker, make_content

LOGIN = ["POST /api/login/", "GET /api/profiles/me/", "GET /api/profiles/me/"]
CHAT_TAB = ["WS open inbox", "WS open property", "GET /api/messages/conversations/", "GET /api/notifications/?is_read"]
FROM_LIST = ["POST /api/messages/mark_thread_read/", "GET /api/profiles/?user_id", "WS open room",
             "GET /api/messages/thread/?other_user_id&page&page_size"]
FROM_USERS = ["GET /api/users/", "GET /api/profiles/?user_id", "WS open room",
              "GET /api/messages/thread/?other_user_id&page&page_size"]


def test_the_apps_orders_are_journeys():
    chatter = (LOGIN + CHAT_TAB + FROM_USERS + ["WS send room"] * 3 + ["WS close room"]
               + FROM_LIST + ["away", "WS close room"])
    assert journey.mismatch("chatter", chatter) is None
    browser = LOGIN + CHAT_TAB + ["GET /api/messages/conversations/", "GET /api/notifications/?is_read"] + FROM_LIST + [
        "WS close room", "GET /api/notifications/?page&page_size", "away", "GET /api/notifications/?is_read",
        "WS open inbox", "GET /api/messages/conversations/", "GET /api/notifications/?is_read"]
    assert journey.mismatch("browser", browser) is None
    assert journey.mismatch("idle", LOGIN + CHAT_TAB + ["away", "away"]) is None


@pytest.mark.parametrize("kind,calls", [
    ("chatter", LOGIN + CHAT_TAB[1:] + CHAT_TAB[:1]),  # sockets after the list
    ("chatter", LOGIN + CHAT_TAB + FROM_LIST[2:] + FROM_LIST[:2] + ["WS close room"]),  # room before mark read
    ("chatter", LOGIN + CHAT_TAB + FROM_LIST + ["WS send room"]),  # never left the chat
    ("browser", LOGIN + CHAT_TAB + FROM_LIST + ["WS send room", "WS close room"]),  # browsers do not send
    ("idle", LOGIN + CHAT_TAB + ["GET /api/messages/conversations/"]),
    ("idle", ["POST /api/login/", "GET /api/messages/conversations/"]),
    ("idle", LOGIN + CHAT_TAB + ["GET /api/messages/"]),  # a call the app's screens never make
])
def test_other_orders_are_not(kind, calls):
    assert journey.mismatch(kind, calls) is not None


def test_a_401_must_be_followed_by_a_refresh_and_the_same_call():
    ok = [("POST /api/login/", 200), ("GET /api/users/", 401), ("POST /api/refresh/", 200), ("GET /api/users/", 200)]
    assert journey.collapse_refreshes(ok) == (["POST /api/login/", "GET /api/users/"], 1)
    with pytest.raises(ValueError):
        journey.collapse_refreshes([("GET /api/users/", 401), ("GET /api/users/", 200)])
    with pytest.raises(ValueError):
        journey.collapse_refreshes([("GET /api/users/", 401), ("POST /api/refresh/", 200),
                                    ("GET /api/profiles/me/", 200)])


def test_inbox_reconnect_delays_double_up_to_ten_seconds():
    assert journey.inbox_delays(7) == [1, 2, 4, 8, 10, 10, 10]


def test_phone_kinds_follow_the_weights_interleaved():
    drawn = list(itertools.islice(kinds({"chatter": 2, "browser": 1, "idle": 1}), 8))
    assert drawn.count("chatter") == 4 and drawn.count("browser") == drawn.count("idle") == 2
    assert drawn[:4].count("chatter") == 2
    assert set(itertools.islice(kinds({"chatter": 1, "browser": 0}), 5)) == {"chatter"}
    with pytest.raises(ValueError):
        next(kinds({"chatter": 0}))


def make_tracker():
    anomalies = []
    tracker = Tracker("run", lambda *a: None, lambda kind, path: anomalies.append((kind, path)), journal=True)
    return tracker, anomalies


def test_only_paths_open_at_the_send_are_expected():
    """A partner without its room open: the message completes without partner_room, and a
    frame on that path later is not a duplicate."""
    tracker, anomalies = make_tracker()
    tracker.expect(1, 0, 0.0, "c", ["sender_echo", "sender_inbox", "partner_inbox"])
    content = make_content("run", 1, 0, 20)
    for path in ("sender_echo", "sender_inbox", "partner_inbox"):
        tracker.arrived(("s", path), path, content, 1.0)
    assert tracker.outstanding() == 0 and tracker.completed == 1
    tracker.arrived(("b", "room"), "partner_room", content, 1.0)
    assert anomalies == [] and tracker.journal[(1, 0)].acked_at == 1.0


def test_a_dropped_socket_excuses_its_deliveries_and_sends_without_echo_are_dropped():
    tracker, anomalies = make_tracker()
    for seq in range(3):
        tracker.expect(1, seq, 0.0, "c")
    tracker.arrived(("a", "room"), "sender_echo", make_content("run", 1, 0, 20), 1.0)
    assert tracker.excuse("c", 1, "partner_inbox") == 3  # the partner's inbox dropped
    assert tracker.excuse("c", 2, "partner_inbox") == 0  # nothing of the other sender
    assert tracker.drop_unacknowledged("c", 1) == 2  # the sender's room dropped before 2 echoes
    # The store check: one of the two dropped sends was stored, the other failed unacknowledged.
    assert tracker.reconcile("c", {(1, 0), (1, 1)}) == (1, 0)
    lost, messages = tracker.give_up("c")
    assert messages == 1 and lost["partner_inbox"] == 0 and lost["partner_room"] == 1
    tracker.arrived(("b", "inbox2"), "partner_inbox", make_content("run", 1, 2, 20), 2.0)
    assert anomalies == []


@pytest.mark.parametrize("body,access,refresh", [
    ({"success": True, "data": {"access": "A", "refresh": "R"}}, "A", "R"),
    ({"access": "A"}, "A", "old"),  # no rotated refresh: the old one is kept
    ({"access_token": "A", "data": {"access": None, "access_token": "B"}}, "B", "old"),
    ({"data": {"access": 5}}, None, "old"),  # not a string: no token
    ("oops", None, "old"),
])
def test_refreshed_tokens_are_read_where_the_app_reads_them(body, access, refresh):
    assert _tokens(body, "old") == (access, refresh)


def test_rest_rows_are_gated_by_their_worst_route():
    """p95/p99 and the error rate of every REST route: the worst one decides; the login's
    times (a password hash) are judged by limits of their own, its errors like any route's."""
    from loadtests import gate

    summary = {"fanout": {"complete": {"count": 10, "p95": 40, "p99": 60}}, "error_rate": 0.0, "lost": 0,
               "duplicated": 0, "out_of_order": 0,
               "rest": {"GET /api/users/": {"p95": 300, "p99": 400, "error_rate": 0.0},
                        "GET /api/profiles/me/": {"p95": 30, "p99": 900, "error_rate": 0.0},
                        "POST /api/login/": {"p95": 1600, "p99": 1700, "error_rate": 0.5}}}
    limits = {"p95_rest_ms": 250, "p99_rest_ms": 1000, "max_rest_error_rate": 0.0,
              "p95_login_ms": 1500, "p99_login_ms": 3000}
    verdict = {name: (value, ok) for name, _, value, ok in gate.judge(summary, limits)}
    assert verdict == {"p95_rest_ms": (300, False), "p99_rest_ms": (900, True), "max_rest_error_rate": (0.5, False),
                       "p95_login_ms": (1600, False), "p99_login_ms": (1700, True)}


def test_app_scenarios_load_and_churn_needs_the_phones():
    """The app scenarios load with their phones; churn on ConversationUser is refused, not ignored."""
    from loadtests import config

    for name in ("app", "app_smoke", "app_churn"):
        scenario = config.load(name)
        assert scenario.user_class == "AppConversationUser" and scenario.thresholds["max_lost"] == 0
        assert {"chatter", "browser", "idle", "think_s", "typing_s"} <= set(scenario.phones)
    assert config.load("app", overrides={"phones.think_s": "0.5,2"}).phones["think_s"] == [0.5, 2.0]
    with pytest.raises(KeyError):
        config.load("app", overrides={"phones.nonsense": "1"})
    with pytest.raises(ValueError):
        config.load("smoke", overrides={"churn": "3"})
