"""The load tester's v2 scenario: one /ws/v2/ device socket per account carrying all its
conversations (loadtests/device_users.py). The scenario's keys, then short runs against real
server processes: what Locust counts sent and delivered is exactly what the server stored,
and a restart mid-run is repaired by the sockets' resume. (The same users against the bare
relay: tests/bench/test_device_bench.py.)"""

import json
from itertools import combinations

import pytest

from habitto_client import ChatHTTP
from loadtests import config
from loadtests.state import ProcessState
from tests.loadtests.test_gate_live import run_loadtest
from tests.support.live import LiveServer, free_port, manage, server_env

DEVICE_ROWS = ["sender_echo", "sender_device", "partner_device", "complete"]


def test_v2_scenario_keys():
    """Groups of four accounts, three expected deliveries a message; group > 2 only for
    device users, and always even (accounts come in pairs)."""
    v2 = config.load("v2")
    assert v2.device and v2.group == 4 and v2.expected_paths == ("sender_echo", "sender_device", "partner_device")
    assert v2.offered_rate == v2.users * 4 * v2.rate_per_user
    legacy = config.load("bench", overrides={"user_class": "DeviceConversationUser"})
    assert legacy.device and legacy.group == 2
    with pytest.raises(ValueError):
        config.load("default", overrides={"group": "4"})
    with pytest.raises(ValueError):
        config.load("v2", overrides={"group": "3"})


def test_groups_are_taken_in_pairs():
    state = ProcessState()
    state.configure(config.load("v2"), "http://h", "ws://h", lambda *a: None, lambda *a: None)
    state.accept_setup({"accounts": [{"id": i} for i in range(10)], "run_id": "r", "start_at": None})
    assert [a["id"] for a in state.take_group(4)] == [0, 1, 2, 3]
    assert [a["id"] for a in state.take_group(4)] == [4, 5, 6, 7]
    assert state.take_group(4, timeout=0) is None  # one pair left


def assert_complete(summary, sent):
    assert summary["socket_kind"] == "device"
    assert list(summary["fanout"]) == DEVICE_ROWS
    assert summary["sent"] == sent > 0
    for row in DEVICE_ROWS:
        assert summary["fanout"][row]["count"] == sent, row
    assert summary["lost"] == summary["duplicated"] == summary["out_of_order"] == summary["stray"] == 0


@pytest.mark.e2e
@pytest.mark.slow
def test_v2_smoke_against_a_server_counts_what_it_stored(tmp_path):
    """Against a real server (accounts registered through the API): the device sockets
    deliver every message three times, and the server stored exactly the messages sent,
    spread over every conversation of each group (each socket carried three)."""
    env = server_env(tmp_path / "state", ACCESS_LOG="0")
    manage(env, "migrate", "--noinput")
    ports = [free_port(), free_port()]
    with LiveServer(env, ports, tmp_path / "server.log") as server:
        http, ws = server.http_url(ports[1]), server.ws_url(ports[0])
        code, summary, output = run_loadtest(
            tmp_path / "results", "--scenario", "v2_smoke", "--target", http, "--target-ws", ws, "--keep",
            "--set", "duration=4")
        assert code == 0, output[-4000:]
        accounts = json.loads((tmp_path / "results" / "v2_smoke_accounts.json").read_text())
        api = ChatHTTP(http, timeout=10)
        sessions = [api.login(a["username"], a["password"]) for a in accounts[:8]]
        per_conversation = [api.thread(a, b.user_id, page_size=1)["count"]
                            for start in (0, 4) for a, b in combinations(sessions[start:start + 4], 2)]
    assert_complete(summary, 2 * 4 * 2 * 4)
    assert sum(per_conversation) == summary["sent"] and all(per_conversation)


@pytest.mark.e2e
@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.server_tracebacks_expected("redis.exceptions.ConnectionError")
def test_v2_users_resume_across_a_backend_restart(tmp_path, own_redis, postgres_database):
    """The faults scenario on device sockets, every conversation across two processes; the
    second is killed and restarted at 4 s: its device sockets reconnect with their cursor,
    the server replays what they missed, unacknowledged sends go again with their client_id.
    Nothing acknowledged is lost, nothing fails unacknowledged, no duplicate, no reordering,
    and nothing is fetched over REST (no catch up rows): the socket's resume repaired it."""
    from tests.loadtests.test_faults_live import Supervisor, assert_survived, run_with_faults
    from tests.support.chat import two_servers

    with two_servers(tmp_path, postgres_database, own_redis.url, "v2fl") as (env, first, second, _):
        supervisor = Supervisor(second, tmp_path / "second.pid")
        try:
            code, summary, output = run_with_faults(
                tmp_path / "results", first, second, ["restart_backend@4"],
                {"restart_backend": f"kill -TERM $(cat {tmp_path / 'second.pid'})"},
                "--set", "user_class=DeviceConversationUser")
        finally:
            supervisor.stop()
    fault = assert_survived(code, summary, output, "restart_backend")
    assert supervisor.restarts == 1 and fault["reconnects"] >= 1
    assert fault["unacknowledged_failed"] == 0
    assert summary["socket_kind"] == "device"
    assert summary["fanout"]["complete"]["count"] == fault["messages"]
    assert "WS reconnect device" in summary["requests"]
    assert not any("catch up" in name for name in summary["requests"])
