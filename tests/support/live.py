"""Real server processes for end-to-end tests: `python -m chatserver.serve` on free ports."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parents[2]
STACK_DIR = REPO_DIR / "stack"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(state_dir, database_url=None, redis_url=None, **extra):
    """Environment for a server process: development mode, its own state folder."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(
        DEBUG="1",
        STATE_DIR=str(state_dir),
        PYTHONPATH=f"{STACK_DIR}{os.pathsep}{REPO_DIR}",
        PYTHONUNBUFFERED="1",
        ACCESS_LOG="1",
    )
    if database_url:
        env["DATABASE_URL"] = database_url
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update({k: str(v) for k, v in extra.items()})
    return env


def manage(env, *args, timeout=120):
    """Run a management command in a subprocess; returns its stdout."""
    result = subprocess.run(
        [sys.executable, str(STACK_DIR / "manage.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


class LiveServer:
    """One server process serving HTTP and WebSocket on the given ports."""

    def __init__(self, env, ports, log_path):
        self.env = env
        self.ports = list(ports)
        self.log_path = Path(log_path)
        self.process = None

    def http_url(self, port=None):
        return f"http://127.0.0.1:{port or self.ports[0]}"

    def ws_url(self, port=None):
        return f"ws://127.0.0.1:{port or self.ports[0]}"

    def start(self, timeout=30):
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "chatserver.serve", "--host", "127.0.0.1",
             "--ports", ",".join(map(str, self.ports))],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=REPO_DIR,
        )
        deadline = time.monotonic() + timeout
        pending = set(self.ports)
        while pending:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server did not answer on {sorted(pending)}:\n{self.log()}")
            for port in list(pending):
                try:
                    with urllib.request.urlopen(self.http_url(port) + "/healthz", timeout=1) as r:
                        if r.status == 200:
                            pending.discard(port)
                except OSError:
                    pass
            time.sleep(0.1)
        return self

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if getattr(self, "_log", None):
            self._log.close()

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")[-8000:]
        except OSError:
            return ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def http_json(method, url, body=None, token=None, timeout=10):
    """A tiny JSON HTTP call for tests: returns (status, parsed body)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        raw = error.read()
        try:
            return error.code, json.loads(raw or b"null")
        except ValueError:
            return error.code, raw.decode(errors="replace")
