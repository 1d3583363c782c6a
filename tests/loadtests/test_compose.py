"""The `loadtest` Compose profile: one Locust master and two workers in containers
(network_mode: host) gate a real server on this machine."""

import json
import shutil
import subprocess
import uuid

import pytest

from tests.support.live import REPO_DIR, LiveServer, free_port, manage, server_env
from tests.support.services import require

pytestmark = [pytest.mark.docker, pytest.mark.e2e, pytest.mark.slow]

COMPOSE_FILE = REPO_DIR / "loadtests" / "compose.yaml"


def docker_available():
    if not shutil.which("docker"):
        return False, "no docker command"
    try:
        result = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=20)
        if result.returncode != 0:
            return False, result.stderr.strip()
        result = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=20)
        return result.returncode == 0, result.stderr.strip()[:200]
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)


def test_compose_profile_master_and_two_workers(tmp_path):
    """`docker compose --profile loadtest up --exit-code-from locust-master` runs the smoke
    scenario distributed over two worker containers; the gate passes and reports land on the host."""
    ok, why = docker_available()
    require("Docker with Compose v2", ok, why)
    env = server_env(tmp_path / "state", ACCESS_LOG="0")
    manage(env, "migrate", "--noinput")
    ports = [free_port(), free_port()]
    results = tmp_path / "results"
    results.mkdir()
    project = f"habitto-lt-{uuid.uuid4().hex[:8]}"
    # The base image's name is written only in .env.example (as a newcomer's .env has it).
    compose = ["docker", "compose", "-p", project, "--env-file", str(REPO_DIR / ".env.example"),
               "-f", str(COMPOSE_FILE), "--profile", "loadtest"]
    compose_env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LOADTEST_HTTP": f"http://127.0.0.1:{ports[1]}",
        "LOADTEST_WS": f"ws://127.0.0.1:{ports[0]}",
        "LOADTEST_SCENARIO": "smoke",
        "LOADTEST_MASTER_PORT": str(free_port()),
        "LOADTEST_RESULTS_DIR": str(results),
        "LOADTEST_LOGLEVEL": "INFO",
    }
    with LiveServer(env, ports, tmp_path / "server.log"):
        try:
            build = subprocess.run([*compose, "build"], env=compose_env, capture_output=True, text=True, timeout=900)
            assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
            run = subprocess.run([*compose, "up", "--exit-code-from", "locust-master"], env=compose_env,
                                 capture_output=True, text=True, timeout=300)
        finally:
            subprocess.run([*compose, "down", "--remove-orphans"], env=compose_env,
                           capture_output=True, timeout=120)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-5000:]
    assert "RESULT: PASS" in output
    assert "2 workers connected" in output
    summary = json.loads((results / "smoke_summary.json").read_text())
    assert summary["lost"] == 0 and summary["sent"] == summary["fanout"]["complete"]["count"] > 0
    assert (results / "smoke.html").exists()
