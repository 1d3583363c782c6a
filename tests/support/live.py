"""Real server processes for end-to-end tests (habitto_server.processes, the runner the
load tester and the benchmarks use too)."""

import json
import urllib.error
import urllib.request
from pathlib import Path

from habitto_server.processes import free_port, manage, server_env  # noqa: F401
from habitto_server.processes import ServerProcess as LiveServer  # noqa: F401

REPO_DIR = Path(__file__).resolve().parents[2]
STACK_DIR = REPO_DIR / "stack"


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
