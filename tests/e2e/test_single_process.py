"""One server process on two ports (what `make run` does, SQLite, in-memory layer): the
room and inbox flow across the ports, refusals with their close codes, token expiry,
oversized frames, and no token in the log."""

import time
import uuid

import jwt
import pytest

from habitto_client import ChatSocket, inbox_url, room_url
from tests.support.chat import (
    PASSWORD, check_inbox_frame, check_room_frame, drain, login, marker, message_of, provision,
)
from tests.support.live import LiveServer, free_port, http_json, manage, server_env

pytestmark = pytest.mark.e2e

SIGNING_KEY = "e2e-signing-key-" + uuid.uuid4().hex  # lets the test mint short-lived tokens
GRACE = 3  # seconds a legacy socket's token is honoured past its expiry (CHAT_SOCKET_TOKEN_GRACE)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    state = tmp_path_factory.mktemp("e2e-single")
    env = server_env(state, JWT_SIGNING_KEY=SIGNING_KEY, CHAT_SOCKET_TOKEN_GRACE=GRACE)
    manage(env, "migrate", "--noinput")
    users = provision(env, 4, "single")
    live = LiveServer(env, [free_port(), free_port()], state / "server.log")
    with live:
        live.users = users
        live.tokens = [login(live.http_url(), u) for u in users]
        yield live


def open_socket(url, **options):
    return ChatSocket.open(url, timeout=5, **options)


def short_token(user_id, seconds):
    """An access token like simplejwt's, expiring in `seconds`."""
    now = int(time.time())
    claims = {"token_type": "access", "exp": now + seconds, "iat": now, "jti": uuid.uuid4().hex,
              "user_id": str(user_id)}
    return jwt.encode(claims, SIGNING_KEY, algorithm="HS256")


def test_room_and_inbox_flow_across_both_ports(server):
    """Room and inbox sockets on both ports of one process: echo, delivery, inboxes, REST posts."""
    (a, b), (ta, tb) = server.users[:2], server.tokens[:2]
    p1, p2 = server.ports
    room_a = open_socket(room_url(server.ws_url(p1), a["id"], b["id"], ta))
    room_b = open_socket(room_url(server.ws_url(p2), b["id"], a["id"], tb))
    inbox_a = open_socket(inbox_url(server.ws_url(p2), a["id"], ta))
    inbox_b = open_socket(inbox_url(server.ws_url(p1), b["id"], tb, alias=True))
    sockets = [room_a, room_b, inbox_a, inbox_b]
    try:
        text = marker("socket ✓")
        room_a.send_json({"sender": a["id"], "receiver": b["id"], "content": text})
        echo = check_room_frame(room_a.recv_json(), a["id"], b["id"], text)
        assert room_b.recv_json() == echo
        frame_a = check_inbox_frame(inbox_a.recv_json(), a["id"], a["id"], b["id"], text)
        frame_b = check_inbox_frame(inbox_b.recv_json(), b["id"], a["id"], b["id"], text)
        assert frame_a["message_id"] == frame_b["message_id"] == echo["id"]
        assert (frame_a["counterpart_username"], frame_b["counterpart_username"]) == (b["username"], a["username"])

        for port in (p2, p1):
            text = marker(f"rest via {port}")
            status, body = http_json("POST", f"{server.http_url(port)}/api/messages/",
                                     {"receiver": a["id"], "content": text}, token=tb)
            assert status == 201, body
            message = body["data"]
            assert message_of(check_room_frame(room_a.recv_json(), b["id"], a["id"], text)) == message
            assert message_of(room_b.recv_json()) == message
            check_inbox_frame(inbox_a.recv_json(), a["id"], b["id"], a["id"], text)
            check_inbox_frame(inbox_b.recv_json(), b["id"], b["id"], a["id"], text)

        for sock in sockets:
            assert drain(sock, 0.3) == [], "no welcome, no pong, nothing unsolicited"
    finally:
        for sock in sockets:
            sock.close()


def test_token_carriers_over_the_real_server(server):
    """Authorization header and the subprotocol pair (answered with `access_token`) authenticate."""
    (a, b), ta = server.users[:2], server.tokens[0]
    room = room_url(server.ws_url(), a["id"], b["id"])  # no token in the query string
    by_header = open_socket(room, headers={"Authorization": f"Bearer {ta}"})
    by_subprotocol = open_socket(room, subprotocols=["access_token", ta])
    try:
        assert by_subprotocol.subprotocol == "access_token"
        text = marker("carriers")
        by_header.send_json({"sender": a["id"], "receiver": b["id"], "content": text})
        echo = check_room_frame(by_header.recv_json(), a["id"], b["id"], text)
        assert by_subprotocol.recv_json() == echo
    finally:
        by_header.close()
        by_subprotocol.close()


def test_refusals_carry_their_close_codes(server):
    """Every refusal over the real server closes with its code (4401, 4403, 4404)."""
    (a, b, c), (ta, tb, tc) = server.users[:3], server.tokens[:3]
    expired = short_token(a["id"], -5)
    ws = server.ws_url(server.ports[1])
    cases = [
        (room_url(ws, a["id"], b["id"]), {}, 4401),
        (room_url(ws, a["id"], b["id"], "not-a-token"), {}, 4401),
        (room_url(ws, a["id"], b["id"], expired), {}, 4401),
        (inbox_url(ws, a["id"], jwt.encode({"user_id": a["id"]}, "another-key-" + SIGNING_KEY)), {}, 4401),
        (room_url(ws, a["id"], b["id"], tc), {}, 4403),
        (inbox_url(ws, b["id"], ta), {}, 4403),
        (inbox_url(ws, a["id"], ta), {"origin": "https://evil.example"}, 4403),
        (f"{ws}/ws/nothing/?token={ta}", {}, 4404),
        (room_url(ws, a["id"], 10**9, ta), {}, 4404),
        (f"{ws}/ws/chat/{a['id']}-{a['id']}/?token={ta}", {}, 4404),
    ]
    for url, options, code in cases:
        sock = open_socket(url, **options)
        try:
            assert sock.wait_closed(5) == code, sock
        finally:
            sock.close()


def test_token_expiry_legacy_grace_and_protocol_2(server):
    """A token expiring in 1 s: the legacy room socket works past its expiry and closes
    with 4401 when the grace ends; the protocol-2 socket closes at the expiry itself."""
    a, b = server.users[:2]
    started = time.monotonic()  # before minting: the token's deadlines come after started + 1 s, + GRACE
    token = short_token(a["id"], 1)
    url = room_url(server.ws_url(server.ports[0]), a["id"], b["id"], token)
    legacy, strict = open_socket(url), open_socket(url + "&protocol=2")
    try:
        assert strict.wait_closed(3) == 4401
        time.sleep(max(0.0, started + 1.5 - time.monotonic()))  # past the token's expiry
        text = marker("after expiry, within the grace")
        legacy.send_json({"sender": a["id"], "receiver": b["id"], "content": text})
        check_room_frame(legacy.recv_json(), a["id"], b["id"], text)
        assert legacy.wait_closed(GRACE + 3) == 4401
        assert time.monotonic() - started >= GRACE
    finally:
        legacy.close()
        strict.close()


def test_socket_opened_with_a_recently_expired_token(server):
    """The app's stored token expired a moment ago: the legacy socket opens and works;
    protocol 2 refuses it; beyond the grace both refuse."""
    a, b = server.users[:2]
    expired = short_token(a["id"], -1)
    url = room_url(server.ws_url(server.ports[0]), a["id"], b["id"], expired)
    sock = open_socket(url)
    try:
        text = marker("opened expired")
        sock.send_json({"sender": a["id"], "receiver": b["id"], "content": text})
        check_room_frame(sock.recv_json(), a["id"], b["id"], text)
    finally:
        sock.close()
    stale = room_url(server.ws_url(server.ports[0]), a["id"], b["id"], short_token(a["id"], -GRACE - 2))
    for refused in (url + "&protocol=2", stale):
        sock = open_socket(refused)
        try:
            assert sock.wait_closed(3) == 4401
        finally:
            sock.close()


def test_bad_input_over_the_real_server(server):
    """Bad input gets error frames on a usable socket; an oversized frame closes it with 1009; nothing stored."""
    (a, b), (ta, tb) = server.users[2:4], server.tokens[2:4]
    sock = open_socket(room_url(server.ws_url(server.ports[0]), a["id"], b["id"], ta))
    try:
        for text, code in [("{oops", "invalid_json"), ("[]", "invalid_frame"),
                           ('{"sender": true, "receiver": 1, "content": "x"}', "invalid_frame")]:
            sock.send_text(text)
            frame = sock.recv_json()
            assert set(frame) == {"error", "code"} and frame["code"] == code
        sock.send_binary(b'{"sender": 1}')
        assert sock.recv_json()["code"] == "binary_frame"
        text = marker("still usable")
        sock.send_json({"sender": a["id"], "receiver": b["id"], "content": text})
        check_room_frame(sock.recv_json(), a["id"], b["id"], text)

        huge = {"sender": a["id"], "receiver": b["id"], "content": "h" * 70_000}
        sock.send_json(huge)
        assert sock.wait_closed(5) == 1009
    finally:
        sock.close()
    status, body = http_json("GET", f"{server.http_url()}/api/messages/thread/?other_user_id={b['id']}&page_size=100",
                             token=ta)
    assert status == 200
    assert [m["content"] for m in body["data"]["results"]] == [text]


def test_logout_revokes_the_token_for_sockets(server):
    """After POST /api/logout/, the same access token opens no socket (4401)."""
    user = server.users[3]
    status, body = http_json("POST", f"{server.http_url()}/api/login/",
                             {"username": user["username"], "password": PASSWORD})
    assert status == 200, body
    access, refresh = body["data"]["access"], body["data"]["refresh"]
    sock = open_socket(inbox_url(server.ws_url(server.ports[0]), user["id"], access))
    assert drain(sock, 0.3) == []  # accepted while the token is valid
    sock.close()
    status, body = http_json("POST", f"{server.http_url()}/api/logout/", {"refresh": refresh}, token=access)
    assert status in (200, 204, 205), body
    sock = open_socket(inbox_url(server.ws_url(server.ports[1]), user["id"], access))
    try:
        assert sock.wait_closed(5) == 4401
    finally:
        sock.close()


def test_tokens_never_reach_the_log(server):
    """Access-log lines show `token=[redacted]`; no JWT (`eyJ...`) and no message text appear in the log."""
    (a, b), ta = server.users[:2], server.tokens[0]
    sock = open_socket(room_url(server.ws_url(server.ports[1]), a["id"], b["id"], ta))
    secret = marker("private words")
    sock.send_json({"sender": a["id"], "receiver": b["id"], "content": secret})
    check_room_frame(sock.recv_json(), a["id"], b["id"], secret)
    sock.close()
    status, _ = http_json("GET", f"{server.http_url()}/healthz?token={ta}")
    assert status == 200
    time.sleep(0.5)  # let the server flush its log lines
    log = server.log_path.read_text(errors="replace")
    assert "token=[redacted]" in log
    assert "eyJ" not in log
    assert secret not in log and "private words" not in log
