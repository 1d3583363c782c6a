"""bench/relay.py, the bare relay every throughput figure is divided by, and the options of
bench/run.py that go with it (ratios, --against's alternation and worktree, --redis)."""

import json
import subprocess
import sys

import pytest

from bench import run
from bench.relay import inbox_frame, room_frame
from habitto_client import ChatSocket, inbox_url, room_url
from tests.support.live import REPO_DIR

WAIT = 5


@pytest.fixture
def relay(tmp_path):
    with run.RelayProcess(tmp_path, "test") as process:
        yield f"ws://{process.base}"


def token(user_id):
    return run._unsigned_jwt(user_id)


def test_relay_relays_room_frames_to_the_room_and_inbox_frames_to_both_inboxes(relay):
    a_room = ChatSocket.open(room_url(relay, 1, 2, token(1)), timeout=WAIT)
    b_room = ChatSocket.open(room_url(relay, 1, 2, token(2)), timeout=WAIT)
    a_inbox = ChatSocket.open(inbox_url(relay, 1, token(1)), timeout=WAIT)
    b_inbox = ChatSocket.open(inbox_url(relay, 2, token(2)), timeout=WAIT)
    other_room = ChatSocket.open(room_url(relay, 3, 4, token(3)), timeout=WAIT)
    try:
        a_room.send_message(1, 2, "hello")
        echo, delivered = a_room.recv_json(WAIT), b_room.recv_json(WAIT)
        assert echo == delivered
        assert (echo["sender"], echo["receiver"], echo["content"]) == (1, 2, "hello")
        assert a_inbox.recv_json(WAIT)["counterpart_id"] == 2
        assert b_inbox.recv_json(WAIT)["counterpart_id"] == 1
        a_room.send_message(1, 2, "again")
        assert b_room.recv_json(WAIT)["id"] == echo["id"] + 1
        with pytest.raises(Exception):
            other_room.recv_json(0.3)  # another room hears nothing
    finally:
        for sock in (a_room, b_room, a_inbox, b_inbox, other_room):
            sock.close()


def test_relay_frames_carry_what_the_server_frames_carry():
    # the keys the load tester reads from the chat server's legacy frames (docs/protocol.md)
    assert set(json.loads(room_frame(1, 2, 3, "x", "t"))) >= {"id", "sender", "receiver", "content", "created_at"}
    assert set(json.loads(inbox_frame(1, 2, 3, "x", "t", 3))) >= {"message_id", "sender", "receiver", "content",
                                                                   "counterpart_id"}


def test_relay_closes_without_a_token_and_on_unknown_paths(relay):
    assert ChatSocket.open(f"{relay}/ws/chat/1-2/", timeout=WAIT).wait_closed(WAIT) == 4401
    assert ChatSocket.open(f"{relay}/ws/elsewhere/?token={token(1)}", timeout=WAIT).wait_closed(WAIT) == 4404


def test_relay_speaks_the_servers_websocket_implementation(settings):
    assert run.SERVER_WS_IMPL == settings.WS_IMPL


def flood(label, target, rate, stored=True):
    return {"label": label, "conversations": 50, "target": target, "delivered_per_s": rate,
            "stored_equals_sent": stored if target != "relay" else None, "lost": 0, "duplicated": 0,
            "out_of_order": 0, "passed": True}


def test_summary_gives_means_and_ratios_to_the_relay_and_the_other_commit(monkeypatch):
    monkeypatch.setattr(run, "TARGETS", [run.Target("this tree", "new"), run.Target("commit old", "old")])
    runs = [flood("room only", "relay", 40000), flood("room only", "this tree", 10000),
            flood("room only", "commit old", 4000), flood("room only", "relay", 60000),
            flood("room only", "commit old", 6000), flood("room only", "this tree", 14000)]
    (entry,) = run.throughput_summary(runs)
    assert entry["mean_delivered_per_s"] == {"relay": 50000, "this tree": 12000, "commit old": 5000}
    assert entry["ratio_to_relay"] == {"this tree": 0.24, "commit old": 0.1}
    assert entry["ratio_to_base"] == {"this tree": 2.4}
    assert entry["all_stored"]
    line = run.summary_lines([entry])[0]
    assert "this tree 12,000/s (0.24x relay)" in line and "against the base: this tree 2.40x" in line
    runs.append(flood("room only", "this tree", 12000, stored=False))
    assert not run.throughput_summary(runs)[0]["all_stored"]


def test_throughput_alternates_the_commits_and_runs_the_relay_every_round(monkeypatch, tmp_path):
    order = []
    monkeypatch.setattr(run, "TARGETS", [run.Target("this tree", "new"), run.Target("commit old", "old")])
    monkeypatch.setattr(run, "_flood_relay", lambda out, spec, kind: order.append("relay")
                        or flood(spec["label"], "relay", 100))
    monkeypatch.setattr(run, "_flood_server", lambda out, spec, kind, target: order.append(target.commit)
                        or flood(spec["label"], target.label, 10))
    cfg = {"duration": 1, "flood": [("room only", "room", 50, 600)]}
    result = run.phase_throughput(cfg, tmp_path, rounds=3)
    assert order == ["relay", "new", "old", "relay", "old", "new", "relay", "new", "old"]
    assert result["summary"][0]["ratio_to_relay"] == {"this tree": 0.1, "commit old": 0.1}


def test_against_checks_the_commit_out_in_a_worktree_once(tmp_path):
    installs = []

    def install(tree):  # stands in for the virtualenv build (pip: minutes)
        installs.append(tree)
        (tree / ".venv").mkdir()

    sha = run._git("rev-parse", "--short", "HEAD~1")
    try:
        target = run.prepare_commit("HEAD~1", tmp_path, install=install)
        assert (target.commit, target.label) == (sha, f"commit {sha}")
        tree = tmp_path / sha
        assert run._git("rev-parse", "--short", "HEAD", cwd=tree) == sha
        assert installs == [tree] and target.python == str(tree / ".venv" / "bin" / "python")
        run.prepare_commit("HEAD~1", tmp_path, install=install)
        assert installs == [tree]  # the worktree and its virtualenv are reused
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tmp_path / sha)], cwd=REPO_DIR, timeout=60)


def test_redis_option_reaches_every_server(monkeypatch, tmp_path):
    monkeypatch.setitem(run.REDIS, "url", "redis://127.0.0.1:6379/6")
    monkeypatch.setitem(run.POSTGRES, "admin_url", None)
    server = run.new_server(tmp_path, "x", target=run.Target("commit old", "old", sys.executable))
    other = run.new_server(tmp_path, "y")
    try:
        assert server.env["REDIS_URL"] == other.env["REDIS_URL"] == "redis://127.0.0.1:6379/6"
        # pub/sub ignores the database number: servers alive together need prefixes of their own
        assert server.env["REDIS_CHANNEL_PREFIX"] != other.env["REDIS_CHANNEL_PREFIX"]
        assert server.python == sys.executable
    finally:
        server.stop()
        other.stop()


def test_flood_against_the_relay_counts_every_delivery_once_and_in_order(relay, tmp_path):
    spec = {"label": "room + inbox", "inbox": True, "conversations": 2, "messages_per_socket": 20}
    result = run.flood(relay, run.trusted_accounts(tmp_path, 4), spec, timeout=20)
    assert result["passed"], result
    assert (result["sent"], result["delivered"], result["echoes"], result["inbox_frames"]) == (80, 80, 80, 160)
    assert result["lost"] == result["duplicated"] == result["out_of_order"] == result["stray"] == 0
    assert result["delivered_per_s"] > 0


def test_report_renders_the_flood_runs_and_their_ratios(monkeypatch):
    from bench.report import render

    monkeypatch.setattr(run, "TARGETS", [run.Target("this tree", "new"), run.Target("commit old", "old")])
    runs = [{**flood("room only", target, rate), "round": 0, "sent": 10, "stored": None if target == "relay" else 10,
             "p50_ms": 1.0, "p99_ms": 2.0, "server_cpu": 0.5, "machine_busy": 1.0}
            for target, rate in (("relay", 1000), ("this tree", 500), ("commit old", 250))]
    machine = {"nproc": 2, "cpu_model": "x", "memory_gb": 1, "kernel": "k", "python": "3", "versions": {},
               "nofile_limit": 1}
    text = render({"machine": machine, "throughput": {"runs": runs, "summary": run.throughput_summary(runs)}})
    assert "| room only | 50 | this tree | 500 | 0.5 | 2 |" in text
    assert "| room only | 50 | commit old | 1 | 10 | 10 | 250 |" in text  # round, sent, stored, delivered/s


def test_flood_reports_sockets_the_server_closed(tmp_path):
    """The relay closes a socket whose token has no user_id: the flood counts it by code."""
    accounts = [{"id": 1, "username": "a", "access": "not-a-jwt"}, {"id": 2, "username": "b", "access": token(2)}]
    accounts_file = tmp_path / "accounts.json"
    accounts_file.write_text(json.dumps(accounts))
    with run.RelayProcess(tmp_path, "closing") as relay:
        spec = {"label": "room only", "inbox": False, "conversations": 1, "messages_per_socket": 3}
        result = run.flood(f"ws://{relay.base}", accounts_file, spec, timeout=3)
    assert not result["passed"]
    assert result["closed_by_server"] == {"4401": 1}


def test_relay_device_sockets_ack_and_relay_to_every_device_of_both_users(relay):
    """/ws/v2/ on the relay: hello and sync.done on open, a send acked by client_id, then
    message.created on both of the sender's devices and on the receiver's; pings answered."""
    from habitto_client import DeviceSocket

    a1, a2, b = (DeviceSocket.connect(relay, token(user), timeout=WAIT) for user in (1, 1, 2))
    try:
        assert a1.hello["user_id"] == 1 and a1.cursor.since
        a1.send_message(2, "hello", client_id="c-1")
        ack = a1.expect("ack", WAIT, client_id="c-1")
        for sock in (a1, a2, b):
            created = sock.expect("message.created", WAIT)
            assert created["message"]["id"] == ack["message_id"]
            assert (created["message"]["sender"], created["message"]["receiver"]) == (1, 2)
        b.ping(nonce=5)
        assert b.expect("pong", WAIT)["nonce"] == 5
    finally:
        for sock in (a1, a2, b):
            sock.close()
