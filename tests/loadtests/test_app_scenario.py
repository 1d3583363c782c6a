"""The `app` scenario end to end against real server processes (started by the load tester
exactly like `make run`): every phone's calls, in order, follow the shipped app's journey
(loadtests/app_journey.py, read in marvinjoel2001/habitto at commit 49cde26:
lib/features/chat/presentation/pages/chat_page.dart and conversation_page.dart,
lib/features/auth/presentation/pages/splash_page.dart, lib/features/home/presentation/pages/home_page.dart,
lib/features/chat/presentation/pages/user_list_page.dart, lib/core/services/api_service.dart),
the run passes the gate without loss, a 401 is refreshed and the call retried as the app
does, and under connection churn the sockets come back on the app's schedule and no
acknowledged message is lost. No speed target is asserted here."""

import json

import pytest

from loadtests import app_journey as journey
from tests.loadtests.test_gate_live import run_loadtest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TOLERANCE = 0.5  # seconds a reconnect may come later than its schedule (a loaded machine)


def phone_logs(results, scenario):
    with open(results / f"{scenario}_calls.jsonl") as handle:
        return [json.loads(line) for line in handle]


def screen_calls(log):
    """The phone's screens in order (the app's journey), refreshes collapsed and counted."""
    return journey.collapse_refreshes([(name, status) for lane, name, status, _ in log["calls"] if lane == "screen"])


def assert_follows_the_app(log):
    names, refreshes = screen_calls(log)
    assert journey.mismatch(log["kind"], names) is None, journey.mismatch(log["kind"], names)
    return names, refreshes


def assert_delivery_accounted(summary):
    assert summary["lost"] == summary["duplicated"] == summary["out_of_order"] == 0
    assert summary["lost_store"] == 0
    assert summary["sent"] > 0
    assert summary["acknowledged_stored"] + summary["dropped_before_echo"] == summary["sent"]


def test_app_scenario_follows_the_apps_calls_and_passes_the_gate(tmp_path):
    """Every phone's ordered calls are a journey of its kind; each REST route is a row of its
    own; the gate passes with nothing lost; the sends in the logs are the gate's sends."""
    code, summary, output = run_loadtest(tmp_path, "--scenario", "app_smoke")
    assert code == 0, output[-4000:]
    assert_delivery_accounted(summary)
    logs = phone_logs(tmp_path, "app_smoke")
    assert len(logs) == 2 * summary["users"]
    assert {log["kind"] for log in logs} == {"chatter", "browser", "idle"}
    sends = 0
    for log in logs:
        names, refreshes = assert_follows_the_app(log)
        assert refreshes == 0
        assert names[:7] == ["POST /api/login/", "GET /api/profiles/me/", "GET /api/profiles/me/", "WS open inbox",
                             "WS open property", "GET /api/messages/conversations/", "GET /api/notifications/?is_read"]
        assert all(lane == "screen" for lane, *_ in log["calls"])  # nothing dropped, nothing reconnected
        sends += names.count("WS send room")
    assert sends == summary["sent"]
    assert {"POST /api/login/", "GET /api/messages/conversations/", "GET /api/profiles/?user_id",
            "GET /api/messages/thread/?other_user_id&page&page_size"} <= set(summary["rest"])
    assert all(row["failures"] == 0 for row in summary["rest"].values())
    assert {t["name"] for t in summary["thresholds"]} >= {"p95_rest_ms", "p99_rest_ms", "max_rest_error_rate"}


def test_a_401_refreshes_the_token_and_retries_the_call(tmp_path):
    """Access tokens of 2 s: the phones' calls meet 401s, refresh through /api/refresh/ and
    repeat the same call (collapse_refreshes checks the triple); nothing fails."""
    code, summary, output = run_loadtest(
        tmp_path, "--scenario", "app_smoke", "--server-env", "ACCESS_TOKEN_SECONDS=2",
        "--set", "phones.browser=0", "--set", "phones.idle=0")
    assert code == 0, output[-4000:]
    assert_delivery_accounted(summary)
    refreshed = 0
    for log in phone_logs(tmp_path, "app_smoke"):
        _, refreshes = assert_follows_the_app(log)
        assert refreshes == log["refreshes"]
        refreshed += refreshes
    assert refreshed > 0
    assert summary["rest"]["POST /api/refresh/"]["count"] == refreshed
    assert sum(row["count"] for name, row in summary["rest"].items() if name.endswith("[401]")) == refreshed
    assert summary["error_rate"] == 0


def reconnects_follow_the_schedule(log, lane, delays):
    """Each attempt of `lane` comes its delay after the drop of an open socket or the attempt before."""
    is_open, last, attempts = True, None, 0
    for entry_lane, name, status, at in log["calls"]:
        if name == "away" and is_open:
            is_open, last = False, at
        elif entry_lane == lane:
            expected = last + delays[attempts]
            assert expected - 0.05 <= at <= expected + TOLERANCE, (lane, attempts, at, expected, log["calls"])
            last, attempts = at, attempts + 1
            is_open = status == 101
    return attempts


def test_churn_reconnects_the_apps_way_and_loses_no_acknowledged_message(tmp_path):
    """Phones lose their network again and again: the inbox socket comes back after 1, 2, 4,
    8, 10 s (never reset), the notification socket every 2 s, the room socket never (the
    chat is left and opened again); every acknowledged message is stored and none is lost."""
    code, summary, output = run_loadtest(
        tmp_path, "--scenario", "app_churn", "--set", "users=2", "--set", "duration=12",
        "--set", "churn=15", "--set", "churn_away=1.5", "--set", "call_log=true")
    assert code == 0, output[-4000:]
    assert_delivery_accounted(summary)
    assert summary["acknowledged_stored"] > 0
    aways = inbox_attempts = 0
    for log in phone_logs(tmp_path, "app_churn"):
        names, _ = assert_follows_the_app(log)
        aways += names.count("away")
        inbox_attempts += reconnects_follow_the_schedule(log, "inbox", journey.inbox_delays(50))
        reconnects_follow_the_schedule(log, "property", [journey.NOTIFICATION_RECONNECT_DELAY] * 50)
        assert not any(lane == "room" for lane, *_ in log["calls"])
    assert aways > 0 and inbox_attempts > 0
