"""The load tester's bookkeeping, scenarios and gate, without a server."""

import pytest

from loadtests import config, gate
from loadtests.accounts import slices
from loadtests.tracker import OrderCheck, Tracker, make_content, parse_marker

def test_content_marker_round_trip():
    """Content starts with run:sender:seq: and is padded to the requested size."""
    content = make_content("r1", 7, 42, 64)
    assert len(content) == 64 and parse_marker(content, "r1") == (7, 42)
    assert parse_marker(content, "other-run") is None
    assert parse_marker("hello", "r1") is None
    assert make_content("r1", 7, 42, 1) == "r1:7:42:"

def test_order_check_counts_duplicates_and_reorders():
    """In order is ok, a gap filled later is out of order, a repeat is a duplicate."""
    order = OrderCheck()
    assert [order.see(s) for s in (0, 1, 3)] == ["ok", "ok", "ok"]
    assert order.see(2) == "out_of_order"
    assert order.see(2) == "duplicate"
    assert order.see(1) == "duplicate"
    assert order.gaps == set()

def make_tracker():
    paths, anomalies = [], []
    tracker = Tracker("run", lambda p, ms, done: paths.append((p, round(ms), done and round(done))),
                      lambda kind, p: anomalies.append((kind, p)))
    return tracker, paths, anomalies

def test_tracker_times_each_path_and_the_complete_fanout():
    """Latency is from the intended time; complete is reported with the last path."""
    tracker, paths, anomalies = make_tracker()
    tracker.expect(1, 0, 10.0, "c")
    content = make_content("run", 1, 0, 20)
    tracker.arrived("a-room", "sender_echo", content, 10.010)
    tracker.arrived("b-room", "partner_room", content, 10.020)
    tracker.arrived("a-inbox", "sender_inbox", content, 10.030)
    assert tracker.outstanding("c") == 1
    tracker.arrived("b-inbox", "partner_inbox", content, 10.040)
    assert paths == [("sender_echo", 10, None), ("partner_room", 20, None),
                     ("sender_inbox", 30, None), ("partner_inbox", 40, 40)]
    assert tracker.outstanding() == 0 and tracker.completed == 1
    tracker.arrived("b-inbox", "partner_inbox", content, 10.050)
    tracker.arrived("b-inbox", "partner_inbox", "junk", 10.050)
    assert anomalies == [("duplicate", "partner_inbox"), ("stray", "partner_inbox")]

def test_tracker_gives_up_per_path():
    """What never arrived is counted lost per path; forgotten sends are not expected."""
    tracker, _, _ = make_tracker()
    for seq in range(3):
        tracker.expect(1, seq, 0.0, "c")
    tracker.expect(2, 0, 0.0, "other")
    tracker.arrived("a-room", "sender_echo", make_content("run", 1, 0, 10), 1.0)
    tracker.forget(1, 2)
    lost, messages = tracker.give_up("c")
    assert messages == 2 and tracker.sent == 3
    assert lost == {"sender_echo": 1, "partner_room": 2, "sender_inbox": 2, "partner_inbox": 2}
    assert tracker.outstanding() == 1

def test_scenarios_merge_defaults_and_overrides():
    """Every scenario loads; overrides win; unknown keys are refused."""
    for name in ("default", "smoke", "selftest", "distributed"):
        scenario = config.load(name)
        assert scenario.users > 0 and scenario.thresholds["max_lost"] == 0
    smoke = config.load("smoke", overrides={"users": "3", "thresholds.p99_complete_ms": "5"})
    assert smoke.users == 3 and smoke.thresholds["p99_complete_ms"] == 5.0
    assert smoke.offered_rate == 3 * 2 * smoke.rate_per_user
    with pytest.raises(KeyError):
        config.load("smoke", overrides={"nonsense": "1"})
    with pytest.raises(KeyError):
        config.load("no-such-scenario")

def test_gate_judges_thresholds():
    """A loss, or a p99 over its limit, fails; everything within limits passes."""
    summary = {"fanout": {"complete": {"count": 10, "p95": 40, "p99": 60}}, "error_rate": 0.0,
               "lost": 0, "duplicated": 0, "out_of_order": 0}
    limits = {"p95_complete_ms": 50, "p99_complete_ms": 50, "max_lost": 0, "min_completed": 1}
    verdict = {name: ok for name, _, _, ok in gate.judge(summary, limits)}
    assert verdict == {"max_lost": True, "min_completed": True, "p95_complete_ms": True, "p99_complete_ms": False}
    summary["lost"] = 1
    assert not dict((n, ok) for n, _, _, ok in gate.judge(summary, {"max_lost": 0}))["max_lost"]

def test_pairs_are_split_deterministically_between_workers():
    """Pair k goes to process k % n; accounts stay paired."""
    accounts = [{"username": f"u{i}"} for i in range(10)]
    parts = slices(accounts, 2)
    assert [a["username"] for a in parts[0]] == ["u0", "u1", "u4", "u5", "u8", "u9"]
    assert [a["username"] for a in parts[1]] == ["u2", "u3", "u6", "u7"]
    assert slices(accounts, 1) == [accounts]


def test_boolean_scenario_keys_parse_false():
    """--set inbox=false really turns the inbox sockets off (not the truthy string "false")."""
    assert config.load("smoke", overrides={"inbox": "false"}).inbox is False
    assert config.load("smoke", overrides={"inbox": "1"}).inbox is True
    with pytest.raises(ValueError):
        config.load("smoke", overrides={"inbox": "maybe"})


def test_arrival_after_the_drain_is_late_not_duplicate():
    """A delivery that comes after the conversation was given up is reported late."""
    tracker, _, anomalies = make_tracker()
    tracker.expect(1, 0, 0.0, "c")
    tracker.give_up("c")
    tracker.arrived("b-room", "partner_room", make_content("run", 1, 0, 10), 30.0)
    assert anomalies == [("late", "partner_room")]


def test_a_resent_message_acknowledged_twice_is_not_a_duplicate():
    """Protocol 2 resends an unacknowledged message with its client_id after a reconnect;
    the first ack may still arrive (on the old socket) before the resend's own ack. Two acks
    of a resent message are one delivery; two acks of a message never resent are a duplicate."""
    tracker, paths, anomalies = make_tracker()
    tracker.expect(1, 0, 0.0, "c")
    tracker.expect(1, 1, 0.0, "c")
    assert tracker.unacknowledged(1, "c") == [0, 1]  # the reconnect resends both
    for _ in range(2):
        tracker.arrived("a-room", "sender_echo", make_content("run", 1, 0, 10), 1.0)
    assert anomalies == [] and [p for p, _, _ in paths] == ["sender_echo"]
    tracker.expect(1, 2, 0.0, "c")
    for _ in range(2):
        tracker.arrived("a-room", "sender_echo", make_content("run", 1, 2, 10), 1.0)
    assert anomalies == [("duplicate", "sender_echo")]
