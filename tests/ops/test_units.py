"""Configuration, statuses and output of the on-call checks (no server needed)."""

import json

import pytest

from ops.oncall import config, report
from ops.oncall.results import Perf, Status, critical, not_applicable, ok, unknown, warning, worst
from ops.oncall.runner import HostReport, Run
from tests.ops.conftest import fab
from tests.support.live import free_port


def test_config_layers_and_secrets(tmp_path):
    """fabric.yml < ONCALL_CONFIG file < environment; secrets only ever shown as ***."""
    secrets = tmp_path / "oncall.yml"
    secrets.write_text(
        "oncall:\n"
        "  http_port: 9001\n"
        "  redis_url: redis://:p4ss@127.0.0.1:6390/2\n"
        "  probe_users: [{username: a, password: pa}, {username: b, password: pb}]\n"
        "  timeouts: {http: 7}\n"
    )
    cfg = config.load(
        {"ws_port": 9000, "http_port": 1, "timeouts": {"ws": 4}},
        env={"ONCALL_CONFIG": str(secrets), "ONCALL_TIMEOUT_HTTP": "8", "ONCALL_HOSTS": "local, web1"},
    )
    assert (cfg.ws_port, cfg.http_port) == (9000, 9001)
    assert cfg.timeout("ws") == 4 and cfg.timeout("http") == 8 and cfg.timeout("redis") == 2
    assert cfg.hosts == ("local", "web1")
    assert cfg.redis_target() == ("127.0.0.1", 6390, 2, None, "p4ss")
    assert [u.username for u in cfg.probe_users] == ["a", "b"]
    shown = json.dumps(cfg.redacted()) + repr(cfg)
    for secret in ("p4ss", "pa", "pb"):
        assert f'"{secret}"' not in shown and f":{secret}@" not in shown
    assert "redis://:***@127.0.0.1:6390/2" in shown


def test_probe_accounts_from_env_and_files(tmp_path):
    """ONCALL_PROBE_USERS + ONCALL_PROBE_PASSWORD, or the create_loadtest_users JSON file, or CSV."""
    cfg = config.load(None, env={"ONCALL_PROBE_USERS": "p1,p2", "ONCALL_PROBE_PASSWORD": "pw"})
    assert [(u.username, u.password) for u in cfg.probe_users] == [("p1", "pw"), ("p2", "pw")]

    accounts = tmp_path / "probes.json"
    accounts.write_text('[\n{"id": 1, "username": "probe1", "password": "x"},\n{"id": 2, "username": "probe2", "password": "x"}\n]\n')
    cfg = config.load(None, env={"ONCALL_PROBE_ACCOUNTS_FILE": str(accounts)})
    assert [u.username for u in cfg.probe_users] == ["probe1", "probe2"]

    csv = tmp_path / "probes.csv"
    csv.write_text("username,password\nq1,y\nq2,z\n")
    cfg = config.load({"probe_accounts_file": str(csv)}, env={})
    assert [(u.username, u.password) for u in cfg.probe_users] == [("q1", "y"), ("q2", "z")]


@pytest.mark.parametrize("env, message", [
    ({"ONCALL_WS_PORT": "70000"}, "ws_port must be between 1 and 65535"),
    ({"ONCALL_TIMEOUT_PROBE": "-1"}, "timeouts.probe must be greater than 0"),
    ({"ONCALL_REDIS_URL": "http://x"}, "redis_url must start with redis://"),
    ({"ONCALL_CONFIG": "/nonexistent/oncall.yml"}, "cannot read config file /nonexistent/oncall.yml"),
    ({"ONCALL_PROBE_ACCOUNTS_FILE": "/nonexistent/p.json"}, "cannot read probe accounts file"),
])
def test_bad_configuration_is_explained(env, message):
    with pytest.raises(config.ConfigError, match=message):
        config.load(None, env=env)


def test_worst_status_order():
    """CRITICAL > WARNING > UNKNOWN > OK: an unreachable host does not hide a failing one."""
    assert worst([Status.OK, Status.UNKNOWN]) is Status.UNKNOWN
    assert worst([Status.UNKNOWN, Status.WARNING]) is Status.WARNING
    assert worst([Status.UNKNOWN, Status.CRITICAL, Status.WARNING]) is Status.CRITICAL
    assert worst([]) is Status.OK


def test_perfdata_and_table():
    """Nagios shapes: status line first, a row per check, perfdata after '|' at the end."""
    results = [
        ok("port-ws", "WS port 8000 accepts TCP", Perf("web1_port_ws_connect", 0.42, "ms", None, 2000, 0)),
        warning("probe-room", "slow", Perf("web1_probe_room", 1200.0, "ms", 1000, 5000, 0)),
        not_applicable("compose", "no Docker"),
        critical("redis", "Redis at 127.0.0.1:6379 unreachable"),
    ]
    for r in results:
        r.host = "web1"
    run = Run("health", [HostReport("web1", results), HostReport("web2", [unknown("ssh", "cannot reach")])])
    for r in run.hosts[1].results:
        r.host = "web2"
    assert run.status is Status.CRITICAL and report.exit_code(run) == 2
    text = report.table(run)
    lines = text.splitlines()
    assert lines[0].startswith("CHAT HEALTH CRITICAL - 3 of 5 checks not OK on 2 hosts: web1 redis: Redis at")
    assert lines[1].split() == ["HOST", "CHECK", "STATUS", "DETAIL"]
    assert lines[4].split()[:3] == ["web1", "compose", "N/A"]
    assert lines[-1] == "| 'web1_port_ws_connect'=0.42ms;;2000;0 'web1_probe_room'=1200ms;1000;5000;0"
    document = json.loads(report.as_json(run))
    assert document["code"] == 2 and [h["status"] for h in document["hosts"]] == ["CRITICAL", "UNKNOWN"]

    bad = Run("ports", [], error="bad on-call configuration: x")
    assert report.exit_code(bad) == 3 and report.table(bad) == "CHAT PORTS UNKNOWN - bad on-call configuration: x"


def test_no_docker_engine_is_not_applicable(tmp_path):
    """No engine at all (DOCKER_HOST points nowhere): the Compose line is N/A, not a failure."""
    env = {"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock", "ONCALL_HTTP_PORT": free_port()}
    run = fab("status", "--json", env=env)
    compose = run.checks()["compose"]
    assert compose["applicable"] is False and compose["status"] == "OK", compose
    assert "no Docker engine on this machine" in compose["text"]
    assert run.code == 2  # the HTTP port is dead on purpose, and said so
    assert run.checks()["port-http"]["status"] == "CRITICAL"
