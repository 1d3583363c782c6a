"""The legacy room and inbox sockets through Channels' WebsocketCommunicator
(docs/protocol.md, ../shared/docs/client-contract.md): refusals and their close codes,
the three token carriers, authorization, echo and fan-out, inbox frames relative to
their owner, one publish path (socket, REST, server-side code), every bad input, the
rate limit and the silence of the legacy sockets. Token expiry and its grace:
test_chat_token_grace.py.

Refusals happen after accept (so the client can read the code): connect() succeeds and
the next output is a websocket.close with the code.
"""

import json

import pytest
from channels.db import database_sync_to_async
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from habitto_chat.models import Message
from tests.conftest import WS_HOST as HOST

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_writer")]

MESSAGE_KEYS = {"id", "sender", "receiver", "content", "created_at", "edited_at", "is_read", "client_id"}
# The old backend's ChatConsumer sent room_id, roomId and createdAt as well; the app may read them.
ROOM_KEYS = MESSAGE_KEYS | {"room_id", "roomId", "createdAt"}
INBOX_KEYS = {
    "message_id", "id", "sender", "receiver", "content", "created_at", "counterpart_id",
    "counterpart_username", "counterpart_full_name", "counterpart_profile_picture",
}
ERROR_KEYS = {"error", "code"}
WAIT = 3  # seconds for a frame that must come
QUIET = 0.3  # seconds of silence that count as "nothing"


# --- fixtures and helpers --------------------------------------------------------------------


@pytest.fixture
def alice(make_user):
    user = make_user("alice", first_name="Alice", last_name="Liddell")
    user.profile.profile_picture.name = "profiles/alice.png"
    user.profile.save()
    return user


@pytest.fixture
def bob(make_user):
    return make_user("bob")  # no names, no picture: full name falls back to the username


@pytest.fixture
def carol(make_user):
    return make_user("carol")


def room(a, b):
    low, high = sorted((a.pk, b.pk))
    return f"/ws/chat/{low}-{high}/"


def inbox(user):
    return f"/ws/chat/inbox/{user.pk}/"


async def assert_closed(communicator, code):
    """The next output is a close with this code (nothing sent before it)."""
    output = await communicator.receive_output(WAIT)
    assert output["type"] == "websocket.close" and output["code"] == code, output


async def assert_open(communicator):
    """Accepted and not closed: nothing at all arrives (no welcome, no close)."""
    assert await communicator.receive_nothing(QUIET)


async def receive(communicator):
    return await communicator.receive_json_from(WAIT)


def check_room_frame(frame, sender, receiver, content):
    """A room frame is the stored message object plus the seed's room keys."""
    assert set(frame) == ROOM_KEYS
    assert isinstance(frame["id"], int) and not isinstance(frame["id"], bool)
    assert (frame["sender"], frame["receiver"], frame["content"]) == (sender.pk, receiver.pk, content)
    assert isinstance(frame["created_at"], str) and frame["created_at"].endswith("Z")
    low, high = sorted((sender.pk, receiver.pk))
    assert frame["room_id"] == frame["roomId"] == f"{low}-{high}"
    assert frame["createdAt"] == frame["created_at"]
    assert (frame["edited_at"], frame["is_read"], frame["client_id"]) == (None, False, None)
    return frame


def check_inbox_frame(frame, owner, sender, receiver, content):
    """An inbox frame with the counterpart relative to the inbox owner."""
    assert set(frame) == INBOX_KEYS
    counterpart = receiver if sender.pk == owner.pk else sender
    assert (frame["sender"], frame["receiver"], frame["content"]) == (sender.pk, receiver.pk, content)
    assert isinstance(frame["message_id"], int) and frame["created_at"].endswith("Z")
    assert frame["id"] == frame["message_id"]
    assert frame["counterpart_id"] == counterpart.pk
    assert frame["counterpart_username"] == counterpart.username
    full_name = f"{counterpart.first_name} {counterpart.last_name}".strip() or counterpart.username
    assert frame["counterpart_full_name"] == full_name
    picture = counterpart.profile.profile_picture
    expected = f"http://{HOST}/media/{picture.name}" if picture else None
    assert frame["counterpart_profile_picture"] == expected
    return frame


async def check_error(communicator, code):
    frame = await receive(communicator)
    assert set(frame) == ERROR_KEYS, frame
    assert frame["code"] == code and isinstance(frame["error"], str) and frame["error"]
    return frame


def send_frame(sender, receiver, content):
    return {"sender": sender.pk, "receiver": receiver.pk, "content": content}


@database_sync_to_async
def message_count():
    return Message.objects.count()


@database_sync_to_async
def stored(message_id):
    return Message.objects.filter(pk=message_id).values("sender_id", "receiver_id", "content").get()


# --- refusals ----------------------------------------------------------------------------------


async def test_no_token_is_refused_4401(ws, alice, bob):
    """Without any token, room and inbox sockets close with 4401."""
    for path in (room(alice, bob), inbox(alice), f"/ws/notifications/{alice.pk}/"):
        await assert_closed(await ws(path), 4401)


async def test_malformed_token_is_refused_4401(ws, alice, bob):
    """A token that is not a JWT, or one signed with another key, closes with 4401."""
    good = str(AccessToken.for_user(alice))
    header, payload, _ = good.split(".")
    for token in ("not-a-token", "a.b.c", f"{header}.{payload}.AAAA", ""):
        await assert_closed(await ws(room(alice, bob), token), 4401)


async def test_revoked_token_is_refused_4401(ws, alice):
    """An access token revoked at logout closes with 4401."""
    from habitto_chat.tokens import revoke_access_token

    token = AccessToken.for_user(alice)
    await database_sync_to_async(revoke_access_token)(token)
    await assert_closed(await ws(inbox(alice), str(token)), 4401)


async def test_inactive_user_is_refused_4401(ws, make_user, bob):
    """A valid token of a deactivated user closes with 4401."""
    sleeper = await database_sync_to_async(make_user)("sleeper", is_active=False)
    token = AccessToken.for_user(sleeper)
    await assert_closed(await ws(room(sleeper, bob), str(token)), 4401)
    await assert_closed(await ws(inbox(sleeper), str(token)), 4401)


async def test_stranger_in_a_room_is_refused_4403(ws, token_for, alice, bob, carol):
    """Carol cannot join Alice and Bob's room."""
    await assert_closed(await ws(room(alice, bob), token_for(carol)), 4403)


async def test_someone_elses_inbox_is_refused_4403(ws, token_for, alice, bob):
    """Alice cannot open Bob's inbox, under either path."""
    for path in (inbox(bob), f"/ws/notifications/{bob.pk}/"):
        await assert_closed(await ws(path, token_for(alice)), 4403)


async def test_origin_not_allowed_is_refused_4403(ws, settings, token_for, alice, bob):
    """A browser origin that is not listed closes with 4403; a listed one is accepted."""
    settings.HABITTO_CHAT = {**settings.HABITTO_CHAT, "ALLOWED_ORIGINS": ["https://app.habitto.test"]}
    token = token_for(alice)
    for origin in (b"https://evil.example", b"http://app.habitto.test", b"https://app.habitto.test.evil.example"):
        await assert_closed(await ws(room(alice, bob), token, headers=[(b"origin", origin)]), 4403)
    await assert_open(await ws(room(alice, bob), token, headers=[(b"origin", b"https://app.habitto.test")]))


async def test_the_servers_own_origin_is_allowed_by_default(ws, token_for, alice, bob):
    """The web client served at `/` is same-origin: allowed with no ALLOWED_ORIGINS; the
    same host with another scheme or port, or another host, is still refused."""
    token = token_for(alice)
    same = f"http://{HOST}".encode()
    await assert_open(await ws(room(alice, bob), token, headers=[(b"origin", same)]))
    for origin in (f"https://{HOST}", f"http://{HOST}:8080", "http://evil.example", f"http://{HOST}.evil.example"):
        await assert_closed(await ws(room(alice, bob), token, headers=[(b"origin", origin.encode())]), 4403)


@pytest.mark.parametrize(
    "scheme, host, origin, allowed",
    [
        ("ws", "127.0.0.1:8000", "http://127.0.0.1:8000", True),
        ("wss", "chat.habitto.test", "https://chat.habitto.test", True),
        ("wss", "chat.habitto.test:443", "https://chat.habitto.test", True),
        ("ws", "localhost", "http://localhost:80", True),
        ("ws", "Chat.Habitto.test", "http://chat.habitto.TEST", True),
        ("ws", "127.0.0.1:8000", "http://127.0.0.1:8001", False),
        ("ws", "127.0.0.1:8000", "https://127.0.0.1:8000", False),
        ("wss", "chat.habitto.test", "http://chat.habitto.test", False),
        ("ws", "127.0.0.1:8000", "http://localhost:8000", False),
        ("ws", "127.0.0.1:x", "http://127.0.0.1:x", False),
        ("ws", None, "http://127.0.0.1", False),
        ("ws", "127.0.0.1", "null", False),
    ],
)
def test_same_origin_means_scheme_host_and_port_of_the_host_header(scheme, host, origin, allowed):
    from habitto_chat.realtime.auth import origin_allowed

    headers = [(b"origin", origin.encode())] + ([(b"host", host.encode())] if host else [])
    assert origin_allowed({"scheme": scheme, "headers": headers}, []) is allowed


async def test_no_origin_header_is_allowed(ws, settings, token_for, alice, bob):
    """Native apps send no Origin header; they are allowed whatever the allowed list."""
    settings.HABITTO_CHAT = {**settings.HABITTO_CHAT, "ALLOWED_ORIGINS": ["https://app.habitto.test"]}
    await assert_open(await ws(room(alice, bob), token_for(alice)))
    await assert_open(await ws(inbox(alice), token_for(alice)))


async def test_unknown_path_is_refused_4404(ws, token_for, alice):
    """Paths that are no socket close with 4404, with or without a token."""
    for path in ("/ws/nothing/", "/ws/chat/", "/ws/chat/inbox/x/", "/ws/chat/1-2-3/", "/"):
        await assert_closed(await ws(path, token_for(alice)), 4404)
    await assert_closed(await ws("/ws/nothing/"), 4404)


async def test_unknown_other_user_is_refused_4404(ws, token_for, alice):
    """A room with a user that does not exist closes with 4404."""
    missing = alice.pk + 1000
    await assert_closed(await ws(f"/ws/chat/{alice.pk}-{missing}/", token_for(alice)), 4404)


async def test_inactive_other_user_is_refused_4404(ws, make_user, token_for, alice):
    """A room with a deactivated user closes with 4404, like an unknown one."""
    gone = await database_sync_to_async(make_user)("gone", is_active=False)
    await assert_closed(await ws(room(alice, gone), token_for(alice)), 4404)


async def test_room_with_oneself_is_refused_4404(ws, token_for, alice):
    """`/ws/chat/a-a/` is no room."""
    await assert_closed(await ws(f"/ws/chat/{alice.pk}-{alice.pk}/", token_for(alice)), 4404)


async def test_too_many_sockets_is_refused_4429(ws, settings, token_for, alice, bob):
    """Beyond MAX_SOCKETS_PER_USER sockets per user in this process: 4429; a slot frees on close."""
    settings.HABITTO_CHAT = {**settings.HABITTO_CHAT, "MAX_SOCKETS_PER_USER": 2}
    token = token_for(alice)
    first = await ws(room(alice, bob), token)
    await assert_open(await ws(inbox(alice), token))
    await assert_closed(await ws(inbox(alice), token), 4429)
    await assert_open(await ws(room(alice, bob), token_for(bob)))  # per user, not per room
    await first.disconnect()
    await assert_open(await ws(inbox(alice), token))


# --- token carriers -----------------------------------------------------------------------------


async def test_token_in_query_string(ws, token_for, alice, bob):
    """`?token=` (what the shipped app sends) authenticates; no subprotocol is chosen."""
    sock = await ws(room(alice, bob), token_for(alice))
    await sock.send_json_to(send_frame(alice, bob, "via query"))
    check_room_frame(await receive(sock), alice, bob, "via query")


async def test_token_in_authorization_header(ws, token_for, alice, bob):
    """`Authorization: Bearer <jwt>` authenticates."""
    header = (b"authorization", f"Bearer {token_for(alice)}".encode())
    sock = await ws(room(alice, bob), headers=[header])
    await sock.send_json_to(send_frame(alice, bob, "via header"))
    check_room_frame(await receive(sock), alice, bob, "via header")


async def test_token_in_subprotocol_pair(ws, token_for, alice, bob):
    """`Sec-WebSocket-Protocol: access_token, <jwt>` authenticates; the server answers `access_token`."""
    sock = await ws(room(alice, bob), subprotocols=["access_token", token_for(alice)], subprotocol="access_token")
    await sock.send_json_to(send_frame(alice, bob, "via subprotocol"))
    check_room_frame(await receive(sock), alice, bob, "via subprotocol")


async def test_bad_subprotocol_token_is_refused_4401(ws, alice, bob):
    """A bad token in the subprotocol pair closes with 4401 (after echoing the subprotocol)."""
    sock = await ws(room(alice, bob), subprotocols=["access_token", "junk"], subprotocol="access_token")
    await assert_closed(sock, 4401)


# --- delivery ------------------------------------------------------------------------------------


async def test_send_echoes_and_reaches_partner_and_both_inboxes(ws, token_for, alice, bob):
    """One send: echo to the sender's room sockets, the message to the partner's, one frame per inbox socket."""
    ta, tb = token_for(alice), token_for(bob)
    rooms_a = [await ws(room(alice, bob), ta), await ws(room(alice, bob), ta)]
    room_b = await ws(room(bob, alice), tb)
    inboxes_a = [await ws(inbox(alice), ta), await ws(f"/ws/notifications/{alice.pk}/", ta)]
    inbox_b = await ws(inbox(bob), tb)
    before = await message_count()

    await rooms_a[0].send_json_to(send_frame(alice, bob, "hello Bob ✓"))
    echo = check_room_frame(await receive(rooms_a[0]), alice, bob, "hello Bob ✓")
    for sock in (rooms_a[1], room_b):
        assert await receive(sock) == echo
    for sock in inboxes_a:
        frame = check_inbox_frame(await receive(sock), alice, alice, bob, "hello Bob ✓")
        assert frame["message_id"] == echo["id"] and frame["created_at"] == echo["created_at"]
        assert frame["counterpart_profile_picture"] is None  # Bob has no picture
    frame = check_inbox_frame(await receive(inbox_b), bob, alice, bob, "hello Bob ✓")
    assert frame["counterpart_full_name"] == "Alice Liddell"
    assert frame["counterpart_profile_picture"] == f"http://{HOST}/media/profiles/alice.png"

    for sock in (*rooms_a, room_b, *inboxes_a, inbox_b):
        assert await sock.receive_nothing(QUIET), "exactly one frame per socket"
    assert await message_count() == before + 1
    assert await stored(echo["id"]) == {"sender_id": alice.pk, "receiver_id": bob.pk, "content": "hello Bob ✓"}

    await room_b.send_json_to(send_frame(bob, alice, "hi Alice"))
    reply = check_room_frame(await receive(room_b), bob, alice, "hi Alice")
    assert reply["id"] > echo["id"]
    assert await receive(rooms_a[0]) == reply
    check_inbox_frame(await receive(inbox_b), bob, bob, alice, "hi Alice")
    check_inbox_frame(await receive(inboxes_a[0]), alice, bob, alice, "hi Alice")


async def test_other_rooms_and_strangers_hear_nothing(ws, token_for, alice, bob, carol):
    """A message reaches only its two users: Carol's inbox and Alice's room with Carol stay silent."""
    room_ab = await ws(room(alice, bob), token_for(alice))
    room_ac = await ws(room(alice, carol), token_for(alice))
    inbox_c = await ws(inbox(carol), token_for(carol))
    await room_ab.send_json_to(send_frame(alice, bob, "private"))
    check_room_frame(await receive(room_ab), alice, bob, "private")
    assert await room_ac.receive_nothing(QUIET)
    assert await inbox_c.receive_nothing(QUIET)


async def test_room_path_order_does_not_matter(ws, token_for, alice, bob):
    """`/ws/chat/<high>-<low>/` is the same room as `<low>-<high>`."""
    low, high = sorted((alice.pk, bob.pk))
    sock_a = await ws(f"/ws/chat/{high}-{low}/", token_for(alice))
    sock_b = await ws(f"/ws/chat/{low}-{high}", token_for(bob))  # trailing slash optional
    await sock_a.send_json_to(send_frame(alice, bob, "either way"))
    echo = check_room_frame(await receive(sock_a), alice, bob, "either way")
    assert await receive(sock_b) == echo


async def test_message_posted_over_rest_reaches_open_sockets(ws, token_for, alice, bob):
    """POST /api/messages/ produces the same frames as a socket send."""
    room_a, room_b = await ws(room(alice, bob), token_for(alice)), await ws(room(alice, bob), token_for(bob))
    inbox_a, inbox_b = await ws(inbox(alice), token_for(alice)), await ws(inbox(bob), token_for(bob))

    def post():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(bob)}")
        return client.post("/api/messages/", {"receiver": alice.pk, "content": "over REST"}, format="json")

    response = await database_sync_to_async(post)()
    assert response.status_code == 201, response.content
    message = json.loads(response.content)["data"]
    for sock in (room_a, room_b):
        frame = check_room_frame(await receive(sock), bob, alice, "over REST")
        assert {key: frame[key] for key in MESSAGE_KEYS} == message
    check_inbox_frame(await receive(inbox_a), alice, bob, alice, "over REST")
    check_inbox_frame(await receive(inbox_b), bob, bob, alice, "over REST")


async def test_message_from_server_side_code_reaches_open_sockets(ws, token_for, alice, bob):
    """actions.do_send_message (server-side code) publishes to open sockets after commit."""
    from habitto_chat.actions import do_send_message

    room_b = await ws(room(alice, bob), token_for(bob))
    inbox_b = await ws(f"/ws/notifications/{bob.pk}/", token_for(bob))
    result = await database_sync_to_async(do_send_message)(alice.pk, bob.pk, "from the server")
    frame = check_room_frame(await receive(room_b), alice, bob, "from the server")
    assert frame["id"] == result.message.id
    check_inbox_frame(await receive(inbox_b), bob, alice, bob, "from the server")


# --- who may send --------------------------------------------------------------------------------


async def test_forged_sender_is_rejected(ws, token_for, alice, bob):
    """Alice cannot send as Bob: error frame, nothing stored, nothing delivered."""
    sock = await ws(room(alice, bob), token_for(alice))
    room_b = await ws(room(alice, bob), token_for(bob))
    before = await message_count()
    await sock.send_json_to(send_frame(bob, alice, "I am Bob"))
    await check_error(sock, "forged_sender")
    assert await room_b.receive_nothing(QUIET)
    assert await message_count() == before


async def test_wrong_receiver_is_rejected(ws, token_for, alice, bob, carol):
    """In the Alice-Bob room the receiver must be Bob, not Carol and not Alice herself."""
    sock = await ws(room(alice, bob), token_for(alice))
    inbox_c = await ws(inbox(carol), token_for(carol))
    before = await message_count()
    for receiver in (carol, alice):
        await sock.send_json_to(send_frame(alice, receiver, "misdirected"))
        await check_error(sock, "wrong_receiver")
    assert await inbox_c.receive_nothing(QUIET)
    assert await message_count() == before


async def test_stranger_cannot_send_into_a_room(ws, token_for, alice, bob, carol):
    """Carol's socket on Alice and Bob's room is closed before she can send anything."""
    sock = await ws(room(alice, bob), token_for(carol))
    await assert_closed(sock, 4403)
    await sock.send_json_to(send_frame(carol, bob, "let me in"))
    await sock.send_json_to(send_frame(alice, bob, "as Alice"))
    assert await sock.receive_nothing(QUIET)
    assert await message_count() == 0


# --- bad input ------------------------------------------------------------------------------------


BAD_TEXT_FRAMES = [
    ("{not json", "invalid_json"),
    ("[1, 2]", "invalid_frame"),
    ("42", "invalid_frame"),
    ('"text"', "invalid_frame"),
    ("null", "invalid_frame"),
]


def bad_frames(alice, bob):
    """(frame, expected code) for every malformed legacy send."""
    good = send_frame(alice, bob, "ok")
    return [
        ({**good, "client_id": "x"}, "invalid_frame"),  # unknown key
        ({**good, "type": "typing"}, "invalid_frame"),
        ({"sender": alice.pk, "receiver": bob.pk}, "invalid_frame"),  # missing key
        ({"content": "x"}, "invalid_frame"),
        ({}, "invalid_frame"),
        ({**good, "sender": str(alice.pk)}, "invalid_frame"),  # wrong types
        ({**good, "receiver": float(bob.pk)}, "invalid_frame"),
        ({**good, "receiver": None}, "invalid_frame"),
        ({**good, "sender": True, "receiver": True}, "invalid_frame"),  # bool ids
        ({**good, "receiver": bool(bob.pk)}, "invalid_frame"),
        ({**good, "content": 5}, "invalid_content"),
        ({**good, "content": ["x"]}, "invalid_content"),
        ({**good, "content": None}, "invalid_content"),
        ({**good, "content": ""}, "empty_content"),  # empty
        ({**good, "content": " \n\t "}, "empty_content"),
        ({**good, "content": "x" * 4001}, "content_too_long"),  # over CHAT_MAX_CONTENT_LENGTH
        ({**good, "content": "nul\x00byte"}, "invalid_content"),
    ]


async def test_each_bad_input_gets_an_error_frame_and_the_socket_stays_usable(ws, token_for, alice, bob):
    """Each bad input gets one error frame; nothing stored or delivered; a valid send afterwards works."""
    sock = await ws(room(alice, bob), token_for(alice))
    room_b = await ws(room(alice, bob), token_for(bob))
    before = await message_count()
    for text, code in BAD_TEXT_FRAMES:
        await sock.send_to(text_data=text)
        await check_error(sock, code)
    for frame, code in bad_frames(alice, bob):
        await sock.send_json_to(frame)
        await check_error(sock, code)
    assert await room_b.receive_nothing(QUIET)
    assert await message_count() == before

    await sock.send_json_to(send_frame(alice, bob, "x" * 4000))  # exactly the limit is fine
    echo = check_room_frame(await receive(sock), alice, bob, "x" * 4000)
    assert await receive(room_b) == echo
    assert await message_count() == before + 1


async def test_binary_frame_gets_an_error_frame(ws, token_for, alice, bob):
    """A binary frame (even valid JSON bytes) is refused with an error frame; text still works."""
    sock = await ws(room(alice, bob), token_for(alice))
    await sock.send_to(bytes_data=json.dumps(send_frame(alice, bob, "as bytes")).encode())
    await check_error(sock, "binary_frame")
    assert await message_count() == 0
    await sock.send_json_to(send_frame(alice, bob, "as text"))
    check_room_frame(await receive(sock), alice, bob, "as text")


async def test_oversized_frame_gets_an_error_frame(ws, settings, token_for, alice, bob):
    """A frame over MAX_FRAME_BYTES is refused unparsed; the socket stays usable."""
    settings.HABITTO_CHAT = {**settings.HABITTO_CHAT, "MAX_FRAME_BYTES": 2048}
    sock = await ws(room(alice, bob), token_for(alice))
    await sock.send_json_to(send_frame(alice, bob, "y" * 3000))
    await check_error(sock, "frame_too_large")
    await sock.send_to(text_data="z" * 5000)  # not even JSON: the size is checked first
    await check_error(sock, "frame_too_large")
    assert await message_count() == 0
    await sock.send_json_to(send_frame(alice, bob, "small"))
    check_room_frame(await receive(sock), alice, bob, "small")


async def test_inbox_socket_rejects_frames(ws, token_for, alice, bob):
    """The inbox is server-to-client only: frames sent get an error frame and it keeps delivering."""
    sock = await ws(inbox(alice), token_for(alice))
    await sock.send_json_to(send_frame(alice, bob, "into the inbox"))
    await check_error(sock, "not_accepted")
    await sock.send_json_to({"type": "ping"})
    await check_error(sock, "not_accepted")
    await sock.send_to(text_data="{not json")
    await check_error(sock, "invalid_json")
    assert await message_count() == 0

    room_a = await ws(room(alice, bob), token_for(alice))
    await room_a.send_json_to(send_frame(alice, bob, "still delivering"))
    check_room_frame(await receive(room_a), alice, bob, "still delivering")
    check_inbox_frame(await receive(sock), alice, alice, bob, "still delivering")


# --- limits and silence ---------------------------------------------------------------------------


async def test_rate_limit_answers_with_an_error_frame(ws, settings, token_for, alice, bob):
    """Token bucket of 3: three quick sends are stored, the fourth gets rate_limited and is not."""
    settings.HABITTO_CHAT = {**settings.HABITTO_CHAT, "SEND_RATE_PER_SECOND": 0.01, "SEND_BURST": 3}
    sock = await ws(room(alice, bob), token_for(alice))
    for n in range(4):
        await sock.send_json_to(send_frame(alice, bob, f"quick {n}"))
    contents = []
    for _ in range(4):
        frame = await receive(sock)
        if "error" in frame:
            assert set(frame) == ERROR_KEYS and frame["code"] == "rate_limited"
        else:
            contents.append(check_room_frame(frame, alice, bob, frame["content"])["content"])
    assert contents == ["quick 0", "quick 1", "quick 2"]
    assert await sock.receive_nothing(QUIET)
    assert await message_count() == 3


async def test_rate_limit_is_per_user_across_sockets(ws, settings, token_for, alice, bob):
    """The bucket is the user's, shared by their sockets; the other user keeps their own."""
    settings.HABITTO_CHAT = {**settings.HABITTO_CHAT, "SEND_RATE_PER_SECOND": 0.01, "SEND_BURST": 1}
    first, second = await ws(room(alice, bob), token_for(alice)), await ws(room(alice, bob), token_for(alice))
    room_b = await ws(room(alice, bob), token_for(bob))
    await first.send_json_to(send_frame(alice, bob, "one"))
    echo = check_room_frame(await receive(first), alice, bob, "one")
    assert await receive(second) == echo and await receive(room_b) == echo
    await second.send_json_to(send_frame(alice, bob, "two"))
    await check_error(second, "rate_limited")
    await room_b.send_json_to(send_frame(bob, alice, "mine"))
    check_room_frame(await receive(room_b), bob, alice, "mine")
    assert await message_count() == 2


async def test_legacy_sockets_send_nothing_unsolicited(ws, token_for, alice, bob):
    """No welcome, no pong, no presence: the app turns every object into a bubble or a row."""
    room_a = await ws(room(alice, bob), token_for(alice))
    inbox_a = await ws(inbox(alice), token_for(alice))
    alias_a = await ws(f"/ws/notifications/{alice.pk}/", token_for(alice))
    room_b = await ws(room(alice, bob), token_for(bob))  # the partner joining is no event either
    for sock in (room_a, inbox_a, alias_a, room_b):
        assert await sock.receive_nothing(1.0)


async def test_slow_reader_is_closed_4408(ws, settings, token_for, alice, bob):
    """A socket whose outbox overflows (OUTBOX_FRAMES) is closed with 4408; others are unaffected."""
    from habitto_chat.actions import do_send_messages
    from habitto_chat.sends import SendRequest
    from habitto_chat.conversations import get_or_create_conversation

    settings.HABITTO_CHAT = {**settings.HABITTO_CHAT, "OUTBOX_FRAMES": 2}
    sock = await ws(room(alice, bob), token_for(bob))

    def burst():  # one committed batch of 5 messages: 5 frames pushed to the socket at once
        conversation = get_or_create_conversation(alice.pk, bob.pk)
        return do_send_messages([SendRequest(alice.pk, bob.pk, conversation.id, f"burst {n}") for n in range(5)])

    await database_sync_to_async(burst)()
    output = await sock.receive_output(WAIT)
    assert output["type"] == "websocket.close" and output["code"] == 4408, output
    assert await message_count() == 5

    settings.HABITTO_CHAT = {**settings.HABITTO_CHAT, "OUTBOX_FRAMES": 1000}
    fresh = await ws(room(alice, bob), token_for(bob))
    await database_sync_to_async(burst)()
    assert [(await receive(fresh))["content"] for _ in range(5)] == [f"burst {n}" for n in range(5)]
