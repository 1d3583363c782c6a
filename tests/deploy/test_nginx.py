"""The nginx example in deploy/nginx/ works: HTTP and the WebSocket upgrade through nginx
to two real server processes that share PostgreSQL and Redis."""

import json
import time
import urllib.request

import pytest
import websocket

from tests.support.live import LiveServer, free_port, http_json, manage, server_env
from tests.support.nginx import Nginx, nginx_binary

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

@pytest.fixture
def two_servers(tmp_path, postgres_database, redis_url):
    nginx_binary()  # skip before starting anything when there is no nginx
    env = server_env(tmp_path / "state", database_url=postgres_database, redis_url=redis_url)
    manage(env, "migrate", "--noinput")
    users = json.loads(manage(env, "create_loadtest_users", "--count", "2", "--prefix", "nginxe2e",
                              "--password", "Nginx-e2e-pass-1"))
    servers = [LiveServer(env, [free_port()], tmp_path / f"server{i}.log") for i in (1, 2)]
    for server in servers:
        server.start()
    yield servers, users
    for server in servers:
        server.stop()


def _receive(sock, timeout=5):
    sock.settimeout(timeout)
    return json.loads(sock.recv())


def test_nginx_example_proxies_http_and_websockets(tmp_path, two_servers):
    """Login over HTTP and a room message over sockets, all through nginx, across both processes."""
    servers, users = two_servers
    port = free_port()
    nginx = Nginx(tmp_path, [s.ports[0] for s in servers], [port]).start()
    try:
        base = f"http://127.0.0.1:{port}"
        tokens = []
        for user in users:
            status, body = http_json("POST", base + "/api/login/",
                                     {"username": user["username"], "password": user["password"]})
            assert status == 200, body
            tokens.append(body["data"]["access"])
        (a, b), (token_a, token_b) = [u["id"] for u in users], tokens
        low, high = sorted((a, b))
        ws = f"ws://127.0.0.1:{port}"
        # least_conn puts the second socket on the other process: the message crosses Redis.
        room_b = websocket.create_connection(f"{ws}/ws/chat/{low}-{high}/?token={token_b}", timeout=5)
        room_a = websocket.create_connection(f"{ws}/ws/chat/{low}-{high}/?token={token_a}", timeout=5)
        inbox_b = websocket.create_connection(f"{ws}/ws/chat/inbox/{b}/?token={token_b}", timeout=5)
        time.sleep(0.3)  # both processes' hubs subscribed
        room_a.send(json.dumps({"sender": a, "receiver": b, "content": "through nginx"}))
        echo = _receive(room_a)
        assert (echo["sender"], echo["receiver"], echo["content"]) == (a, b, "through nginx")
        assert _receive(room_b)["id"] == echo["id"]
        inbox = _receive(inbox_b)
        assert (inbox["message_id"], inbox["counterpart_id"]) == (echo["id"], a)

        refused = websocket.create_connection(f"{ws}/ws/chat/{low}-{high}/", timeout=5)
        opcode, payload = refused.recv_data(control_frame=True)
        assert opcode == websocket.ABNF.OPCODE_CLOSE
        assert int.from_bytes(payload[:2], "big") == 4401  # the close code survives the proxy
        for sock in (room_a, room_b, inbox_b, refused):
            sock.close()
        # Metrics are for a scraper on each backend, never through the public proxy.
        assert http_json("GET", base + "/metrics")[0] == 404
        with urllib.request.urlopen(f"{servers[0].http_url()}/metrics", timeout=5) as direct:
            assert direct.status == 200
        access_log = (tmp_path / "access.log").read_text()
        assert "/api/login/" in access_log and "token=" not in access_log
    finally:
        nginx.stop()
