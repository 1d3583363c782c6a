"""The Compose check against a real Docker engine: a small Compose project of this test's own.

The services use the local `redis:7` image with host networking (nothing is pulled): one
healthy service, one that fails, a one-shot that completes, and one that is expected but
missing. The stack's own
compose.yaml is checked by tests/ops/test_compose_stack.py when it is running.
"""

import json
import shutil
import subprocess
import time
import uuid

import pytest

from tests.ops.conftest import fab
from tests.support import services
from tests.support.live import free_port

pytestmark = [pytest.mark.docker]

IMAGE = "redis:7"


def docker_ready():
    if not shutil.which("docker"):
        return False, "no docker CLI"
    info = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True,
                          timeout=20)
    if info.returncode != 0:
        return False, f"no Docker engine: {info.stderr.strip()[:200]}"
    compose = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=20)
    if compose.returncode != 0:
        return False, "no Docker Compose v2"
    image = subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True, text=True, timeout=20)
    if image.returncode != 0:
        return False, f"image {IMAGE} is not available locally (ops/bootstrap-docker.sh builds it)"
    return True, ""


@pytest.fixture(scope="module")
def compose_project(tmp_path_factory):
    ok, why = docker_ready()
    services.require("docker", ok, why)
    folder = tmp_path_factory.mktemp("compose")
    name = f"oncall-test-{uuid.uuid4().hex[:8]}"
    port = free_port()
    (folder / "compose.yaml").write_text(json.dumps({
        "name": name,
        "services": {
            "cache": {
                "image": IMAGE,
                "network_mode": "host",
                "command": ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
                "healthcheck": {"test": ["CMD", "redis-cli", "-p", str(port), "ping"],
                                "interval": "1s", "timeout": "2s", "retries": 20},
            },
            "broken": {"image": IMAGE, "network_mode": "host", "entrypoint": ["sh", "-c", "exit 3"],
                       "restart": "no"},
            "oneshot": {"image": IMAGE, "network_mode": "host", "entrypoint": ["true"], "restart": "no"},
        },
    }))
    compose = ["docker", "compose", "-f", str(folder / "compose.yaml")]
    up = subprocess.run([*compose, "up", "-d"], capture_output=True, text=True, timeout=120)
    try:
        assert up.returncode == 0, up.stderr
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            states = subprocess.run([*compose, "ps", "-a", "--format", "{{.Service}} {{.State}} {{.Health}}"],
                                    capture_output=True, text=True, timeout=20).stdout
            if "cache running healthy" in states and "broken exited" in states and "oneshot exited" in states:
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"compose services did not settle:\n{states}")
        yield name
    finally:
        subprocess.run([*compose, "down", "-v", "--timeout", "2"], capture_output=True, timeout=120)


def test_compose_services_state_and_health(compose_project):
    """Healthy service OK, one-shot done OK, failed service CRITICAL with its exit code, missing CRITICAL."""
    env = {"ONCALL_COMPOSE_PROJECT": compose_project, "ONCALL_COMPOSE_SERVICES": "cache,broken,oneshot,missing",
           "ONCALL_HTTP_PORT": free_port()}
    run = fab("status", "--json", env=env)
    assert run.code == 2, run
    checks = run.checks()
    assert checks["compose:cache"]["status"] == "OK"
    assert checks["compose:cache"]["text"] == "service cache: running, healthy"
    assert checks["compose:broken"]["status"] == "CRITICAL"
    assert "exited (exit code 3)" in checks["compose:broken"]["text"]
    assert checks["compose:oneshot"]["status"] == "OK"
    assert checks["compose:oneshot"]["text"] == "service oneshot: completed (exit code 0)"
    assert checks["compose:missing"]["status"] == "CRITICAL"
    assert "has no container" in checks["compose:missing"]["text"]


@pytest.mark.ssh
def test_compose_over_ssh(compose_project, sshd):
    """The same through SSH: the Docker SDK speaks to the host's engine via `docker system dial-stdio`."""
    env = {"ONCALL_COMPOSE_PROJECT": compose_project, "ONCALL_HTTP_PORT": free_port()}
    run = fab("--ssh-config", str(sshd.ssh_config), "-H", sshd.alias, "status", "--json", env=env)
    assert run.code == 2, run  # the HTTP port is dead on purpose
    checks = run.checks(sshd.alias)
    assert checks["compose:cache"]["status"] == "OK", checks
    assert checks["compose:broken"]["status"] == "CRITICAL", checks

