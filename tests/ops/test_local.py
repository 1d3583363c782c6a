"""On-call checks against real server processes on this machine (`fab <task>` as on call)."""

from pathlib import Path

import pytest

from tests.ops.conftest import OlderWSServer, dead_port, fab, start_server
from tests.support.live import LiveServer, free_port, server_env

pytestmark = [pytest.mark.e2e]

HEALTH_CHECKS = {"port-ws", "port-http", "liveness", "readiness", "ws-token", "ws-device", "ws-no-token", "redis",
                 "compose"}


def test_health_all_ok_lists_every_check(live):
    """A healthy server: exit 0, one OK line per check, N/A only for what does not apply."""
    _, env = live
    run = fab("health", "--json", env=env)
    assert run.code == 0, run
    checks = run.checks()
    # No proxy configured: the processes on the two ports are the backends whose /metrics are read.
    scraped = {f"metrics:127.0.0.1:{env['ONCALL_WS_PORT']}", f"metrics:127.0.0.1:{env['ONCALL_HTTP_PORT']}"}
    assert set(checks) == HEALTH_CHECKS | scraped
    for name in HEALTH_CHECKS - {"redis", "compose"} | scraped:
        assert checks[name]["status"] == "OK" and checks[name]["applicable"], checks[name]
    # No Redis configured and no Compose stack for this server: not applicable, not failed.
    assert not checks["redis"]["applicable"] and not checks["compose"]["applicable"]
    assert "close code 4401" in checks["ws-no-token"]["text"]
    device = checks["ws-device"]
    assert "hello and sync.done in" in device["text"], device
    [synced] = device["perfdata"]
    assert synced["label"] == "local_ws_device_sync" and synced["uom"] == "ms", synced
    assert 0 < synced["value"] < synced["crit"] == 3000, synced  # within timeouts.ws
    assert run.json["status"] == "OK" and run.json["code"] == 0

    table = fab("health", env=env)
    assert table.code == 0, table
    first, *rows = table.stdout.splitlines()
    assert first.startswith("CHAT HEALTH OK - all 9 checks OK on 1 host")
    for name in HEALTH_CHECKS | scraped:
        assert any(row.split()[1:2] == [name] for row in rows), (name, table.stdout)
    assert rows[-1].startswith("| 'local_port_ws_connect'=")


def test_smaller_tasks(live):
    """ports, status and redis-ping run their own subset of checks."""
    _, env = live
    ports = fab("ports", "--json", env=env)
    assert ports.code == 0 and set(ports.checks()) == {"port-ws", "port-http"}, ports
    status = fab("status", "--json", env=env)
    assert status.code == 0 and set(status.checks()) == {"port-http", "liveness", "readiness", "compose"}, status
    redis = fab("redis-ping", "--json", env=env)  # no Redis configured: not applicable, OK
    assert redis.code == 0 and redis.checks()["redis"]["applicable"] is False, redis


def test_probe_ok_and_cleans_up(live):
    """The probe times the message on both sockets and clears the conversation for both users."""
    server, env = live
    run = fab("probe", "--json", env=env)
    assert run.code == 0, run
    checks = run.checks()
    for name in ("probe-room", "probe-inbox", "probe-cleanup"):
        assert checks[name]["status"] == "OK", checks[name]
    room_ms = checks["probe-room"]["perfdata"][0]
    assert room_ms["uom"] == "ms" and 0 <= room_ms["value"] < 1000 and room_ms["warn"] == 1000

    from habitto_client import ChatHTTP

    api = ChatHTTP(server.http_url(int(env["ONCALL_HTTP_PORT"])))
    from tests.ops.conftest import PROBE_PASSWORD

    for name in ("probe1", "probe2"):
        session = api.login(name, PROBE_PASSWORD)
        assert api.conversations(session)["results"] == [], f"{name} still sees the probe conversation"


def test_port_not_listening_is_critical_and_named(live):
    """Nothing on the WS port: CRITICAL naming that port; the socket checks are not run."""
    _, env = live
    port = dead_port()
    run = fab("health", "--json", env={**env, "ONCALL_WS_PORT": port})
    assert run.code == 2, run
    checks = run.checks()
    assert checks["port-ws"]["status"] == "CRITICAL"
    assert f"WS port {port} unreachable" in checks["port-ws"]["text"]
    assert "refused" in checks["port-ws"]["text"]
    for name in ("ws-token", "ws-device"):
        assert checks[name]["status"] == "UNKNOWN" and "not checked" in checks[name]["text"], checks[name]
    assert checks["liveness"]["status"] == "OK"  # the HTTP port is fine
    assert f"WS port {port}" in run.json["summary"]


def test_silent_port_is_critical_within_its_timeout(live, silent_port):
    """A port that accepts but never answers: CRITICAL, costing about one timeout, not a hang."""
    _, env = live
    env = {**env, "ONCALL_HTTP_PORT": silent_port, "ONCALL_TIMEOUT_HTTP": 1.5}
    run = fab("health", "--json", env=env)
    assert run.code == 2, run
    checks = run.checks()
    assert checks["port-http"]["status"] == "OK"  # TCP is accepted...
    assert checks["liveness"]["status"] == "CRITICAL"  # ...but nothing answers
    assert "no answer within 1.5 s" in checks["liveness"]["text"]
    assert checks["readiness"]["status"] == "UNKNOWN"  # not asked again
    assert run.seconds < 1.5 + 6, f"took {run.seconds:.1f}s"

    ports_only = fab("status", env=env)
    assert ports_only.code == 2 and ports_only.stdout.startswith("CHAT STATUS CRITICAL"), ports_only

    probe = fab("probe", "--json", env=env)  # a socket timeout is CRITICAL, not UNKNOWN
    assert probe.code == 2, probe
    assert "timed out" in probe.checks()["probe"]["text"]
    assert probe.seconds < 1.5 + 6, f"took {probe.seconds:.1f}s"


def test_device_socket_refused_is_critical_naming_the_close_code(live):
    """A WebSocket port whose server has no /ws/v2/ (as before issue 15: accepted, closed
    with 4404 "no such socket") while the legacy inbox works: only ws-device is CRITICAL."""
    _, env = live
    with OlderWSServer() as older:
        run = fab("health", "--json", env={**env, "ONCALL_WS_PORT": older.port})
    assert run.code == 2, run
    checks = run.checks()
    assert checks["ws-token"]["status"] == "OK" and checks["ws-no-token"]["status"] == "OK", checks
    device = checks["ws-device"]
    assert device["status"] == "CRITICAL", device
    assert "refused: closed with code 4404 (no such socket" in device["text"], device
    assert "local ws-device" in run.json["summary"]
    assert any(path.startswith("/ws/v2/?token=") for path in older.paths), older.paths  # as the app sends it


def test_device_socket_token_not_accepted_is_critical(live, tmp_path):
    """The WS port served by a process with another SECRET_KEY (its own state folder, the
    same database): the probe token logged in on the HTTP port is refused with 4401."""
    server, env = live
    other_env = server_env(tmp_path, database_url=f"sqlite:///{Path(server.env['STATE_DIR']) / 'db.sqlite3'}")
    other = LiveServer(other_env, [free_port()], tmp_path / "server.log").start()
    try:
        run = fab("health", "--json", env={**env, "ONCALL_WS_PORT": other.ports[0]})
    finally:
        other.stop()
    assert run.code == 2, run
    device = run.checks()["ws-device"]
    assert device["status"] == "CRITICAL", device
    assert "refused: closed with code 4401 (token not accepted) before sync.done" in device["text"], device
    assert run.checks()["ws-token"]["status"] == "CRITICAL"  # the inbox is refused the same way


def test_device_socket_without_sync_done_is_critical_within_its_timeout(live):
    """/ws/v2/ says hello and then nothing: CRITICAL after timeouts.ws, not a hang."""
    _, env = live
    with OlderWSServer(device="hello only") as mute:
        run = fab("health", "--json", env={**env, "ONCALL_WS_PORT": mute.port, "ONCALL_TIMEOUT_WS": 1})
    assert run.code == 2, run
    device = run.checks()["ws-device"]
    assert device["status"] == "CRITICAL", device
    assert "hello, but no sync.done within 1 s" in device["text"], device
    assert run.json["hosts"][0]["seconds"] < 8, run


def test_wrong_probe_password_is_unknown(live):
    """A wrong probe password is a configuration problem: UNKNOWN (3) with a clear message."""
    _, env = live
    env = {k: v for k, v in env.items() if k != "ONCALL_PROBE_ACCOUNTS_FILE"}
    env.update(ONCALL_PROBE_USERS="probe1,probe2", ONCALL_PROBE_PASSWORD="not-the-password")
    run = fab("probe", env=env)
    assert run.code == 3, run
    assert "CHAT PROBE UNKNOWN" in run.stdout
    assert "probe login as 'probe1' refused (HTTP 401): wrong probe password" in run.stdout
    assert "not-the-password" not in run.stdout + run.stderr  # secrets are never printed

    health = fab("health", "--json", env=env)
    assert health.code == 3, health  # everything else fine: UNKNOWN, not CRITICAL
    for name in ("ws-token", "ws-device"):
        assert health.checks()[name]["status"] == "UNKNOWN", health
        assert "refused (HTTP 401): wrong probe password" in health.checks()[name]["text"]


def test_bad_config_is_unknown(live, tmp_path):
    """Unusable configuration: UNKNOWN before any check, saying what is wrong."""
    _, env = live
    run = fab("health", env={**env, "ONCALL_TIMEOUT_HTTP": "soon"})
    assert run.code == 3, run
    assert "timeouts.http must be a number, got 'soon'" in run.stdout

    secret_file = tmp_path / "oncall.yml"
    secret_file.write_text("oncall:\n  redis_url: redis://:hunter2@127.0.0.1:1/0\n  probe_timeout: 3\n")
    run = fab("health", "--config", str(secret_file), env=env)
    assert run.code == 3 and "unknown setting(s) probe_timeout" in run.stdout, run
    assert "hunter2" not in run.stdout

    missing = fab("probe", "--json", env={k: v for k, v in env.items() if k != "ONCALL_PROBE_ACCOUNTS_FILE"})
    assert missing.code == 3, missing
    assert "probe account(s), 0 configured" in missing.checks()["probe"]["text"]


@pytest.mark.slow
def test_slow_probe_is_warning(tmp_path):
    """Delivery slower than probe_warn_ms (server delays every live delivery): WARNING (1)."""
    server, env = start_server(tmp_path, CHAT_TEST_DELIVERY_DELAY_MS=600)
    try:
        run = fab("probe", "--json", env={**env, "ONCALL_PROBE_WARN_MS": 300})
        assert run.code == 1, run
        checks = run.checks()
        assert checks["probe-room"]["status"] == "WARNING", checks
        assert "slower than 300 ms" in checks["probe-room"]["text"]
        assert checks["probe-room"]["perfdata"][0]["value"] >= 600
        assert checks["probe-cleanup"]["status"] == "OK"
        assert run.stdout.count('"status": "CRITICAL"') == 0

        # Slower than the probe timeout: the message "never" arrived, CRITICAL.
        run = fab("probe", "--json", env={**env, "ONCALL_TIMEOUT_PROBE": 0.3})
        assert run.code == 2, run
        assert "not on the receiver's room socket within 0.3 s" in run.checks()["probe-room"]["text"]
    finally:
        server.stop()


@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.server_tracebacks_expected("redis.exceptions.ConnectionError")  # channels_redis, Redis stopped
def test_redis_stopped_fails_naming_redis_and_readiness(tmp_path, own_redis):
    """Redis stops under a server that uses it: CRITICAL naming Redis and failed readiness."""
    server, env = start_server(tmp_path, redis_url=own_redis.url)
    try:
        before = fab("health", "--json", env=env)
        assert before.code == 0, before
        assert before.checks()["redis"]["status"] == "OK"
        assert "PONG" in before.checks()["redis"]["text"]
        assert "redis" in before.checks()["readiness"]["text"]

        own_redis.stop()
        run = fab("health", "--json", env=env)
        assert run.code == 2, run
        checks = run.checks()
        assert checks["redis"]["status"] == "CRITICAL"
        assert f"Redis at 127.0.0.1:{own_redis.port} unreachable" in checks["redis"]["text"]
        assert checks["readiness"]["status"] == "CRITICAL"
        assert "failing dependency" in checks["readiness"]["text"] and "redis" in checks["readiness"]["text"]
        assert checks["liveness"]["status"] == "OK"  # the process itself is alive

        ping = fab("redis-ping", env=env)
        assert ping.code == 2 and "CHAT REDIS-PING CRITICAL" in ping.stdout, ping
    finally:
        server.stop()


@pytest.mark.redis
def test_redis_password_from_config(live, own_redis_with_password):
    """Redis PING with the password from ONCALL_REDIS_PASSWORD; a wrong one is UNKNOWN, never printed."""
    _, env = live
    redis = own_redis_with_password
    bare = f"redis://127.0.0.1:{redis.port}/0"
    run = fab("redis-ping", env={**env, "ONCALL_REDIS_URL": bare, "ONCALL_REDIS_PASSWORD": redis.password})
    assert run.code == 0 and "PONG" in run.stdout, run

    run = fab("redis-ping", "--json", env={**env, "ONCALL_REDIS_URL": redis.url})  # password inside the URL
    assert run.code == 0, run
    assert redis.password not in run.stdout

    wrong = fab("redis-ping", env={**env, "ONCALL_REDIS_URL": bare, "ONCALL_REDIS_PASSWORD": "nope-wrong"})
    assert wrong.code == 3, wrong
    assert "refused the configured password" in wrong.stdout or "needs a password" in wrong.stdout
    assert "nope-wrong" not in wrong.stdout + wrong.stderr

    missing = fab("redis-ping", env={**env, "ONCALL_REDIS_URL": bare})
    assert missing.code == 3 and "ONCALL_REDIS_PASSWORD" in missing.stdout, missing
