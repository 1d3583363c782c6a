"""habitto_client: URL building, JWT claims, error mapping and timeouts against stub servers,
then the real protocol against a server process (tests/support/live.py)."""

import base64
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from websockets.sync.server import serve as ws_serve

from habitto_client import (
    AppHTTP,
    AuthError,
    ChatHTTP,
    ChatSocket,
    ConnectError,
    HandshakeRejected,
    HTTPStatusError,
    ProtocolError,
    ServerRejected,
    Session,
    SocketClosed,
    Timeout,
    inbox_url,
    jwt_claims,
    jwt_user_id,
    read_inbox_frame,
    read_room_frame,
    room_frame,
    notifications_url,
    room_url,
    route_name,
    ws_url_for,
)
from tests.support.live import free_port, server_with_users


def make_jwt(claims):
    def b64(raw):
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    return f"{header}.{b64(json.dumps(claims).encode())}.{b64(b'not-a-signature')}"


# -- pure helpers --------------------------------------------------------------------------

def test_room_url_orders_ids_numerically():
    """9 and 10 give 9-10, whichever way round (numeric, not string order)."""
    assert room_url("ws://h:1", 10, 9, "t") == "ws://h:1/ws/chat/9-10/?token=t"
    assert room_url("ws://h:1/", 9, 10) == "ws://h:1/ws/chat/9-10/"


def test_inbox_url_and_alias_and_token_is_quoted():
    """The inbox path and its older alias; the token is URL-encoded."""
    assert inbox_url("ws://h", 7, "a+b/c") == "ws://h/ws/chat/inbox/7/?token=a%2Bb%2Fc"
    assert inbox_url("ws://h", 7, alias=True) == "ws://h/ws/notifications/7/"


def test_notification_socket_urls_and_route_names():
    """The app's notification sockets; a call's row name is its path and parameter names."""
    assert notifications_url("ws://h/", "property", 7, "t") == "ws://h/ws/property-notifications/7/?token=t"
    assert notifications_url("ws://h", "tenant", 7) == "ws://h/ws/tenant-notifications/7/"
    with pytest.raises(ValueError):
        notifications_url("ws://h", "chat", 7)
    thread = route_name("/api/messages/thread/", {"other_user_id": 3, "page": 1})
    assert thread == "/api/messages/thread/?other_user_id&page"
    assert route_name("/api/users/") == "/api/users/"


def test_ws_url_for_maps_http_schemes_and_keeps_the_rest():
    """One server port answers both: http -> ws, https -> wss; other URLs are left as they are."""
    assert ws_url_for("http://h:8001") == "ws://h:8001"
    assert ws_url_for("https://chat.example/") == "wss://chat.example/"
    assert ws_url_for("ws://h:8000") == "ws://h:8000"
    assert ws_url_for("httpbin") == "httpbin"
    assert ws_url_for("") == ""


def test_jwt_claims_decoded_without_verification():
    """user_id and exp are read from the payload, padding restored."""
    token = make_jwt({"user_id": 42, "exp": 1999999999, "x": "é"})
    assert jwt_claims(token)["exp"] == 1999999999
    assert jwt_user_id(token) == 42
    with pytest.raises(ProtocolError):
        jwt_user_id("garbage")
    with pytest.raises(ProtocolError):
        jwt_user_id(make_jwt({"sub": "x"}))


def test_frame_readers():
    """Room and inbox frames parse; an error frame raises ServerRejected; junk is a ProtocolError."""
    assert room_frame("1", 2, "x") == {"sender": 1, "receiver": 2, "content": "x"}
    msg = read_room_frame({"id": 5, "sender": 1, "receiver": 2, "content": "x", "created_at": "t"})
    assert (msg.id, msg.sender, msg.receiver, msg.client_id) == (5, 1, 2, None)
    with pytest.raises(ServerRejected) as info:
        read_room_frame({"error": "Too fast.", "code": "rate_limited"})
    assert info.value.code == "rate_limited"
    with pytest.raises(ProtocolError):
        read_room_frame({"sender": 1})
    frame = read_inbox_frame({"message_id": 5, "sender": 1, "receiver": 2, "content": "x",
                              "created_at": "t", "counterpart_id": 2})
    assert (frame.message_id, frame.counterpart_id, frame.counterpart_full_name) == (5, 2, None)


# -- timeouts and refusals -------------------------------------------------------------------

@pytest.fixture
def silent_port():
    """A port that accepts TCP connections (kernel backlog) but never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock.getsockname()[1]
    sock.close()


def test_http_timeout_against_silent_port(silent_port):
    """An accepted-but-silent port costs the timeout, then Timeout."""
    api = ChatHTTP(f"http://127.0.0.1:{silent_port}", timeout=0.4)
    started = time.monotonic()
    with pytest.raises(Timeout):
        api.healthz()
    assert time.monotonic() - started < 2.5


def test_ws_handshake_timeout_against_silent_port(silent_port):
    """The WebSocket handshake has its own timeout too."""
    started = time.monotonic()
    with pytest.raises(Timeout):
        ChatSocket.open(f"ws://127.0.0.1:{silent_port}/ws/chat/1-2/", timeout=0.4)
    assert time.monotonic() - started < 2.5


def test_refused_port_is_connect_error():
    """Nothing listening: ConnectError, both for HTTP and WebSocket."""
    port = free_port()
    with pytest.raises(ConnectError):
        ChatHTTP(f"http://127.0.0.1:{port}", timeout=1).readyz()
    with pytest.raises(ConnectError):
        ChatSocket.open(f"ws://127.0.0.1:{port}/", timeout=1)


# -- stub HTTP server ---------------------------------------------------------------------------

class StubHandler(BaseHTTPRequestHandler):
    routes = {}

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.server.seen.append((self.command, self.path, self.headers.get("Authorization"),
                                 json.loads(self.rfile.read(length) or b"null")))
        status, body = self.routes.get((self.command, self.path.split("?")[0]), (404, {"detail": "no"}))
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    do_GET = do_POST = _answer

    def log_message(self, *args):
        pass


@pytest.fixture
def stub_http():
    token = make_jwt({"user_id": 9, "exp": 2000000000})
    StubHandler.routes = {
        ("POST", "/api/login/"): (200, {"success": True, "message": "ok",
                                        "data": {"access": token, "refresh": "r1"}}),
        ("GET", "/readyz"): (503, {"status": "unavailable", "checks": {"database": {"ok": False}}}),
        ("GET", "/api/messages/thread/"): (500, {"success": False, "message": "Boom.", "data": {}}),
        ("POST", "/api/messages/"): (401, {"success": False, "message": "Token expired.", "data": {}}),
    }
    server = ThreadingHTTPServer(("127.0.0.1", 0), StubHandler)
    server.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, ChatHTTP(f"http://127.0.0.1:{server.server_address[1]}", timeout=3)
    server.shutdown()
    server.server_close()


def test_login_reads_user_id_from_the_token(stub_http):
    """Login returns a Session whose user_id is the JWT claim; later calls send Bearer."""
    server, api = stub_http
    session = api.login("alice", "pw")
    assert (session.user_id, session.refresh, session.username) == (9, "r1", "alice")
    assert session.expires_at == 2000000000
    with pytest.raises(AuthError) as info:
        api.send_message(session, 2, "hi")
    assert info.value.status == 401 and "Token expired" in str(info.value)
    method, path, auth, body = server.seen[-1]
    assert (method, path, auth, body) == ("POST", "/api/messages/", f"Bearer {session.access}",
                                          {"receiver": 2, "content": "hi"})


def test_status_errors_and_unenveloped_health(stub_http):
    """A 500 raises HTTPStatusError with the body; readiness 503 is returned, not raised."""
    server, api = stub_http
    session = api.login("alice", "pw")
    with pytest.raises(HTTPStatusError) as info:
        api.thread(session, 3, page_size=5)
    assert info.value.status == 500 and info.value.body["message"] == "Boom."
    assert server.seen[-1][1] == "/api/messages/thread/?other_user_id=3&page_size=5"
    ready = api.readyz()
    assert ready.status == 503 and ready.body["checks"]["database"]["ok"] is False
    with pytest.raises(AuthError):
        StubHandler.routes[("POST", "/api/login/")] = (400, {"success": False, "message": "No."})
        api.login("alice", "wrong")


# -- stub WebSocket server ----------------------------------------------------------------------

@pytest.fixture
def stub_ws():
    """A websockets server whose behaviour depends on the path."""

    def handler(conn):
        path = conn.request.path
        if path.startswith("/close4401"):
            conn.send(json.dumps({"hello": 1}))
            conn.close(4401, "expired")
        elif path.startswith("/echo"):
            for raw in conn:
                conn.send(raw)
        elif path.startswith("/text"):
            conn.send("not json")
            conn.recv()
        else:  # silent
            try:
                conn.recv(timeout=5)
            except Exception:
                pass

    def process_request(conn, request):
        if request.path.startswith("/forbidden"):
            return conn.respond(403, "Forbidden\n")
        return None

    server = ws_serve(handler, "127.0.0.1", 0, process_request=process_request)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}"
    server.shutdown()


def test_ws_recv_timeout_then_still_usable(stub_ws):
    """A receive timeout raises Timeout and leaves the socket open."""
    with ChatSocket.open(stub_ws + "/echo", timeout=2) as sock:
        with pytest.raises(Timeout):
            sock.recv_json(timeout=0.2)
        sock.send_json({"a": 1})
        assert sock.recv_json(timeout=2) == {"a": 1}
        assert not sock.closed


def test_ws_close_code_is_readable(stub_ws):
    """Frames before the close arrive; then SocketClosed carries 4401, also on close_code."""
    sock = ChatSocket.open(stub_ws + "/close4401?token=secret", timeout=2)
    assert sock.recv_json(2) == {"hello": 1}
    with pytest.raises(SocketClosed) as info:
        sock.recv_json(2)
    assert info.value.code == 4401 and sock.close_code == 4401 and sock.closed
    assert "secret" not in repr(sock)
    sock2 = ChatSocket.open(stub_ws + "/close4401", timeout=2)
    assert sock2.wait_closed(2) == 4401


def test_ws_handshake_refused_and_non_json(stub_ws):
    """An HTTP answer to the upgrade is HandshakeRejected; a text frame that is not JSON is a ProtocolError."""
    with pytest.raises(HandshakeRejected) as info:
        ChatSocket.open(stub_ws + "/forbidden", timeout=2)
    assert info.value.status == 403
    with ChatSocket.open(stub_ws + "/text", timeout=2) as sock:
        with pytest.raises(ProtocolError):
            sock.recv_json(2)
    with ChatSocket.open(stub_ws + "/silent", timeout=2) as sock:
        with pytest.raises(Timeout):
            sock.wait_closed(0.3)


# -- against a real server process -------------------------------------------------------------

PASSWORD = "Client-test-Passw0rd"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """A real server (HTTP and WebSocket on two ports) with four provisioned users."""
    with server_with_users(tmp_path_factory.mktemp("client-live"), 4, "client", PASSWORD) as server:
        yield server


@pytest.mark.e2e
def test_live_login_rest_and_health(live):
    """Login reads user_id from the real token; send, thread, clear and health work end to end."""
    api = ChatHTTP(live.http_url(live.ports[1]), timeout=10)
    a, b = live.users[0], live.users[1]
    alice = api.login(a["username"], PASSWORD)
    bob = api.login(b["username"], PASSWORD)
    assert (alice.user_id, bob.user_id) == (a["id"], b["id"])
    message = api.send_message(alice, bob.user_id, "hello over REST")
    assert (message["sender"], message["receiver"]) == (alice.user_id, bob.user_id)
    page = api.thread(bob, alice.user_id, page_size=10)
    assert page["results"][0]["content"] == "hello over REST"
    api.clear_conversation(bob, alice.user_id)
    assert api.thread(bob, alice.user_id)["count"] == 0
    assert api.thread(alice, bob.user_id)["count"] == 1
    assert api.healthz().status == 200
    ready = api.readyz()
    assert ready.status == 200 and ready.body["checks"]["database"]["ok"] is True
    with pytest.raises(AuthError):
        api.login(a["username"], "wrong-password")
    with pytest.raises(AuthError):
        api.thread(Session("x.y.z", alice.refresh, alice.user_id), bob.user_id)


@pytest.mark.e2e
def test_live_app_http_refreshes_on_401_and_retries_like_the_app(live):
    """AppHTTP (api_service.dart): a 401 -> POST /api/refresh/ -> the same call again; a refresh
    that fails tries /api/token/refresh/ and clears the tokens; after three failed refreshes
    in a row a 401 is passed on without trying."""
    seen = []
    api = AppHTTP(live.http_url(live.ports[1]), timeout=10,
                  observer=lambda method, route, resp, seconds, error: seen.append((method, route, resp.status)))
    account = live.users[2]
    first = api.login(account["username"], PASSWORD)
    api.session = Session("x.y.z", first.refresh, first.user_id)  # the stored access token no longer works
    assert api.me(api.session)["id"] == account["id"]
    assert seen[1:] == [("GET", "/api/users/me/", 401), ("POST", "/api/refresh/", 200), ("GET", "/api/users/me/", 200)]
    assert api.refreshes == 1 and api.session.refresh != first.refresh  # rotated and stored
    api.session = Session("x.y.z", first.refresh, first.user_id)  # that refresh token is blacklisted now
    seen.clear()
    with pytest.raises(AuthError):
        api.me(api.session)
    assert seen == [("GET", "/api/users/me/", 401), ("POST", "/api/refresh/", 401),
                    ("POST", "/api/token/refresh/", 401)]
    assert api.session is None and api.failed_refreshes == 1
    for _ in range(2):
        with pytest.raises(AuthError):
            api.me(None)
    seen.clear()
    with pytest.raises(AuthError):
        api.me(None)
    assert seen == [("GET", "/api/users/me/", 401)] and api.failed_refreshes == 3


@pytest.mark.e2e
def test_live_room_and_inbox_sockets(live):
    """A room frame comes back as the echo, reaches the partner's room and both inboxes."""
    api = ChatHTTP(live.http_url(live.ports[1]), timeout=10)
    ws = live.ws_url(live.ports[0])
    a, b = (api.login(u["username"], PASSWORD) for u in live.users[2:4])
    with ChatSocket.open(room_url(ws, a.user_id, b.user_id, a.access), timeout=5) as room_a, \
            ChatSocket.open(room_url(ws, b.user_id, a.user_id, b.access), timeout=5) as room_b, \
            ChatSocket.open(inbox_url(ws, a.user_id, a.access), timeout=5) as inbox_a, \
            ChatSocket.open(inbox_url(ws, b.user_id, b.access, alias=True), timeout=5) as inbox_b:
        room_a.send_message(a.user_id, b.user_id, "hello over the socket")
        echo = read_room_frame(room_a.recv_json(5))
        assert (echo.sender, echo.receiver, echo.content) == (a.user_id, b.user_id, "hello over the socket")
        assert read_room_frame(room_b.recv_json(5)).id == echo.id
        mine, theirs = read_inbox_frame(inbox_a.recv_json(5)), read_inbox_frame(inbox_b.recv_json(5))
        assert mine.message_id == theirs.message_id == echo.id
        assert (mine.counterpart_id, theirs.counterpart_id) == (b.user_id, a.user_id)
        with pytest.raises(Timeout):
            room_b.recv_json(0.2)  # nothing else: no welcome, no pong


@pytest.mark.e2e
def test_live_close_codes(live):
    """4401 without a valid token, 4403 on someone else's inbox; close_code is readable."""
    api = ChatHTTP(live.http_url(live.ports[1]), timeout=10)
    ws = live.ws_url(live.ports[0])
    a = api.login(live.users[0]["username"], PASSWORD)
    for url, code in [
        (inbox_url(ws, a.user_id), 4401),
        (inbox_url(ws, a.user_id, "not-a-token"), 4401),
        (inbox_url(ws, live.users[1]["id"], a.access), 4403),
    ]:
        sock = ChatSocket.open(url, timeout=5)
        assert sock.wait_closed(5) == code and sock.close_code == code
        with pytest.raises(SocketClosed):
            sock.recv_json(1)
