"""The load tester end to end against real server processes: counts match what the server
stored, an injected delivery delay shows up as latency and trips the gate, the CI smoke
scenario completes without loss, and distributed mode (one master, two workers) works.
No speed target is asserted here."""

import json
import subprocess
import sys

import pytest

from habitto_client import ChatHTTP
from tests.support.live import REPO_DIR, LiveServer, free_port, manage, server_env

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def run_loadtest(results, *args, timeout=240):
    """python -m loadtests.run (what `make loadtest` runs); returns (exit code, summary, output)."""
    proc = subprocess.run(
        [sys.executable, "-m", "loadtests.run", "--results", str(results), *args],
        cwd=REPO_DIR, capture_output=True, text=True, timeout=timeout,
    )
    output = proc.stdout + proc.stderr
    scenario = args[args.index("--scenario") + 1]
    summary_path = results / f"{scenario}_summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
    return proc.returncode, summary, output


def expected_sends(summary, rate, duration):
    return summary["users"] * 2 * int(rate * duration)


def test_smoke_scenario_completes_and_loses_nothing(tmp_path):
    """CI smoke: own server, every message sent is delivered on all four paths; reports written."""
    code, summary, output = run_loadtest(tmp_path, "--scenario", "smoke")
    assert code == 0, output[-4000:]
    assert summary["lost"] == summary["duplicated"] == summary["out_of_order"] == 0
    assert summary["sent"] == expected_sends(summary, 2.0, 5) == summary["fanout"]["complete"]["count"]
    for name in ("smoke_stats.csv", "smoke_failures.csv", "smoke.html"):
        assert (tmp_path / name).stat().st_size > 0
    assert "RESULT: PASS" in output


def test_counts_match_what_the_server_stored(tmp_path):
    """Against a running server (accounts registered through the API, as for a remote
    target): the messages Locust reports sent and delivered are exactly the stored ones."""
    env = server_env(tmp_path / "state", ACCESS_LOG="0")
    manage(env, "migrate", "--noinput")
    ports = [free_port(), free_port()]
    with LiveServer(env, ports, tmp_path / "server.log") as server:
        http, ws = server.http_url(ports[1]), server.ws_url(ports[0])
        code, summary, output = run_loadtest(
            tmp_path / "results", "--scenario", "smoke", "--target", http, "--target-ws", ws, "--keep")
        assert code == 0, output[-4000:]
        accounts = json.loads((tmp_path / "results" / "smoke_accounts.json").read_text())
        api = ChatHTTP(http, timeout=10)
        stored = 0
        for i in range(0, len(accounts), 2):
            a = api.login(accounts[i]["username"], accounts[i]["password"])
            b = api.login(accounts[i + 1]["username"], accounts[i + 1]["password"])
            page = api.thread(a, b.user_id, page_size=1)
            assert page["count"] == api.thread(b, a.user_id, page_size=1)["count"]
            stored += page["count"]
    assert summary["sent"] > 0 and summary["lost"] == 0
    for path in ("sender_echo", "partner_room", "sender_inbox", "partner_inbox", "complete"):
        assert summary["fanout"][path]["count"] == summary["sent"]
    assert stored == summary["sent"]


def test_injected_delivery_delay_is_measured_and_trips_the_gate(tmp_path):
    """CHAT_TEST_DELIVERY_DELAY_MS=200 on the server raises the measured fan-out latency by
    about 200 ms and makes the selftest scenario's thresholds fail (exit code 1)."""
    delay = 200
    base_code, base, base_output = run_loadtest(tmp_path / "base", "--scenario", "selftest")
    code, slow, output = run_loadtest(
        tmp_path / "slow", "--scenario", "selftest", "--server-env", f"CHAT_TEST_DELIVERY_DELAY_MS={delay}")
    assert base is not None and slow is not None, base_output[-2000:] + output[-2000:]
    assert code == 1, output[-4000:]
    assert slow["lost"] == 0 and slow["sent"] == base["sent"]
    exceeded = {t["name"] for t in slow["thresholds"] if not t["ok"]}
    assert {"p95_complete_ms", "p99_complete_ms"} <= exceeded
    for path in ("sender_echo", "partner_room", "partner_inbox", "complete"):
        shift = slow["fanout"][path]["p50"] - base["fanout"][path]["p50"]
        assert 0.8 * delay <= shift <= delay + 100, (path, shift, base["fanout"], slow["fanout"])
    assert "RESULT: FAIL" in output


def test_distributed_mode_one_master_two_workers(tmp_path):
    """Locust's distributed mode: the master splits the pairs between two workers and gates on
    their combined statistics."""
    code, summary, output = run_loadtest(tmp_path, "--scenario", "distributed", "--workers", "2")
    assert code == 0, output[-4000:]
    assert summary["lost"] == 0
    assert summary["sent"] == expected_sends(summary, 2.0, 8) == summary["fanout"]["partner_room"]["count"]


def test_unreachable_target_fails_fast(tmp_path):
    """A target that does not answer is exit code 2 with a clear message, not a hang."""
    port = free_port()
    code, summary, output = run_loadtest(tmp_path, "--scenario", "smoke", "--target", f"http://127.0.0.1:{port}",
                                         timeout=60)
    assert code == 2 and summary is None
    assert "does not answer" in output
