"""The scaled stack on a real Docker engine (issue 12): `make up BACKENDS=3 MONITORING=1`
on a clean clone brings three backend containers up behind nginx (which owns the WS and
HTTP ports) plus Prometheus, once for the module. The contract tests of the default stack
run again through the proxy; a message crosses the backends; a backend restarted under
traffic loses no acknowledged message; Prometheus scrapes every backend; with Redis
stopped, readiness through the proxy and `make health` name Redis (the on-call checks of
helper branch wt-health: the proxy and each backend); `make down` removes
every profile's containers.

Needs a Docker engine, Compose v2 and the stand-in images (ops/bootstrap-docker.sh);
without them the module skips loudly (fails under REQUIRE_SERVICES=1).
"""

import json
import subprocess
import threading
import time
import urllib.request

import pytest

from habitto_client import ChatError, ChatSocket, inbox_url, room_url
from tests.compose.stack import run, scaled_stack_fixture
from tests.compose import test_compose_stack as default_stack
from tests.compose.test_compose_stack import WAIT, accounts, post_message, sockets  # noqa: F401 - fixtures
from tests.ops.conftest import compose_oncall_env, fab
from tests.ops.test_out_of_the_box import make_health
from tests.support.chat import check_inbox_frame, check_room_frame, marker, recv_until, thread_ids, wait_for
from tests.support.live import http_json

pytestmark = [pytest.mark.docker, pytest.mark.slow]

BACKENDS = 3

stack = scaled_stack_fixture(BACKENDS)


def container_health(container):
    return run(["docker", "inspect", "--format", "{{.State.Status}} {{.State.Health.Status}}", container]).stdout.split()


def metrics_text(port):
    """One backend's /metrics, read directly over loopback (allowed without a token)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


def sockets_open(port):
    """habitto_chat_sockets_open summed over kinds and protocols, on one backend."""
    text = metrics_text(port)
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("habitto_chat_sockets_open{"))


# --- the layout ------------------------------------------------------------------------


def test_three_backends_behind_nginx_each_on_its_own_port(stack):
    states = stack.service_states()
    assert "backend-ws" not in states and "backend-http" not in states, states
    assert states["proxy"][:2] == ("running", "healthy"), states
    assert states["prometheus"][0] == "running", states
    replicas = stack.replica_containers()
    assert sorted(replicas) == stack.replica_ports, replicas  # one port each, exactly the range
    for port, container in replicas.items():
        assert container_health(container) == ["running", "healthy"], (port, stack.logs())
        status, body = stack.readyz(port)
        assert status == 200, body
    # The proxy owns the app's two ports and passes /readyz to the backends.
    for port in (stack.ws_port, stack.http_port):
        status, body = stack.readyz(port)
        assert status == 200 and set(body["checks"]) == {"database", "channel_layer", "redis"}, body
        # Metrics are scraped from each backend directly, never through the public proxy.
        assert http_json("GET", f"{stack.http_url(port)}/metrics")[0] == 404
    for port in stack.replica_ports:
        assert "habitto_chat_messages_stored_total" in metrics_text(port)


# The default stack's contract tests, again, through the proxy (stack.http_port and
# stack.ws_port are its ports here).
test_contract_registration_and_login_through_the_proxy = default_stack.test_registration_and_login_over_http
test_contract_room_message_through_the_proxy = default_stack.test_room_socket_message_reaches_the_other_users_room_and_inbox
test_contract_http_post_reaches_sockets_through_the_proxy = \
    default_stack.test_http_post_on_the_http_port_reaches_sockets_on_the_ws_port


def test_message_posted_through_one_backend_reaches_sockets_on_the_others(stack, accounts, sockets):
    alice, bob = accounts["alice"], accounts["bob"]
    first, second, third = stack.replica_ports
    bob_room = sockets(room_url(stack.ws_url(second), alice["id"], bob["id"], bob["access"]))
    bob_inbox = sockets(inbox_url(stack.ws_url(third), bob["id"], bob["access"]))
    alice_room = sockets(room_url(stack.ws_url(third), alice["id"], bob["id"], alice["access"]))
    text = marker("across-backends")
    status, body = post_message(stack, first, alice, bob["id"], text)
    assert status == 201, body
    for sock in (bob_room, alice_room):
        frame = recv_until(sock, lambda f: f.get("content") == text, WAIT)
        assert check_room_frame(frame, alice["id"], bob["id"], text)["id"] == body["data"]["id"]
    frame = recv_until(bob_inbox, lambda f: f.get("content") == text, WAIT)
    check_inbox_frame(frame, bob["id"], alice["id"], bob["id"], text)

    # And a socket send on one backend reaches the room socket held on another.
    text = marker("socket-across")
    alice_room.send_message(alice["id"], bob["id"], text)
    echo = recv_until(alice_room, lambda f: f.get("content") == text, WAIT)
    assert recv_until(bob_room, lambda f: f.get("content") == text, WAIT)["id"] == echo["id"]


def test_prometheus_scrapes_every_backend_and_loads_the_rules(stack):
    wanted = {f"127.0.0.1:{port}" for port in stack.replica_ports}

    def targets_up():
        status, body = http_json("GET", f"{stack.prometheus_url}/api/v1/targets", timeout=5)
        if status != 200:
            return None
        active = body["data"]["activeTargets"]
        found = {t["labels"]["instance"]: t["health"] for t in active if t["labels"]["job"] == "habitto-chat"}
        return found if found == dict.fromkeys(wanted, "up") else None

    wait_for(targets_up, 60, interval=1, what="Prometheus scraping every backend (up)")
    status, body = http_json("GET", f"{stack.prometheus_url}/api/v1/rules", timeout=5)
    assert status == 200, body
    names = {rule.get("name") for group in body["data"]["groups"] for rule in group["rules"]}
    assert {"HabittoBackendDown", "HabittoCommitSlow", "HabittoServerErrors", "HabittoChannelLayerFailing",
            "habitto:batch_commit_seconds:p99_5m"} <= names, names
    assert all(group["rules"][0]["health"] == "ok" for group in body["data"]["groups"]), body


# --- a backend restarted under traffic --------------------------------------------------


class Traffic:
    """Alice sends to Bob through the proxy until stopped: REST posts (acknowledged by a 201)
    and room-socket sends on several sockets (acknowledged by the echo), reconnecting through
    the proxy whenever a socket closes. Only acknowledged message ids are recorded."""

    def __init__(self, stack, alice, bob, socket_clients=6):
        self.stack, self.alice, self.bob = stack, alice, bob
        self.acknowledged, self.reconnects, self.failures = [], 0, []
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.threads = [threading.Thread(target=self.post_loop, daemon=True)]
        self.threads += [threading.Thread(target=self.socket_loop, args=(n,), daemon=True)
                         for n in range(socket_clients)]
        self.connected = threading.Barrier(socket_clients + 1)

    def ack(self, message_id):
        with self.lock:
            self.acknowledged.append(message_id)

    def post_loop(self):
        n = 0
        while not self.stopped.is_set():
            n += 1
            try:
                status, body = post_message(self.stack, self.stack.http_port, self.alice, self.bob["id"],
                                            marker(f"restart-http-{n}"))
            except OSError as exc:  # a refused or dropped request is simply not acknowledged
                self.failures.append(repr(exc))
                continue
            if status == 201:
                self.ack(body["data"]["id"])
            time.sleep(0.02)

    def socket_loop(self, index):
        url = room_url(self.stack.ws_url(self.stack.ws_port), self.alice["id"], self.bob["id"], self.alice["access"])
        sock, first = None, True
        while not self.stopped.is_set():
            try:
                if sock is None:
                    sock = ChatSocket.open(url, timeout=5)
                    if first:
                        first = False
                        self.connected.wait(30)
                text = marker(f"restart-ws-{index}")
                sock.send_message(self.alice["id"], self.bob["id"], text)
                echo = recv_until(sock, lambda f, text=text: f.get("content") == text, 5)
                self.ack(echo["id"])
                time.sleep(0.05)
            except (ChatError, OSError) as exc:  # closed by the restart: reconnect through the proxy
                self.failures.append(repr(exc))
                if sock is not None:
                    sock.close()
                    sock = None
                    with self.lock:
                        self.reconnects += 1
                time.sleep(0.2)
        if sock is not None:
            sock.close()

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        self.connected.wait(30)
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        for thread in self.threads:
            thread.join(30)


def test_restarting_one_backend_under_traffic_loses_no_acknowledged_message(stack, accounts):
    alice, bob = accounts["alice"], accounts["bob"]
    replicas = stack.replica_containers()
    with Traffic(stack, alice, bob) as traffic:
        time.sleep(2)
        # The backend holding room sockets (least_conn spread them): its clients must reconnect.
        port = max(stack.replica_ports, key=sockets_open)
        assert sockets_open(port) > 0
        before_restart = len(traffic.acknowledged)
        restarted = run(["docker", "restart", "--time", "15", replicas[port]], timeout=120)
        assert restarted.returncode == 0, restarted.stderr
        wait_for(lambda: container_health(replicas[port]) == ["running", "healthy"], 90, interval=0.5,
                 what=f"backend on {port} healthy again")
        time.sleep(3)  # traffic goes on across all three again
    assert before_restart > 0 and len(traffic.acknowledged) > before_restart + 20, traffic.failures[-10:]
    assert traffic.reconnects >= 1, "no socket was on the restarted backend"
    # The restarted replica took its port back; all three serve.
    assert stack.replica_containers() == replicas
    acknowledged = traffic.acknowledged
    assert len(set(acknowledged)) == len(acknowledged)
    stored = set(thread_ids(stack.http_url(stack.http_port), bob["access"], alice["id"]))
    missing = set(acknowledged) - stored
    assert not missing, f"{len(missing)} acknowledged messages not stored: {sorted(missing)[:20]}"


# --- Redis stopped under the scaled stack ---------------------------------------------------


@pytest.fixture(scope="module")
def oncall_env(stack, tmp_path_factory):
    return compose_oncall_env(stack, tmp_path_factory.mktemp("scaled-oncall"), "backend",
                              ONCALL_BACKEND_PORT_BASE=stack.ports["BACKEND_PORT_BASE"])


def test_health_of_the_scaled_stack_checks_the_proxy_and_each_backend(stack, oncall_env):
    """`fab health` finds the three replicas itself (Compose service `backend`, ports from
    BACKEND_PORT_BASE): the proxy's ports and every backend, readiness and metrics, all OK."""
    run = fab("health", "--json", env=oncall_env)
    assert run.code == 0, run
    checks = run.checks()
    for port in stack.replica_ports:
        assert checks[f"backend:127.0.0.1:{port}"]["status"] == "OK", checks
        assert checks[f"metrics:127.0.0.1:{port}"]["status"] == "OK", checks
    assert str(stack.http_port) in checks["port-http"]["text"]
    assert run.seconds < 10, run


def test_redis_stopped_readiness_through_the_proxy_and_make_health_name_redis(stack, oncall_env):
    stack.compose("stop", "--timeout", "5", "redis", timeout=60)
    try:
        for port in (stack.http_port, *stack.replica_ports):
            status, body = wait_for(lambda port=port: (lambda r: r if r[0] == 503 else None)(stack.readyz(port)),
                                    10, what=f"/readyz 503 on {port}")
            assert body["checks"]["redis"]["ok"] is False, body
        # `make health BACKENDS=3` as docs/oncall.md says, against the proxy's ports.
        done, seconds = make_health({**oncall_env, "BACKENDS": BACKENDS, "ONCALL_ARGS": "--json",
                                     "BACKEND_PORT_BASE": stack.ports["BACKEND_PORT_BASE"]})
        assert seconds < 15, (seconds, done.stdout)
        report = json.loads(done.stdout[done.stdout.index("{"):])
        assert report["status"] == "CRITICAL", report
        checks = {r["check"]: r for r in report["hosts"][0]["results"]}
        assert checks["redis"]["status"] == "CRITICAL" and "unreachable" in checks["redis"]["text"], checks["redis"]
        assert "redis" in checks["readiness"]["text"], checks["readiness"]  # through the proxy
        for port in stack.replica_ports:  # and on each backend
            backend = checks[f"backend:127.0.0.1:{port}"]
            assert backend["status"] == "CRITICAL" and "redis" in backend["text"], backend
    finally:
        stack.compose("start", "redis", timeout=60)
    for port in (stack.http_port, *stack.replica_ports):
        wait_for(lambda port=port: stack.readyz(port)[0] == 200, 60, what=f"/readyz 200 on {port} after Redis")


def test_make_down_removes_every_profiles_containers(stack):
    result = subprocess.run(["make", "down"], cwd=stack.repo_dir, env=stack.env, capture_output=True, text=True,
                            timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    left = stack.leftovers()
    assert "containers" not in left, left
    assert left.get("volumes"), "make down keeps the data volumes"
    stack.down()
    assert stack.leftovers() == {}
