"""Real server processes for end-to-end tests (habitto_server.processes, the runner the
load tester and the benchmarks use too). Every LiveServer's log is read for tracebacks
after each test and at the end of the session (tests/conftest.py): a server that logged
one fails the test that was running."""

import json
import urllib.error
import urllib.request
from pathlib import Path

from habitto_server.processes import ServerProcess, free_port, manage, server_env  # noqa: F401

REPO_DIR = Path(__file__).resolve().parents[2]
STACK_DIR = REPO_DIR / "stack"
TRACEBACK = b"Traceback (most recent call last)"

_logs_read = {}  # log path of every LiveServer started -> bytes already checked


class LiveServer(ServerProcess):
    """A server process of a test; its log is checked for tracebacks (new_tracebacks)."""

    def start(self, timeout=60):
        _logs_read.setdefault(self.log_path, 0)
        return super().start(timeout)


def new_tracebacks():
    """Tracebacks that live servers logged since the last call: [(log path, excerpt)].
    A log whose folder is already gone is skipped."""
    found = []
    for path, offset in list(_logs_read.items()):
        try:
            with open(path, "rb") as log:
                log.seek(offset)
                text = log.read()
        except OSError:
            continue
        _logs_read[path] = offset + len(text)
        index = text.find(TRACEBACK)
        if index >= 0:
            found.append((path, text[max(0, index - 300):index + 4000].decode(errors="replace")))
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
