"""Fixtures for the on-call checks: real server processes, a real sshd, a real Redis.

Every test runs `fab <task>` as a subprocess from the repository root, exactly as the
on-call engineer does, and reads its exit code and output (table or --json).
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

from tests.ops.sshd import ALIAS, SSHServer, sshd_binary
from tests.support import services
from tests.support.live import REPO_DIR, LiveServer, free_port, manage, server_env

PROBE_PASSWORD = "probe-Passw0rd-oncall"


class FabRun:
    def __init__(self, completed, seconds):
        self.code = completed.returncode
        self.stdout = completed.stdout
        self.stderr = completed.stderr
        self.seconds = seconds

    @property
    def json(self):
        return json.loads(self.stdout)

    def checks(self, host="local"):
        """{check name: result dict} of one host (needs --json)."""
        for entry in self.json["hosts"]:
            if entry["host"] == host:
                return {r["check"]: r for r in entry["results"]}
        raise AssertionError(f"host {host} not in output:\n{self.stdout}")

    def __repr__(self):
        return f"<fab exit {self.code} in {self.seconds:.1f}s\n{self.stdout}\n{self.stderr}>"


def fab(*args, env=None, timeout=90):
    """Run `fab ARGS` from the repository root with ONCALL_* taken only from `env`."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ONCALL_")}
    # A developer's own `make run` demo users must not stand in for the accounts a test set up.
    full_env["ONCALL_DEMO_USERS"] = "0"
    full_env.update({k: str(v) for k, v in (env or {}).items()})
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, "-m", "fabric", *args], cwd=REPO_DIR, env=full_env,
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )
    return FabRun(completed, time.monotonic() - started)


def compose_oncall_env(stack, folder, service, **extra):
    """ONCALL_* settings for a Compose stack (tests/compose/stack.py) with two probe accounts,
    made inside the container of `service` as docs/oncall.md says."""
    created = stack.compose(
        "exec", "-T", service, "python", "/app/stack/manage.py", "create_loadtest_users",
        "--count", "2", "--prefix", "probe", "--password", PROBE_PASSWORD,
    ).stdout
    accounts = folder / "probes.json"
    accounts.write_text(json.dumps(json.loads(created)))
    return {
        "ONCALL_WS_PORT": stack.ws_port,
        "ONCALL_HTTP_PORT": stack.http_port,
        "ONCALL_REDIS_URL": f"redis://127.0.0.1:{stack.ports['REDIS_PORT']}/0",
        "ONCALL_COMPOSE_PROJECT": stack.project,
        "ONCALL_PROBE_ACCOUNTS_FILE": accounts,
        **extra,
    }


def start_server(tmp_path, name="server", redis_url=None, **extra_env):
    """A migrated server process with two probe accounts; returns (server, ONCALL_* env)."""
    state = tmp_path / name
    state.mkdir()
    env = server_env(state, redis_url=redis_url, **extra_env)
    manage(env, "migrate", "--noinput")
    accounts = state / "probes.json"
    manage(env, "create_loadtest_users", "--count", "2", "--prefix", "probe",
           "--password", PROBE_PASSWORD, "--output", str(accounts))
    ws_port, http_port = free_port(), free_port()
    server = LiveServer(env, [ws_port, http_port], state / "server.log").start()
    oncall = {
        "ONCALL_WS_PORT": ws_port,
        "ONCALL_HTTP_PORT": http_port,
        "ONCALL_PROBE_ACCOUNTS_FILE": accounts,
        # The checks must not find this machine's Compose stack of another test run.
        "ONCALL_COMPOSE_PROJECT": f"oncall-none-{ws_port}",
    }
    if redis_url:
        oncall["ONCALL_REDIS_URL"] = redis_url
    return server, oncall


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """One healthy server (SQLite, in-memory layer) for a test module."""
    server, env = start_server(tmp_path_factory.mktemp("oncall"))
    try:
        yield server, env
    finally:
        server.stop()


class RedisServer:
    """A redis-server of our own on a free port, so a test may stop it."""

    def __init__(self, workdir, password=None):
        self.dir = Path(workdir)
        self.port = free_port()
        self.password = password
        self.process = None

    @property
    def url(self):
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self):
        binary = shutil.which("redis-server")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir), *(["--requirepass", self.password] if self.password else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        ok, why = False, ""
        for _ in range(100):
            ok, why = services.check_redis(self.url)
            if ok:
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not start: {why}")

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@pytest.fixture
def own_redis(tmp_path):
    """A Redis of this test's own (the test may stop it)."""
    if not shutil.which("redis-server"):
        services.require("redis", False, "redis-server is not installed (apt-get install -y redis-server)")
    redis = RedisServer(tmp_path).start()
    yield redis
    redis.stop()


@pytest.fixture
def own_redis_with_password(tmp_path):
    if not shutil.which("redis-server"):
        services.require("redis", False, "redis-server is not installed (apt-get install -y redis-server)")
    redis = RedisServer(tmp_path, password="redis-S3cret-oncall").start()
    yield redis
    redis.stop()


class SilentPort:
    """A port that accepts TCP connections (the kernel's backlog) but never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]

    def close(self):
        self.sock.close()


@pytest.fixture
def silent_port():
    port = SilentPort()
    yield port.port
    port.close()


class OlderWSServer:
    """A WebSocket port that speaks the legacy sockets but not /ws/v2/ as this server does:
    device="4404" answers it like a server from before /ws/v2/ (UnknownPathConsumer: accepted,
    then closed with 4404 "no such socket"); device="hello only" sends hello and nothing more.
    Inbox sockets with a token are accepted and stay open, without one closed with 4401
    (tokens are not verified). `paths` records every request path."""

    def __init__(self, device="4404"):
        from websockets.sync.server import serve

        self.device = device
        self.paths = []
        self._server = serve(self._handle, "127.0.0.1", 0)
        self.port = self._server.socket.getsockname()[1]

    def _handle(self, conn):
        path = conn.request.path
        self.paths.append(path)
        if path.startswith("/ws/v2/") and self.device == "4404":
            conn.close(4404, "no such socket")
            return
        if "token" not in urllib.parse.parse_qs(urllib.parse.urlsplit(path).query):
            conn.close(4401, "no token")
            return
        if path.startswith("/ws/v2/"):
            conn.send(json.dumps({"type": "hello", "user_id": 1, "protocol": "2", "heartbeat": 25}))
        for _ in conn:  # quiet until the client closes
            pass

    def __enter__(self):
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    """A throwaway sshd on loopback; tests call fab with --ssh-config sshd.ssh_config -H ALIAS."""
    if sshd_binary() is None:
        services.require("ssh", False, "openssh-server is not installed (apt-get install -y openssh-server)")
    server = SSHServer(tmp_path_factory.mktemp("sshd"))
    try:
        server.start()
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        services.require("ssh", False, f"cannot start a private sshd: {exc}")
    server.alias = ALIAS
    yield server
    server.stop()


def dead_port():
    """A free port with nothing listening on it."""
    return free_port()

