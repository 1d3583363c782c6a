"""The real compose.yaml on a real Docker engine (issue 4): one throwaway project on free
ports, brought up once for the module the way the README tells a newcomer (a clean clone,
no .env, `make up`; issue 12); the tests run in order against it and the last one proves
`docker compose down -v` leaves nothing behind.

Needs a Docker engine, Compose v2 and the base images (ops/bootstrap-docker.sh);
without them the module skips loudly (fails under REQUIRE_SERVICES=1).
"""

import json
import re
import shutil
import stat
import time
from datetime import datetime

import pytest

from habitto_client import ChatSocket, Timeout, inbox_url, room_url
from tests.compose.stack import ENV_EXAMPLE, ComposeStack, run, running_stack
from tests.support import services
from tests.support.chat import check_inbox_frame, check_room_frame, marker, recv_until, thread_ids
from tests.support.live import http_json

pytestmark = [pytest.mark.docker, pytest.mark.slow]

PASSWORD = "Compose-stack-Passw0rd!"
WAIT = 10  # seconds for a frame that must come (cross-container, through Redis)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("compose"), newcomer=True) as stack:
        yield stack


@pytest.fixture(scope="module")
def accounts(stack):
    """Alice and Bob, registered and logged in over the HTTP port: {name: {id, access}}."""
    http = stack.http_url(stack.http_port)
    people = {}
    for name in ("alice", "bob"):
        body = {"username": name, "email": f"{name}@example.test", "password": PASSWORD,
                "first_name": name.title(), "last_name": "Compose"}
        status, created = http_json("POST", f"{http}/api/users/", body)
        assert status == 201, created
        assert created["success"] is True and created["data"]["username"] == name
        status, tokens = http_json("POST", f"{http}/api/login/", {"username": name, "password": PASSWORD})
        assert status == 200, tokens
        people[name] = {"id": created["data"]["id"], "access": tokens["data"]["access"],
                        "refresh": tokens["data"]["refresh"]}
    return people


@pytest.fixture
def sockets():
    """open(url): habitto_client sockets, all closed afterwards."""
    opened = []

    def open_socket(url):
        sock = ChatSocket.open(url, timeout=10)
        opened.append(sock)
        return sock

    yield open_socket
    for sock in opened:
        sock.close()


def instant(text):
    """Docker's RFC 3339 timestamp (nanoseconds, trailing zeros trimmed) as a datetime."""
    match = re.fullmatch(r"(.{19})(?:\.(\d+))?Z", text)
    assert match, text
    return datetime.fromisoformat(match.group(1)).replace(
        microsecond=int((match.group(2) or "0")[:6].ljust(6, "0")))


def post_message(stack, port, sender, receiver_id, content):
    return http_json("POST", f"{stack.http_url(port)}/api/messages/",
                     {"receiver": receiver_id, "content": content}, token=sender["access"])


# --- the newcomer's path, the image and the stack ----------------------------------------


def test_make_up_on_a_clean_clone_created_env_with_fresh_secrets(stack):
    """`make up` found no .env, made one from .env.example (mode 0600, random secrets) and said where."""
    env_file = stack.env_file
    assert env_file.is_file()
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert f"Created {env_file} from .env.example with a fresh random SECRET_KEY and POSTGRES_PASSWORD (mode 0600)" \
        in stack.make_output, stack.make_output
    created = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if re.match(r"[A-Z]", line))
    assert len(created["SECRET_KEY"]) >= 50 and len(set(created["SECRET_KEY"])) >= 5
    assert len(created["POSTGRES_PASSWORD"]) >= 32
    assert created["SECRET_KEY"] not in stack.make_output  # said where, not what
    # Everything else is .env.example as shipped: the newcomer edited nothing.
    example = (stack.repo_dir / ".env.example").read_text()
    for name, value in created.items():
        if name not in ("SECRET_KEY", "POSTGRES_PASSWORD"):
            assert f"\n{name}={value}\n" in example, name
    # The clone is clean apart from the git-ignored .env.
    status = run(["git", "-C", str(stack.repo_dir), "status", "--porcelain", "--ignored"]).stdout
    assert status.split() == ["!!", ".env"], status



def test_stack_is_healthy_in_dependency_order(stack):
    states = stack.service_states()
    assert states["migrate"][0] == "exited" and states["migrate"][2] == 0, states
    for service in ("redis", "postgres", "backend-ws", "backend-http"):
        assert states[service][:2] == ("running", "healthy"), states
    for port in (stack.ws_port, stack.http_port):
        status, body = stack.readyz(port)
        assert status == 200, body
        assert set(body["checks"]) == {"database", "channel_layer", "redis"}, body
    # Order: migrate ran to completion before either backend started.
    times = {}
    for service in ("migrate", "backend-ws", "backend-http"):
        state = json.loads(run(["docker", "inspect", "--format", "{{json .State}}",
                                stack.container_id(service)]).stdout)
        times[service] = (instant(state["StartedAt"]), instant(state["FinishedAt"]))
    for service in ("backend-ws", "backend-http"):
        assert times[service][0] > times["migrate"][1], times


def test_image_runs_as_non_root_without_baked_secrets(stack):
    config = json.loads(run(["docker", "image", "inspect", stack.image]).stdout)[0]["Config"]
    assert config["User"] not in ("", "0", "root", "0:0"), config["User"]
    assert config["Healthcheck"]["Test"][:2] == ["CMD", "python"]
    names = {item.split("=", 1)[0] for item in config["Env"]}
    assert not names & {"SECRET_KEY", "POSTGRES_PASSWORD", "DATABASE_URL", "JWT_SIGNING_KEY"}, names
    for service in ("backend-ws", "backend-http"):
        uid = stack.compose("exec", "-T", service, "id", "-u").stdout.strip()
        assert uid.isdigit() and uid != "0", (service, uid)
        # The server process itself (PID 1 after the start script's exec).
        status = stack.compose("exec", "-T", service, "cat", "/proc/1/status").stdout
        assert "\nUid:\t0" not in status, status


# --- accounts and live delivery ---------------------------------------------------------


def test_registration_and_login_over_http(stack, accounts):
    alice, bob = accounts["alice"], accounts["bob"]
    assert alice["id"] != bob["id"]
    for port in (stack.http_port, stack.ws_port):  # each port answers HTTP
        status, me = http_json("GET", f"{stack.http_url(port)}/api/users/me/", token=alice["access"])
        assert status == 200 and me["data"]["username"] == "alice", me
    status, wrong = http_json("POST", f"{stack.http_url(stack.http_port)}/api/login/",
                              {"username": "alice", "password": "not-the-password"})
    assert status == 401 and wrong["success"] is False, wrong


def test_room_socket_message_reaches_the_other_users_room_and_inbox(stack, accounts, sockets):
    alice, bob = accounts["alice"], accounts["bob"]
    port = stack.ws_port
    bob_room = sockets(room_url(stack.ws_url(port), alice["id"], bob["id"], bob["access"]))
    bob_inbox = sockets(inbox_url(stack.ws_url(port), bob["id"], bob["access"]))
    alice_room = sockets(room_url(stack.ws_url(port), alice["id"], bob["id"], alice["access"]))
    text = marker("socket")
    alice_room.send_json({"sender": alice["id"], "receiver": bob["id"], "content": text})

    echo = check_room_frame(alice_room.recv_json(WAIT), alice["id"], bob["id"], text)
    delivered = check_room_frame(bob_room.recv_json(WAIT), alice["id"], bob["id"], text)
    assert delivered == echo
    inbox = check_inbox_frame(bob_inbox.recv_json(WAIT), bob["id"], alice["id"], bob["id"], text)
    assert inbox["message_id"] == echo["id"] and inbox["counterpart_username"] == "alice"


def test_http_post_on_the_http_port_reaches_sockets_on_the_ws_port(stack, accounts, sockets):
    """Two containers: the post is served by backend-http, the sockets by backend-ws, so
    the delivery went through Redis."""
    alice, bob = accounts["alice"], accounts["bob"]
    bob_room = sockets(room_url(stack.ws_url(stack.ws_port), alice["id"], bob["id"], bob["access"]))
    bob_inbox = sockets(inbox_url(stack.ws_url(stack.ws_port), bob["id"], bob["access"]))
    alice_room = sockets(room_url(stack.ws_url(stack.ws_port), alice["id"], bob["id"], alice["access"]))
    text = marker("http")
    status, body = post_message(stack, stack.http_port, alice, bob["id"], text)
    assert status == 201, body
    message = body["data"]
    for sock in (bob_room, alice_room):
        frame = check_room_frame(recv_until(sock, lambda f: f.get("content") == text, WAIT),
                                 alice["id"], bob["id"], text)
        assert frame["id"] == message["id"]
    frame = recv_until(bob_inbox, lambda f: f.get("content") == text, WAIT)
    check_inbox_frame(frame, bob["id"], alice["id"], bob["id"], text)


def test_data_survives_docker_compose_restart(stack, accounts):
    alice, bob = accounts["alice"], accounts["bob"]
    http = stack.http_url(stack.http_port)
    before = thread_ids(http, alice["access"], bob["id"])
    assert len(before) >= 2
    stack.compose("restart", "--timeout", "15", timeout=240)
    stack.wait_ready(timeout=120)
    # Same data (PostgreSQL's named volume), same users; tokens still valid (same SECRET_KEY).
    assert thread_ids(http, alice["access"], bob["id"]) == before
    status, tokens = http_json("POST", f"{http}/api/login/", {"username": "bob", "password": PASSWORD})
    assert status == 200, tokens


def test_redis_outage_fails_readiness_by_name_and_recovers_without_losing_acknowledged_messages(
    stack, accounts, sockets
):
    alice, bob = accounts["alice"], accounts["bob"]
    ws_port, http_port = stack.ws_port, stack.http_port
    # Sockets opened before the outage must carry live messages again after it.
    bob_room = sockets(room_url(stack.ws_url(ws_port), alice["id"], bob["id"], bob["access"]))
    alice_room = sockets(room_url(stack.ws_url(ws_port), alice["id"], bob["id"], alice["access"]))
    acknowledged = []

    stopped_at = time.monotonic()
    stack.compose("stop", "--timeout", "5", "redis", timeout=60)
    for port in (ws_port, http_port):
        deadline = stopped_at + 10
        while True:
            status, body = stack.readyz(port)
            if status == 503:
                break
            assert time.monotonic() < deadline, f"port {port} still ready 10 s after Redis stopped: {body}"
            time.sleep(0.25)
        assert body["status"] == "unavailable"
        assert body["checks"]["redis"]["ok"] is False, body
        assert body["checks"]["redis"].get("error"), body
    # Still serving: a socket send is stored and echoed (the echo is the acknowledgement),
    # and a REST post answers 201 (stored).
    text = marker("during-outage-ws")
    alice_room.send_json({"sender": alice["id"], "receiver": bob["id"], "content": text})
    echo = recv_until(alice_room, lambda f: f.get("content") == text, WAIT)
    acknowledged.append(echo["id"])
    for n in range(3):
        status, body = post_message(stack, http_port, alice, bob["id"], marker(f"during-outage-http-{n}"))
        assert status == 201, body
        acknowledged.append(body["data"]["id"])

    stack.compose("start", "redis", timeout=60)
    recovered_in = stack.wait_ready(timeout=60)
    assert recovered_in < 60

    # Live delivery across the two containers resumes on the sockets opened before the
    # outage, with no manual step (layer messages are at-most-once: retry until one lands).
    deadline = time.monotonic() + 30
    while True:
        text = marker("after-outage")
        status, body = post_message(stack, http_port, alice, bob["id"], text)
        assert status == 201, body
        acknowledged.append(body["data"]["id"])
        try:
            recv_until(bob_room, lambda f, text=text: f.get("content") == text, 3)
            break
        except Timeout:
            assert time.monotonic() < deadline, f"no delivery through Redis 30 s after it came back\n{stack.logs()}"
    states = stack.service_states()
    for service in ("redis", "postgres", "backend-ws", "backend-http"):
        assert states[service][0] == "running", states

    stored = set(thread_ids(stack.http_url(http_port), bob["access"], alice["id"]))
    assert set(acknowledged) <= stored, set(acknowledged) - stored


def test_a_backend_that_exits_is_restarted_by_docker(stack, accounts):
    container = stack.container_id("backend-http")
    restarts = int(run(["docker", "inspect", "--format", "{{.RestartCount}}", container]).stdout)
    # SIGTERM to the server (PID 1): uvicorn shuts down and the process exits.
    stack.compose("exec", "-T", "backend-http", "python", "-c", "import os, signal; os.kill(1, signal.SIGTERM)")
    deadline = time.monotonic() + 60
    while int(run(["docker", "inspect", "--format", "{{.RestartCount}}", container]).stdout) == restarts:
        assert time.monotonic() < deadline, f"backend-http was not restarted\n{stack.logs()}"
        time.sleep(0.5)
    stack.wait_ready(timeout=60)
    status, body = http_json("GET", f"{stack.http_url(stack.http_port)}/api/users/me/",
                             token=accounts["alice"]["access"])
    assert status == 200, body


def test_down_with_volumes_leaves_nothing_behind(stack):
    assert stack.leftovers().get("volumes"), "the stack should have named volumes before down -v"
    stack.down()
    assert stack.leftovers() == {}


def test_compose_refuses_to_start_without_secret_key(tmp_path):
    if not shutil.which("docker") or run(["docker", "compose", "version"]).returncode != 0:
        services.require("docker", False, "no docker CLI with Compose v2 (run ops/bootstrap-docker.sh)")
    stack = ComposeStack(tmp_path)
    # .env.example copied by hand with the secret left empty.
    stack.env_file.write_text(ENV_EXAMPLE.read_text().replace("\nPOSTGRES_PASSWORD=\n", "\nPOSTGRES_PASSWORD=x\n"))
    result = stack.compose("config", "--quiet", check=False)
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr and ".env.example" in result.stderr, result.stderr
