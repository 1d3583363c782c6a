"""The on-call checks against the real Compose stack (compose.yaml), locally and over SSH.

A throwaway project of the real compose.yaml on free ports (tests/compose/stack.py), probe
accounts made inside the backend container as the on-call docs say, then `fab health`,
`fab probe`, and Redis stopped under the running stack.
"""

import pytest

from tests.compose.stack import running_stack
from tests.ops.conftest import compose_oncall_env, fab

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.e2e]

SERVICES = ("redis", "postgres", "migrate", "backend-ws", "backend-http")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("oncall-compose")) as stack:
        yield stack


@pytest.fixture(scope="module")
def oncall_env(stack, tmp_path_factory):
    return compose_oncall_env(stack, tmp_path_factory.mktemp("oncall-probes"), "backend-http",
                              ONCALL_COMPOSE_SERVICES=",".join(SERVICES))


def test_health_of_the_compose_stack(stack, oncall_env):
    """Every check OK, Redis and all five Compose services included (migrate: completed)."""
    run = fab("health", "--json", env=oncall_env)
    assert run.code == 0, run
    checks = run.checks()
    for name, result in checks.items():
        assert result["status"] == "OK" and result["applicable"], result
    for service in SERVICES:
        assert f"compose:{service}" in checks
    assert checks["compose:backend-ws"]["text"] == "service backend-ws: running, healthy"
    assert checks["compose:migrate"]["text"] == "service migrate: completed (exit code 0)"
    assert "redis" in checks["readiness"]["text"] and "PONG" in checks["redis"]["text"]


def test_probe_across_the_two_backends(stack, oncall_env):
    """Login on backend-http, sockets on backend-ws: delivery crosses Redis."""
    run = fab("probe", "--json", env=oncall_env)
    assert run.code == 0, run
    assert {c: r["status"] for c, r in run.checks().items() if c.startswith("probe")} == {
        "probe-room": "OK", "probe-inbox": "OK", "probe-cleanup": "OK"}


@pytest.mark.ssh
def test_health_of_the_compose_stack_over_ssh(stack, oncall_env, sshd):
    run = fab("--ssh-config", str(sshd.ssh_config), "-H", sshd.alias, "health", "--json", env=oncall_env)
    assert run.code == 0, run
    checks = run.checks(sshd.alias)
    assert all(r["status"] == "OK" and r["applicable"] for r in checks.values()), checks
    assert checks["compose:backend-http"]["text"] == "service backend-http: running, healthy"


def test_redis_stopped_under_the_stack(stack, oncall_env):
    """`docker compose stop redis`: CRITICAL naming Redis, readiness and the redis service."""
    stack.compose("stop", "--timeout", "5", "redis", timeout=60)
    try:
        run = fab("health", "--json", env=oncall_env)
        assert run.code == 2, run
        checks = run.checks()
        assert checks["redis"]["status"] == "CRITICAL" and "unreachable" in checks["redis"]["text"]
        assert checks["readiness"]["status"] == "CRITICAL"
        assert "failing dependency" in checks["readiness"]["text"] and "redis" in checks["readiness"]["text"]
        assert checks["compose:redis"]["status"] == "CRITICAL"
        assert "exited" in checks["compose:redis"]["text"]
        assert checks["liveness"]["status"] == "OK"
    finally:
        stack.compose("start", "redis", timeout=60)
        stack.wait_ready(timeout=60)
    # The compose healthcheck may need one more interval to say "healthy" again.
    for _ in range(20):
        again = fab("health", "--json", env=oncall_env)
        if again.code == 0:
            break
        assert again.code in (0, 1), again  # starting health is a WARNING, never worse
    assert again.code == 0, again
