"""Chat server processes on free loopback ports: `python -m habitto_server.serve` with DEBUG=1
and a state folder of their own. The test suite's live servers (tests/support/live.py), the
load tester's throwaway server and the benchmarks' servers (LocalServer) are all built on
ServerProcess. Development and test tooling: nothing in the server imports it."""

import contextlib
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

SETTINGS_MODULE = "habitto_server.settings"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_port_range(count):
    """A first port such that it and the next count-1 ports are all free right now (for
    `serve --port-base`, the scaled Compose stack's BACKEND_PORT_BASE). Drawn below the
    kernel's ephemeral range: outgoing connections (to PostgreSQL, Redis...) take their
    local ports from that range and could take one of ours before the servers bind it."""
    ephemeral_low = 32768
    with contextlib.suppress(OSError, ValueError):
        ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    low = min(20000, ephemeral_low // 2)
    for _ in range(50):
        first = random.randrange(low, ephemeral_low - count)
        held = []
        try:
            for port in range(first, first + count):
                sock = socket.socket()
                held.append(sock)
                sock.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise RuntimeError(f"no {count} consecutive free ports on 127.0.0.1")


# Every client of these servers (Locust, the benchmark, end-to-end tests) comes from one
# address, 127.0.0.1: per-address login/registration/refresh limits would throttle them.
# A test of the throttles passes its own values in `extra`.
GENEROUS_THROTTLES = {"THROTTLE_LOGIN": "100000/m", "THROTTLE_REGISTER": "100000/m",
                      "THROTTLE_REFRESH": "100000/m", "THROTTLE_LOGIN_FAILURES": "100000/m"}


def server_env(state_dir, database_url=None, redis_url=None, **extra):
    """Environment for a server process: development mode, its own state folder."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(DEBUG="1", STATE_DIR=str(state_dir), PYTHONUNBUFFERED="1",
               DJANGO_SETTINGS_MODULE=SETTINGS_MODULE, ACCESS_LOG="1",
               **GENEROUS_THROTTLES)
    if database_url:
        env["DATABASE_URL"] = database_url
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update({k: str(v) for k, v in extra.items()})
    return env


def manage(env, *args, timeout=600, python=None):
    """Run a management command (`python -m django`, what stack/manage.py does) in a
    subprocess with `env` (default: this process's environment) and `python` (default:
    this interpreter; the benchmark's other commit has a virtualenv of its own); returns
    its stdout."""
    env = {"DJANGO_SETTINGS_MODULE": SETTINGS_MODULE, **(os.environ if env is None else env)}
    result = subprocess.run([python or sys.executable, "-m", "django", *args], env=env,
                            capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def cpu_seconds_of(pid):
    """CPU time (user + system) a process has used so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ServerProcess:
    """`python -m habitto_server.serve` on the given ports, each answering HTTP and WebSocket;
    start() returns once /healthz answers on every port. Also the tests' LiveServer.
    `python`: the interpreter (default: this one) whose habitto_server is served."""

    def __init__(self, env, ports, log_path, python=None):
        self.env = env
        self.python = python or sys.executable
        self.ports = list(ports)
        self.log_path = Path(log_path)
        self.process = None
        self._log = None

    def http_url(self, port=None):
        return f"http://127.0.0.1:{port or self.ports[0]}"

    def ws_url(self, port=None):
        return f"ws://127.0.0.1:{port or self.ports[0]}"

    def start(self, timeout=60):
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [self.python, "-m", "habitto_server.serve", "--host", "127.0.0.1",
             "--ports", ",".join(map(str, self.ports))],
            env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        pending = set(self.ports)
        while pending:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server did not answer on {sorted(pending)} within {timeout} s:\n{self.log()}")
            for port in list(pending):
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                        if r.status == 200:
                            pending.discard(port)
                except OSError:
                    pass
            time.sleep(0.1)
        return self

    def rss_bytes(self):
        """Resident memory of the server process (Linux /proc)."""
        with open(f"/proc/{self.process.pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def cpu_seconds(self):
        return cpu_seconds_of(self.process.pid)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self._log:
            self._log.close()
            self._log = None

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")[-8000:]
        except OSError:
            return ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class LocalServer(ServerProcess):
    """A throwaway server for a load-test or benchmark run: temporary STATE_DIR (SQLite), free ports
    (WS port first, HTTP port second, like 8000 and 8001), state removed unless keep."""

    def __init__(self, env_extra=None, ports=None, state_dir=None, keep=False, log_path=None, python=None):
        self.state_dir = Path(state_dir or tempfile.mkdtemp(prefix="habitto-loadtest-"))
        self.keep = keep
        extra = {"ACCESS_LOG": "0", **(env_extra or {})}
        super().__init__(server_env(self.state_dir, **extra), ports or (free_port(), free_port()),
                         log_path or self.state_dir / "server.log", python)

    @property
    def ws_base(self):
        return self.ws_url(self.ports[0])

    @property
    def http_base(self):
        return self.http_url(self.ports[-1])

    def migrate(self):
        manage(self.env, "migrate", "--noinput", python=self.python)

    def stop(self):
        super().stop()
        if not self.keep:
            shutil.rmtree(self.state_dir, ignore_errors=True)
