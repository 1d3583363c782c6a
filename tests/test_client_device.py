"""habitto_client's device socket (/ws/v2/, docs/protocol.md): frame builders, URL, the resume
cursor, against a stub server that speaks the opening and the resume; then against a real
server process (tests/support/live.py)."""

import json
import threading
import urllib.parse

import pytest
from websockets.sync.server import serve as ws_serve

from habitto_client import (
    ChatHTTP,
    DeviceCursor,
    DeviceSocket,
    ProtocolError,
    ServerRejected,
    SocketClosed,
    Timeout,
    device_url,
    v2_delete_frame,
    v2_edit_frame,
    v2_ping_frame,
    v2_presence_query_frame,
    v2_read_frame,
    v2_send_frame,
    v2_sync_frame,
    v2_typing_frame,
)
from tests.support.live import server_with_users


def created(message_id, second, sender=1, receiver=2, replay=None):
    frame = {"type": "message.created", "pair": [1, 2],
             "message": {"id": message_id, "sender": sender, "receiver": receiver, "content": f"m{message_id}",
                         "created_at": f"2026-12-02T10:00:{second:02d}.000000Z"}}
    if replay:
        frame["replay"] = True
    return frame


# -- pure helpers --------------------------------------------------------------------------

def test_v2_frame_builders_follow_the_contract():
    """Every client frame of /ws/v2/, ids as ints, ref only when given."""
    assert v2_send_frame("7", "hi", "c-1") == {"type": "send", "to": 7, "content": "hi", "client_id": "c-1"}
    assert v2_send_frame(7, "hi", "c-1", ref="r1")["ref"] == "r1"
    assert v2_edit_frame(5, "new") == {"type": "edit", "message_id": 5, "content": "new"}
    assert v2_delete_frame("5") == {"type": "delete", "message_id": 5}
    assert v2_read_frame(5, ref="x") == {"type": "read", "message_id": 5, "ref": "x"}
    assert v2_typing_frame(7, "stop") == {"type": "typing", "to": 7, "state": "stop"}
    with pytest.raises(ValueError):
        v2_typing_frame(7, "maybe")
    assert v2_ping_frame() == {"type": "ping"} and v2_ping_frame(3) == {"type": "ping", "nonce": 3}
    assert v2_presence_query_frame(["3", 4]) == {"type": "presence.query", "users": [3, 4]}
    assert v2_sync_frame(9, "2026-12-02T10:00:00Z", [8, 9]) == {
        "type": "sync", "after_id": 9, "since": "2026-12-02T10:00:00Z", "recent": [8, 9]}


def test_device_url_carries_token_and_resume():
    """/ws/v2/ with the token; after_id, since and recent only when resuming."""
    assert device_url("ws://h:1/", "a+b") == "ws://h:1/ws/v2/?token=a%2Bb"
    assert device_url("ws://h") == "ws://h/ws/v2/"
    url = device_url("ws://h", "t", after_id=12, since="2026-12-02T10:00:00Z", recent=[11, 12])
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert query == {"token": ["t"], "after_id": ["12"], "since": ["2026-12-02T10:00:00Z"], "recent": ["11,12"]}
    assert device_url("ws://h", after_id=0) == "ws://h/ws/v2/?after_id=0"


def test_cursor_dedupes_and_keeps_resume_state():
    """after_id is the highest id held, since the last sync.done's; a message.created held
    already is a duplicate; recent = ids within 10 s of the newest created_at."""
    cursor = DeviceCursor()
    assert cursor.resume() is None  # nothing to resume from
    assert cursor.observe({"type": "sync.done", "after_id": 0, "since": "c0", "replayed": 0})
    assert cursor.resume() == {"after_id": 0, "since": "c0", "recent": []}
    assert cursor.observe(created(3, 0)) and cursor.observe(created(5, 12))
    assert not cursor.observe(created(3, 0))  # duplicate
    assert cursor.observe(created(4, 11))  # a lower id arriving late is not a duplicate
    assert cursor.observe({"type": "typing", "user": 2, "state": "start", "pair": [1, 2]})
    assert cursor.resume() == {"after_id": 5, "since": "c0", "recent": [4, 5]}  # 3 is 12 s older than 5
    cursor.observe({"type": "sync.done", "after_id": 9, "since": "c1", "replayed": 0})
    assert (cursor.after_id, cursor.since) == (9, "c1")
    with pytest.raises(ProtocolError):
        cursor.observe({"type": "message.created", "message": {"content": "no id"}})


# -- a stub /ws/v2/ server ---------------------------------------------------------------------

STORED = [created(i, i) for i in range(1, 6)]


@pytest.fixture
def stub_v2():
    """Speaks the opening (hello, replay after after_id skipping `recent`, sync.done), acks
    sends, answers pings and refuses edits; records every query."""
    seen = []

    def handler(conn):
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(conn.request.path).query)
        seen.append(query)
        if query.get("token") != ["good"]:
            conn.close(4401, "token")
            return
        conn.send(json.dumps({"type": "hello", "user_id": 1, "protocol": "2", "heartbeat": 25}))

        def replay(after_id, recent):
            sent = 0
            for frame in STORED:
                if frame["message"]["id"] > after_id - 1 and frame["message"]["id"] not in recent:
                    conn.send(json.dumps({**frame, "replay": True}))  # overlap: after_id itself again
                    sent += 1
            conn.send(json.dumps({"type": "sync.done", "after_id": 5, "since": f"c{len(seen)}", "replayed": sent}))

        if "after_id" in query:
            recent = {int(i) for i in query.get("recent", [""])[0].split(",") if i}
            replay(int(query["after_id"][0]), recent)
        else:
            conn.send(json.dumps({"type": "sync.done", "after_id": 5, "since": "c0", "replayed": 0}))
        conn.send(json.dumps({"type": "presence.snapshot", "users": []}))
        for raw in conn:
            frame = json.loads(raw)
            if frame["type"] == "send":
                conn.send(json.dumps({"type": "ack", "client_id": frame["client_id"], "message_id": 6,
                                      "duplicate": False}))
                conn.send(json.dumps(created(6, 6)))
                conn.send(json.dumps(created(6, 6)))  # a duplicate the socket drops
            elif frame["type"] == "ping":
                conn.send(json.dumps({"type": "pong", "nonce": frame.get("nonce"), "server_time": "t"}))
            elif frame["type"] == "sync":
                replay(frame["after_id"], set(frame["recent"]))
            else:
                conn.send(json.dumps({"type": "error", "code": "unknown_message", "message": "No.",
                                      "ref": frame.get("ref")}))

    server = ws_serve(handler, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}", seen
    server.shutdown()


def test_device_socket_opens_sends_and_dedupes(stub_v2):
    """hello and sync.done are read on connect; an ack is matched by client_id; the second
    message.created of one id is dropped; an error frame raises ServerRejected."""
    base, seen = stub_v2
    with DeviceSocket.connect(base, "good", timeout=3) as sock:
        assert sock.hello["user_id"] == 1 and sock.heartbeat == 25 and sock.replayed == []
        assert "after_id" not in seen[0]  # a new device does not resume
        assert sock.cursor.after_id == 5 and sock.cursor.since == "c0"
        sock.send_message(2, "hi", client_id="c-1")
        assert sock.expect("ack", client_id="c-1")["message_id"] == 6
        assert sock.skipped == [{"type": "presence.snapshot", "users": []}]
        assert sock.recv_event(3)["message"]["id"] == 6
        assert sock.expect("presence.snapshot", 0.1)["users"] == [] and sock.skipped == []
        sock.ping(nonce=1)
        assert sock.recv_event(3) == {"type": "pong", "nonce": 1, "server_time": "t"}
        assert sock.duplicates == 1
        sock.edit(6, "x", ref="r")
        with pytest.raises(ServerRejected) as info:
            sock.expect("message.edited", 3)
        assert info.value.code == "unknown_message"
        with pytest.raises(Timeout):
            sock.recv_event(0.2)


def test_device_socket_resumes_from_its_cursor(stub_v2):
    """A reconnect with the cursor sends after_id, since and recent; replayed frames that
    are held already (the overlap) are dropped; a sync frame does the same mid-life."""
    base, seen = stub_v2
    cursor = DeviceCursor()
    for frame in STORED[:3]:
        cursor.observe(frame)
    cursor.observe({"type": "sync.done", "after_id": 3, "since": "c9", "replayed": 0})
    with DeviceSocket.connect(base, "good", cursor, timeout=3) as sock:
        assert seen[-1]["after_id"] == ["3"] and seen[-1]["since"] == ["c9"]
        assert seen[-1]["recent"] == ["1,2,3"]
        assert [f["message"]["id"] for f in sock.replayed] == [4, 5]  # 3 was left out by `recent`
        assert all(f["replay"] for f in sock.replayed)
        assert cursor.after_id == 5 and cursor.since == "c1"
        assert sock.recv_event(3)["type"] == "presence.snapshot"
        assert sock.sync(3) == []  # everything replayed is held already
        assert sock.duplicates == 0


def test_device_socket_refused_token_closes(stub_v2):
    base, _ = stub_v2
    with pytest.raises(SocketClosed) as info:
        DeviceSocket.connect(base, "bad", timeout=3)
    assert info.value.code == 4401


# -- against a real server process -------------------------------------------------------------

PASSWORD = "Client-device-Passw0rd"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    with server_with_users(tmp_path_factory.mktemp("client-device-live"), 2, "dev", PASSWORD) as server:
        yield server


@pytest.mark.e2e
def test_live_device_sockets_send_ack_fanout_and_resume(live):
    """alice's send is acked and reaches both users' devices; bob's device drops, alice sends
    two more, bob reconnects with his cursor and gets exactly those two, in order."""
    api = ChatHTTP(live.http_url(live.ports[1]), timeout=10)
    ws = live.ws_url(live.ports[0])
    alice, bob = (api.login(u["username"], PASSWORD) for u in live.users)
    with DeviceSocket.connect(ws, alice.access, timeout=10) as a:
        bob_cursor = DeviceCursor()
        b = DeviceSocket.connect(ws, bob.access, bob_cursor, timeout=10)
        assert (a.hello["user_id"], b.hello["user_id"]) == (alice.user_id, bob.user_id)
        a.send_message(bob.user_id, "one", client_id="c-1")
        ack = a.expect("ack", 10, client_id="c-1")
        assert ack["duplicate"] is False
        mine = a.expect("message.created", 10)
        theirs = b.expect("message.created", 10)
        assert mine["message"]["id"] == theirs["message"]["id"] == ack["message_id"]
        assert theirs["counterpart"]["id"] == alice.user_id
        a.send_message(bob.user_id, "one", client_id="c-1")  # the same client_id: stored once
        assert a.expect("ack", 10, client_id="c-1")["duplicate"] is True
        b.close()
        ids = []
        for n in (2, 3):
            a.send_message(bob.user_id, f"m{n}", client_id=f"c-{n}")
            ids.append(a.expect("ack", 10, client_id=f"c-{n}")["message_id"])
        with DeviceSocket.connect(ws, bob.access, bob_cursor, timeout=10) as b2:
            assert [f["message"]["id"] for f in b2.replayed if f["type"] == "message.created"] == ids
            assert bob_cursor.after_id == ids[-1]
        a.ping(nonce="n1")
        assert a.expect("pong", 10)["nonce"] == "n1"
