"""Real server processes for end-to-end tests (habitto_server.processes, the runner the
load tester and the benchmarks use too). Every LiveServer's log is read for tracebacks
after each test and at the end of the session (tests/conftest.py): a server that logged
one fails the test that was running."""

import json
import re
import urllib.error
import urllib.request
from pathlib import Path

from habitto_server.processes import ServerProcess, free_port, free_port_range, manage, server_env  # noqa: F401

REPO_DIR = Path(__file__).resolve().parents[2]
STACK_DIR = REPO_DIR / "stack"
TRACEBACK = b"Traceback (most recent call last)"

_logs_read = {}  # log path of every LiveServer started -> bytes already checked


class LiveServer(ServerProcess):
    """A server process of a test; its log is checked for tracebacks (new_tracebacks)."""

    def start(self, timeout=60):
        _logs_read.setdefault(self.log_path, 0)
        return super().start(timeout)


def server_with_users(folder, count, prefix, password):
    """A migrated server on two free ports (WebSocket first, HTTP second, either answers
    both) with `count` users made by create_loadtest_users in `server.users`; start it
    with `with`."""
    env = server_env(folder, ACCESS_LOG="0")
    manage(env, "migrate", "--noinput")
    server = LiveServer(env, [free_port(), free_port()], folder / "server.log")
    server.users = json.loads(manage(env, "create_loadtest_users", "--count", str(count), "--prefix", prefix,
                                     "--password", password))
    return server


# A traceback runs until the next one (a chained exception) or the next timestamped line.
_TRACEBACK_BLOCK = re.compile(re.escape(TRACEBACK) + rb".*?(?=" + re.escape(TRACEBACK) + rb"|\n\d{4}-\d\d-\d\d |\Z)", re.S)


def new_tracebacks(expected=()):
    """Tracebacks that live servers logged since the last call: [(log path, traceback)],
    leaving out those that mention one of the `expected` texts (a test that stops Redis
    on purpose expects channels_redis to log its ConnectionError). A log whose folder is
    already gone is skipped."""
    found = []
    for path, offset in list(_logs_read.items()):
        try:
            with open(path, "rb") as log:
                log.seek(offset)
                text = log.read()
        except OSError:
            continue
        _logs_read[path] = offset + len(text)
        for block in _TRACEBACK_BLOCK.finditer(text):
            traceback = block.group().decode(errors="replace")
            if not any(allowed in traceback for allowed in expected):
                found.append((path, text[max(0, block.start() - 300):block.start()].decode(errors="replace") + traceback))
    return found


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
