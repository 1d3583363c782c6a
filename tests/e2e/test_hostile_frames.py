"""Issue 11's socket reproductions against a real server process (`python -m
habitto_server.serve`, SQLite, in-memory layer): 10,000 `[` in a frame, 25 times, then
the same user still connects; lone surrogates from one user while another sends 20
messages. The live-server log check (tests/conftest.py) fails these tests if the server
logs a traceback ("Exception in ASGI application" included)."""

import threading

import pytest

from habitto_client import ChatSocket, room_url
from tests.support.chat import check_room_frame, drain, login, marker, provision, thread_ids
from tests.support.live import LiveServer, free_port, manage, server_env

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    state = tmp_path_factory.mktemp("e2e-hostile")
    # Few sockets per user: leftover registrations would show as 4429 within a few rounds.
    env = server_env(state, CHAT_MAX_SOCKETS_PER_USER=3)
    manage(env, "migrate", "--noinput")
    users = provision(env, 3, "hostile")
    with LiveServer(env, [free_port()], state / "server.log") as live:
        live.users = users
        live.tokens = [login(live.http_url(), u) for u in users]
        yield live


def test_deeply_nested_frames_25_times_then_the_user_connects(server):
    (a, b), token = server.users[:2], server.tokens[0]
    url = room_url(server.ws_url(), a["id"], b["id"], token)
    bomb = "[" * 10_000
    for attempt in range(25):
        sock = ChatSocket.open(url, timeout=5)
        try:
            sock.send_text(bomb)
            frame = sock.recv_json()
            assert frame["code"] == "json_too_deep", frame
        finally:
            if attempt % 2:
                sock.abort()  # gone without a close handshake
            else:
                sock.close()
    with ChatSocket.open(url, timeout=5) as sock:
        text = marker("after the bombs")
        sock.send_message(a["id"], b["id"], text)
        check_room_frame(sock.recv_json(), a["id"], b["id"], text)


def test_lone_surrogates_from_one_user_cost_another_user_nothing(server):
    """The issue's numbers: one user sends "x\\ud800" (escaped in the JSON text) while
    another sends 20 messages at the same moment: all 20 echoed and stored."""
    (a, b, c), (ta, tb, _) = server.users, server.tokens
    poison_url = room_url(server.ws_url(), a["id"], c["id"], ta)
    texts = [marker(f"normal {n}") for n in range(20)]
    poison_errors = []

    def poison():
        with ChatSocket.open(poison_url, timeout=5) as sock:
            for _ in range(20):
                sock.send_text('{"sender": %d, "receiver": %d, "content": "x\\ud800"}' % (a["id"], c["id"]))
            poison_errors.extend(frame["code"] for frame in drain(sock, quiet=0.5))

    with ChatSocket.open(room_url(server.ws_url(), b["id"], c["id"], tb), timeout=5) as sock:
        attacker = threading.Thread(target=poison)
        attacker.start()
        for text in texts:
            sock.send_message(b["id"], c["id"], text)
        echoes = [sock.recv_json()["content"] for _ in texts]
        attacker.join(15)
    assert echoes == texts
    assert poison_errors == ["invalid_content"] * 20
    assert len(thread_ids(server.http_url(), tb, c["id"])) == 20
    assert thread_ids(server.http_url(), ta, c["id"]) == []
