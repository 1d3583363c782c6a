"""`make health` right after `make run`, with nothing configured (issue 12): the dev server's
demo users are found where `make run` (seed_demo_users) left them, so every check is OK;
the server stopped is CRITICAL naming the port; and no host takes longer than its 10 s
budget, however its ports hang and whatever the single timeouts are."""

import os
import subprocess
import time

import pytest

from tests.ops.conftest import fab
from tests.support.live import REPO_DIR, LiveServer, free_port, manage, server_env

pytestmark = [pytest.mark.e2e]

LIMIT = 10.0  # seconds the whole command may take (the monitoring-plugins guideline)
BUDGET = 8.0  # seconds, timeouts.host: the checks of one host, leaving the rest for start-up
STARTUP = 3.5  # seconds a `fab` process may need to start (imports) on a machine as busy as CI


def make_health(env):
    """`make health` from the repository root, as the README says, with no ONCALL_* of the caller's."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("ONCALL_") and k != "STATE_DIR"}
    full.update({k: str(v) for k, v in env.items()})
    started = time.monotonic()
    done = subprocess.run(["make", "--no-print-directory", "health"], cwd=REPO_DIR, env=full,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    return done, time.monotonic() - started


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory):
    """What `make run` starts: migrate, seed_demo_users, the server (here on free ports and
    with its own STATE_DIR, which is where make run's default var/ would be)."""
    state = tmp_path_factory.mktemp("make-run")
    env = server_env(state)
    manage(env, "migrate", "--noinput")
    seeded = manage(env, "seed_demo_users")
    assert "demo-credentials.txt" in seeded
    server = LiveServer(env, [free_port(), free_port()], state / "server.log").start()
    oncall = {
        "STATE_DIR": state,  # the same rule as the server's settings: $STATE_DIR, else var/
        "ONCALL_WS_PORT": server.ports[0],
        "ONCALL_HTTP_PORT": server.ports[1],
        "ONCALL_COMPOSE_PROJECT": f"oncall-none-{server.ports[0]}",  # not another test's stack
    }
    try:
        yield server, oncall
    finally:
        server.stop()


def test_make_health_right_after_make_run_is_ok(dev_server):
    server, env = dev_server
    done, seconds = make_health(env)
    assert done.returncode == 0, done.stdout + done.stderr
    # ports, liveness, readiness, the three sockets, /metrics of the process on each port
    assert "CHAT HEALTH OK - all 9 checks OK on 1 host" in done.stdout, done.stdout
    assert seconds < LIMIT, f"took {seconds:.1f}s"

    run = fab("health", "--json", env={**env, "ONCALL_DEMO_USERS": "1"})
    assert run.code == 0, run
    token = run.checks()["ws-token"]
    assert token["status"] == "OK" and "accepted" in token["text"], token
    device = run.checks()["ws-device"]
    assert device["status"] == "OK" and "sync.done" in device["text"], device

    # The demo users are a development convenience: never for the probe (it clears its chat).
    probe = fab("probe", "--json", env={**env, "ONCALL_DEMO_USERS": "1"})
    assert probe.code == 3 and "demo users are not used" in probe.checks()["probe"]["text"], probe


def test_wrong_demo_password_says_where_it_came_from(dev_server, tmp_path):
    _, env = dev_server
    (tmp_path / "demo-credentials.txt").write_text("alice not-the-password\nbob x\n")
    run = fab("health", "--json", env={**env, "STATE_DIR": tmp_path, "ONCALL_DEMO_USERS": "1"})
    assert run.code == 3, run
    for name in ("ws-token", "ws-device"):
        text = run.checks()[name]["text"]
        assert f"'alice' (demo user from {tmp_path / 'demo-credentials.txt'}) refused (HTTP 401)" in text, text
    assert "not-the-password" not in run.stdout


def test_server_stopped_is_critical_naming_the_port_within_the_budget(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    env = server_env(state)
    manage(env, "migrate", "--noinput")
    manage(env, "seed_demo_users")
    server = LiveServer(env, [free_port(), free_port()], state / "server.log").start()
    oncall = {"STATE_DIR": state, "ONCALL_WS_PORT": server.ports[0], "ONCALL_HTTP_PORT": server.ports[1],
              "ONCALL_COMPOSE_PROJECT": f"oncall-none-{server.ports[0]}"}
    server.stop()

    done, seconds = make_health(oncall)
    assert done.returncode == 2, done.stdout + done.stderr
    first = next(line for line in done.stdout.splitlines() if line.startswith("CHAT HEALTH"))  # after make's echo
    assert first.startswith("CHAT HEALTH CRITICAL"), done.stdout
    assert f"WS port {server.ports[0]} unreachable" in first and f"HTTP port {server.ports[1]} unreachable" in first
    assert seconds < LIMIT, f"took {seconds:.1f}s"

    run = fab("health", "--json", env=oncall)
    assert run.code == 2, run


def test_a_hung_host_is_reported_within_its_budget(silent_port):
    """Both ports accept TCP and never answer: every check waits its own timeout, and the
    host as a whole stops at timeouts.host however large those are."""
    env = {"ONCALL_WS_PORT": silent_port, "ONCALL_HTTP_PORT": silent_port,
           "ONCALL_COMPOSE_PROJECT": f"oncall-none-{silent_port}"}
    defaults = fab("health", "--json", env=env)
    assert defaults.code == 2, defaults
    assert defaults.checks()["liveness"]["status"] == "CRITICAL"
    assert defaults.json["hosts"][0]["seconds"] <= BUDGET + 0.3, defaults
    assert defaults.seconds < BUDGET + STARTUP, f"took {defaults.seconds:.1f}s"

    patient = fab("health", "--json", env={**env, "ONCALL_TIMEOUT_HTTP": 30, "ONCALL_TIMEOUT_WS": 30,
                                            "ONCALL_TIMEOUT_CONNECT": 30})
    assert patient.code == 2, patient
    host = patient.json["hosts"][0]
    assert host["seconds"] <= BUDGET + 0.3, patient
    assert patient.seconds < BUDGET + STARTUP, f"took {patient.seconds:.1f}s"
    checks = patient.checks()
    assert "no answer within" in checks["liveness"]["text"]
    later = [r for r in host["results"] if "budget (timeouts.host) ran out" in r["text"]]
    assert later and all(r["status"] == "UNKNOWN" for r in later), host["results"]


def test_host_budget_is_configurable(silent_port):
    run = fab("health", "--json", env={"ONCALL_WS_PORT": silent_port, "ONCALL_HTTP_PORT": silent_port,
                                       "ONCALL_TIMEOUT_HOST": 2, "ONCALL_COMPOSE_PROJECT": "oncall-none"})
    assert run.code == 2, run
    assert run.json["hosts"][0]["seconds"] <= 2.3, run
