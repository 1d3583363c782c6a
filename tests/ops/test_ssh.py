"""On-call checks of a remote host through a real OpenSSH server on loopback.

The "remote" host is this machine seen through a private sshd (tests/ops/sshd.py): the
checks must reach its ports through SSH tunnels, and an SSH failure must be UNKNOWN.
"""

import socket
import subprocess

import pytest

from tests.ops.conftest import dead_port, fab

pytestmark = [pytest.mark.ssh, pytest.mark.e2e]


def ssh_fab(sshd, *args, hosts=None, env=None, timeout=90):
    return fab("--ssh-config", str(sshd.ssh_config), "-H", hosts or sshd.alias, *args, env=env, timeout=timeout)


def test_health_and_probe_over_ssh(live, sshd):
    """Every check passes on the remote host, through tunnels (the lines say 'on <host>')."""
    _, env = live
    run = ssh_fab(sshd, "health", "--json", env=env)
    assert run.code == 0, run
    checks = run.checks(sshd.alias)
    for name in ("port-ws", "port-http", "liveness", "readiness", "ws-token", "ws-device", "ws-no-token"):
        assert checks[name]["status"] == "OK", checks[name]
    assert f"on {sshd.alias}" in checks["port-ws"]["text"]
    # Docker is asked over SSH too: N/A (no engine, or no such Compose project), never a failure.
    assert checks["compose"]["applicable"] is False, checks["compose"]

    probe = ssh_fab(sshd, "probe", env=env)
    assert probe.code == 0, probe
    assert probe.stdout.startswith("CHAT PROBE OK - all 5 checks OK on 1 host")


def test_several_hosts_one_report(live, sshd):
    """`-H remote,local`: both hosts in one table, one exit code; hosts can also come from config."""
    _, env = live
    run = ssh_fab(sshd, "ports", "--json", hosts=f"{sshd.alias},local", env=env)
    assert run.code == 0, run
    assert [h["host"] for h in run.json["hosts"]] == [sshd.alias, "local"]

    from_config = fab("--ssh-config", str(sshd.ssh_config), "ports", "--json",
                      env={**env, "ONCALL_HOSTS": f"local,{sshd.alias}"})
    assert from_config.code == 0, from_config
    assert [h["host"] for h in from_config.json["hosts"]] == ["local", sshd.alias]


def test_remote_port_not_listening(live, sshd):
    """Nothing listening on the remote's HTTP port: CRITICAL naming the port and the host."""
    _, env = live
    port = dead_port()
    run = ssh_fab(sshd, "health", "--json", env={**env, "ONCALL_HTTP_PORT": port})
    assert run.code == 2, run
    check = run.checks(sshd.alias)["port-http"]
    assert check["status"] == "CRITICAL"
    assert f"HTTP port {port} unreachable at 127.0.0.1:{port} on {sshd.alias}: connection refused" in check["text"]
    assert run.checks(sshd.alias)["port-ws"]["status"] == "OK"


def test_remote_silent_port_within_timeout(live, sshd, silent_port):
    """A remote port that accepts but never answers: CRITICAL within its timeout, through the tunnel."""
    _, env = live
    run = ssh_fab(sshd, "health", "--json",
                  env={**env, "ONCALL_WS_PORT": silent_port, "ONCALL_TIMEOUT_WS": 1.5})
    assert run.code == 2, run
    checks = run.checks(sshd.alias)
    assert checks["port-ws"]["status"] == "OK"
    assert checks["ws-token"]["status"] == "CRITICAL"
    assert "no answer within 1.5 s" in checks["ws-token"]["text"]
    assert checks["ws-no-token"]["status"] == "UNKNOWN"  # the hung port is not tried twice
    assert checks["ws-device"]["status"] == "UNKNOWN" and "not checked" in checks["ws-device"]["text"]
    assert checks["liveness"]["status"] == "OK"
    # Within the host's budget (timeouts.host, 8 s) plus fab's start-up on a busy machine.
    assert run.json["hosts"][0]["seconds"] <= 8 + 0.3, run
    assert run.seconds < 8 + 3.5, f"took {run.seconds:.1f}s"


def test_unreachable_ssh_host_is_unknown(live, sshd):
    """No SSH server at the address: UNKNOWN (3), saying so; the local host is still checked."""
    _, env = live
    port = dead_port()
    run = fab("-H", f"127.0.0.1:{port},local", "ports", "--json", env=env)
    assert run.code == 3, run
    ssh_line = run.checks(f"127.0.0.1:{port}")["ssh"]
    assert ssh_line["status"] == "UNKNOWN"
    assert f"cannot reach SSH host 127.0.0.1:{port}: connection refused" in ssh_line["text"]
    assert run.checks("local")["port-ws"]["status"] == "OK"


def test_silent_ssh_host_is_unknown_within_timeout(live):
    """An SSH port that accepts but never speaks: UNKNOWN after the ssh timeout, not a hang."""
    _, env = live
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        run = fab("-H", f"127.0.0.1:{port}", "health", env={**env, "ONCALL_TIMEOUT_SSH": 1.5})
    assert run.code == 3, run
    assert f"cannot reach SSH host 127.0.0.1:{port}" in run.stdout
    assert run.seconds < 1.5 + 8, f"took {run.seconds:.1f}s"


def test_wrong_ssh_key_is_unknown(live, sshd, tmp_path):
    """Authentication refused by the SSH server: UNKNOWN with the reason."""
    _, env = live
    stranger = tmp_path / "stranger_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    other = tmp_path / "ssh_config"
    other.write_text(sshd.ssh_config.read_text().replace(str(sshd.client_key), str(stranger)))
    run = fab("--ssh-config", str(other), "-H", sshd.alias, "ports", env={**env, "HOME": str(tmp_path)})
    assert run.code == 3, run
    assert f"cannot reach SSH host {sshd.alias}: authentication failed" in run.stdout

    other.write_text(sshd.ssh_config.read_text().replace(str(sshd.client_key), str(tmp_path / "gone")))
    run = fab("--ssh-config", str(other), "-H", sshd.alias, "ports", env={**env, "HOME": str(tmp_path)})
    assert run.code == 3, run
    assert f"SSH key file not found: {tmp_path / 'gone'}" in run.stdout


@pytest.mark.redis
def test_redis_through_ssh(live, sshd, own_redis):
    """Redis is reached at its address as seen from the remote host (tunnelled), and its loss is CRITICAL."""
    _, env = live
    env = {**env, "ONCALL_REDIS_URL": own_redis.url}
    run = ssh_fab(sshd, "redis-ping", env=env)
    assert run.code == 0, run
    assert f"Redis at 127.0.0.1:{own_redis.port} on {sshd.alias}: PONG" in run.stdout
    own_redis.stop()
    run = ssh_fab(sshd, "redis-ping", env=env)
    assert run.code == 2, run
    assert f"Redis at 127.0.0.1:{own_redis.port} on {sshd.alias} unreachable" in run.stdout
