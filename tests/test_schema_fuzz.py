"""schemathesis against a live server process: every operation of the OpenAPI schema
(drf-spectacular, /api/schema/) with generated valid and invalid input, authenticated
as a test user with a bearer token. No 5xx anywhere, and every response matches the
schema of its operation and status. Bounded (a fixed seed, few examples per operation)
to finish in under two minutes.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.chat import login, provision
from tests.support.live import LiveServer, free_port, http_json, manage, server_env

pytestmark = pytest.mark.e2e

MAX_EXAMPLES = 8  # per operation; with the coverage phase about 1,500 requests in ~70 s

CONFIG = """
seed = 11
request-timeout = 10.0
generation.max-examples = {max_examples}

[checks]
enabled = false
not_a_server_error.enabled = true
response_schema_conformance.enabled = true
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    state = tmp_path_factory.mktemp("schema-fuzz")
    env = server_env(state)
    manage(env, "migrate", "--noinput")
    users = provision(env, 2, "schema")
    with LiveServer(env, [free_port()], state / "server.log") as live:
        live.state = state
        live.token = login(live.http_url(), users[0])
        # Something to read: a short thread between the two users.
        for n in range(3):
            status, body = http_json("POST", f"{live.http_url()}/api/messages/",
                                     {"receiver": users[1]["id"], "content": f"seed {n}"}, token=live.token)
            assert status == 201, body
        yield live


def test_schemathesis_finds_no_server_error_and_no_schema_violation(server):
    config = server.state / "schemathesis.toml"
    config.write_text(CONFIG.format(max_examples=MAX_EXAMPLES))
    command = [
        str(Path(sys.executable).with_name("schemathesis")), "--no-color", "--config-file", str(config), "run",
        f"{server.http_url()}/api/schema/",
        "--header", f"Authorization: Bearer {server.token}",
        "--phases", "examples,coverage,fuzzing",
        "--workers", "1",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=170, cwd=server.state)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-20000:]
    selected, total = map(int, re.search(r"Selected: (\d+)/(\d+)", output).groups())
    tested = int(re.search(r"Tested: (\d+)", output).group(1))
    assert selected == total == tested >= 20, output[-5000:]  # every operation of the schema
