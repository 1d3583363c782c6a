"""Two server processes, one port each, sharing PostgreSQL and Redis (a deployment's
layout): events cross between them live, in both directions."""

import pytest

from habitto_client import ChatSocket, inbox_url, room_url
from tests.support.chat import (
    check_inbox_frame,
    check_room_frame,
    drain,
    login,
    marker,
    message_of,
    recv_until,
    two_servers,
)
from tests.support.live import http_json, manage

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture
def servers(tmp_path, postgres_database, redis_url):
    with two_servers(tmp_path, postgres_database, redis_url, "pair") as (env, first, second, users):
        yield first, second, users


def test_http_post_on_one_process_reaches_sockets_on_the_other(servers):
    """HTTP on process 1 reaches room and inbox sockets on process 2 live, and a socket send comes back."""
    first, second, (a, b) = servers
    ta, tb = login(first.http_url(), a), login(second.http_url(), b)
    ws2 = second.ws_url()
    room_a2 = ChatSocket.open(room_url(ws2, a["id"], b["id"], ta))
    room_b2 = ChatSocket.open(room_url(ws2, a["id"], b["id"], tb))
    inbox_a2 = ChatSocket.open(inbox_url(ws2, a["id"], ta))
    inbox_b2 = ChatSocket.open(inbox_url(ws2, b["id"], tb, alias=True))
    room_a1 = ChatSocket.open(room_url(first.ws_url(), a["id"], b["id"], ta))
    inbox_b1 = ChatSocket.open(inbox_url(first.ws_url(), b["id"], tb))
    sockets = [room_a2, room_b2, inbox_a2, inbox_b2, room_a1, inbox_b1]
    try:
        text = marker("over HTTP to process 1")
        status, body = http_json("POST", f"{first.http_url()}/api/messages/",
                                 {"receiver": b["id"], "content": text}, token=ta)
        assert status == 201, body
        message = body["data"]
        same = lambda frame: frame.get("content") == text  # noqa: E731 (a shared Redis may carry others' events)
        for sock in (room_a2, room_b2, room_a1):
            assert message_of(check_room_frame(recv_until(sock, same, 5), a["id"], b["id"], text)) == message
        check_inbox_frame(recv_until(inbox_a2, same, 5), a["id"], a["id"], b["id"], text)
        for sock in (inbox_b2, inbox_b1):
            frame = check_inbox_frame(recv_until(sock, same, 5), b["id"], a["id"], b["id"], text)
            assert frame["message_id"] == message["id"] and frame["counterpart_username"] == a["username"]

        text = marker("socket on process 2")
        same = lambda frame: frame.get("content") == text  # noqa: E731
        room_b2.send_json({"sender": b["id"], "receiver": a["id"], "content": text})
        echo = check_room_frame(recv_until(room_b2, same, 5), b["id"], a["id"], text)
        assert recv_until(room_a1, same, 5) == echo
        assert recv_until(room_a2, same, 5) == echo
        for sock in (inbox_b1, inbox_b2):
            check_inbox_frame(recv_until(sock, same, 5), b["id"], b["id"], a["id"], text)
        check_inbox_frame(recv_until(inbox_a2, same, 5), a["id"], b["id"], a["id"], text)

        ours = {message["content"], text}
        for sock in sockets:  # exactly one frame per message per socket (others' events may share Redis)
            assert [f for f in drain(sock, 0.5) if f.get("content") in ours] == []
    finally:
        for sock in sockets:
            sock.close()


def test_server_side_code_in_another_process_reaches_sockets(servers):
    """A message stored by a management command reaches sockets on both server processes."""
    first, second, (a, b) = servers
    tb = login(second.http_url(), b)
    room_b1 = ChatSocket.open(room_url(first.ws_url(), a["id"], b["id"], tb))
    inbox_b2 = ChatSocket.open(inbox_url(second.ws_url(), b["id"], tb))
    try:
        text = marker("from a command")
        code = ("from habitto_chat.actions import do_send_message; "
                f"print('stored', do_send_message({a['id']}, {b['id']}, {text!r}).message.id)")
        out = manage(first.env, "shell", "-c", code)
        message_id = int(out.split("stored", 1)[1].split()[0])
        same = lambda frame: frame.get("content") == text  # noqa: E731
        assert check_room_frame(recv_until(room_b1, same, 5), a["id"], b["id"], text)["id"] == message_id
        frame = check_inbox_frame(recv_until(inbox_b2, same, 5), b["id"], a["id"], b["id"], text)
        assert frame["message_id"] == message_id
    finally:
        room_b1.close()
        inbox_b2.close()
