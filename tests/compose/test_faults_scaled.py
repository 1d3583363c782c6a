"""Faults during a load-test run against the scaled Compose stack (issue 13): the `faults`
scenario through the nginx proxy in front of two `backend` replicas, the Docker driver
(Docker SDK, containers found by their Compose labels) restarting one backend, or
stopping Redis for a few seconds. Nothing acknowledged may be lost, and the report gives
a recovery time. The unit tests of the driver against a fake client are in
tests/loadtests/test_faults.py.

Needs a Docker engine, Compose v2 and the stand-in images (ops/bootstrap-docker.sh),
and `running_stack(..., backends=N)` (tests/compose/stack.py, the scaled stack of issue 12);
without an engine the module skips loudly (fails under REQUIRE_SERVICES=1).
"""

import json
import subprocess
import sys

import pytest

from tests.compose.stack import scaled_stack_fixture
from tests.support.live import REPO_DIR

pytestmark = [pytest.mark.docker, pytest.mark.slow]

BACKENDS = 2

stack = scaled_stack_fixture(BACKENDS)


def run_with_fault(stack, results, fault):
    """python -m loadtests.run against the stack's proxy with the Docker driver; two
    conversations (the stack's default registration and login throttles allow it)."""
    args = [sys.executable, "-m", "loadtests.run", "--scenario", "faults", "--results", str(results),
            "--target", stack.http_url(stack.http_port), "--target-ws", stack.ws_url(stack.ws_port),
            "--fault", fault, "--set", f"faults.compose_project={stack.project}", "--set", "users=2"]
    proc = subprocess.run(args, cwd=REPO_DIR, capture_output=True, text=True, timeout=400)
    output = proc.stdout + proc.stderr
    path = results / "faults_summary.json"
    summary = json.loads(path.read_text()) if path.exists() else None
    assert proc.returncode == 0, output[-6000:] + "\n--- stack ---\n" + stack.logs()
    assert "RESULT: PASS" in output
    (report,) = summary["faults"]
    assert report["error"] == "" and report["acknowledged_lost"] == 0, report
    assert report["recovery_s"] is not None and report["recovery_s"] < 60, report
    assert summary["lost"] == summary["duplicated"] == summary["out_of_order"] == 0
    assert summary["fanout"]["complete"]["count"] > 0
    return report


def test_backend_restart_under_load_loses_nothing_acknowledged(stack, tmp_path):
    """restart_backend: one `backend` replica restarted (the driver waits until it is healthy);
    the sockets it held drop, the users reconnect through the proxy and catch up."""
    report = run_with_fault(stack, tmp_path, "restart_backend@4")
    assert report["kind"] == "restart_backend" and report["end"] > report["start"]
    stack.wait_ready()


def test_redis_stopped_for_a_few_seconds_under_load_loses_nothing_acknowledged(stack, tmp_path):
    """stop_redis for 4 s: the redis container stopped, started again and awaited healthy;
    deliveries across the replicas wait for it and are repaired."""
    report = run_with_fault(stack, tmp_path, "stop_redis@4:4")
    assert report["kind"] == "stop_redis" and report["end"] - report["start"] >= 4
    stack.wait_ready()
