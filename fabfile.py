"""On-call checks of the chat stack: `fab health`, `fab probe`, `fab ports`, `fab redis-ping`,
`fab status` (add `-H host1,host2` for SSH hosts, `--json` for machines). docs/oncall.md.

Exit code = status: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN. The work lives in ops/oncall/
(Fabric puts this file's folder, the repository root, on the import path).
"""

from fabric import task

from ops.oncall.cli import run_task

OPTIONS = {"json": "print JSON instead of the table", "config": "extra YAML config file (secrets)"}


def _all_hosts(t):
    t.all_hosts = True  # OncallExecutor gives the task every -H host at once
    return t


@_all_hosts
@task(help=OPTIONS)
def health(c, json=False, config=None):
    """Every check per host: ports, /healthz, /readyz, WebSocket handshakes, Redis, Compose."""
    run_task(c, "health", json, config)


@_all_hosts
@task(help=OPTIONS)
def probe(c, json=False, config=None):
    """End to end: a probe message timed on the other probe user's room and inbox sockets."""
    run_task(c, "probe", json, config)


@_all_hosts
@task(help=OPTIONS)
def ports(c, json=False, config=None):
    """TCP reachability of the WebSocket port (8000) and the HTTP port (8001)."""
    run_task(c, "ports", json, config)


@_all_hosts
@task(name="redis-ping", help=OPTIONS)
def redis_ping(c, json=False, config=None):
    """Redis PING -> PONG with the configured URL and password."""
    run_task(c, "redis-ping", json, config)


@_all_hosts
@task(help=OPTIONS)
def status(c, json=False, config=None):
    """HTTP liveness and readiness, and the Compose services' state and health."""
    run_task(c, "status", json, config)
