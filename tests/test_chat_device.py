"""The device socket /ws/v2/ (issue 15, docs/protocol.md), in process: the opening
frames, send/ack, the events of both users' devices, resume (replay with paging,
changes since a cursor, held live events deduplicated) and every error code."""

import asyncio
import json
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from habitto_chat import actions, queries
from habitto_chat.models import DeletedMessage, Message, Participant
from habitto_chat.realtime import device
from tests.conftest import WS_WAIT

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_writer")]

send_message = sync_to_async(actions.do_send_message)


def v2(token, query=""):
    return f"/ws/v2/?token={token}" + (f"&{query}" if query else "")


async def frames_until(socket, kind, limit=5000):
    """The frames received up to and including the first of type `kind`."""
    received = []
    for _ in range(limit):
        frame = await socket.receive_json_from(timeout=WS_WAIT)
        received.append(frame)
        if frame["type"] == kind:
            return received
    raise AssertionError(f"no {kind} in {limit} frames")


async def opened(ws, token, query=""):
    """A device socket past its opening frames: (socket, the frames up to sync.done)."""
    socket = await ws(v2(token, query))
    frames = await frames_until(socket, "sync.done")
    snapshot = await socket.receive_json_from(timeout=WS_WAIT)
    assert snapshot == {"type": "presence.snapshot", "users": []}
    return socket, frames


async def error_of(socket, frame):
    await socket.send_json_to(frame)
    answer = await socket.receive_json_from(timeout=WS_WAIT)
    assert answer["type"] == "error", answer
    return answer


# --- opening ---------------------------------------------------------------------------


async def test_opening_says_hello_then_sync_done_with_the_newest_visible_id(ws, pair):
    alice, bob, token_a, _, _ = pair
    sent = await send_message(bob.pk, alice.pk, "hi")
    socket = await ws(v2(token_a))
    hello = await socket.receive_json_from(timeout=WS_WAIT)
    assert hello == {"type": "hello", "user_id": alice.pk, "protocol": "2", "heartbeat": 25}
    done = await socket.receive_json_from(timeout=WS_WAIT)
    assert done["type"] == "sync.done" and done["after_id"] == sent.message.id and done["replayed"] == 0
    assert done["since"].endswith("Z")
    assert (await socket.receive_json_from(timeout=WS_WAIT))["type"] == "presence.snapshot"
    assert await socket.receive_nothing(timeout=0.2)


async def test_the_token_may_come_as_a_subprotocol_and_the_trailing_slash_is_optional(ws, pair):
    alice, _, token_a, _, _ = pair
    socket = await ws("/ws/v2", subprotocols=["access_token", token_a], subprotocol="access_token")
    assert (await socket.receive_json_from(timeout=WS_WAIT))["type"] == "hello"


async def test_an_expired_token_is_refused_without_grace(ws, pair, settings):
    """Protocol 2 never gets the legacy sockets' grace: past exp + leeway is 4401."""
    from rest_framework_simplejwt.tokens import AccessToken

    alice = pair[0]
    token = AccessToken.for_user(alice)
    token.set_exp(lifetime=-timedelta(minutes=5))
    socket = await ws(v2(str(token)))
    closed = await socket.receive_output(timeout=WS_WAIT)
    assert closed == {"type": "websocket.close", "code": 4401, "reason": "token expired"}


# --- send and the events of both users' devices -------------------------------------------


async def test_send_is_acknowledged_with_ref_and_reaches_every_device_of_both(ws, pair):
    alice, bob, token_a, token_b, _ = pair
    phone, _ = await opened(ws, token_a)
    laptop, _ = await opened(ws, token_a)
    bobs, _ = await opened(ws, token_b)
    await phone.send_json_to({"type": "send", "to": bob.pk, "content": "visit at 5?", "client_id": "c-1", "ref": "r1"})
    frames = [await phone.receive_json_from(timeout=WS_WAIT) for _ in range(2)]
    by_type = {f["type"]: f for f in frames}
    ack = by_type["ack"]
    assert ack == {"type": "ack", "client_id": "c-1", "message_id": ack["message_id"], "duplicate": False, "ref": "r1"}
    for socket, counterpart in ((phone, bob.pk), (laptop, bob.pk), (bobs, alice.pk)):
        created = by_type["message.created"] if socket is phone else await socket.receive_json_from(timeout=WS_WAIT)
        assert created["type"] == "message.created" and "replay" not in created
        assert created["message"]["id"] == ack["message_id"] and created["message"]["client_id"] == "c-1"
        assert created["counterpart"]["id"] == counterpart
        assert created["pair"] == sorted((alice.pk, bob.pk))

    await phone.send_json_to({"type": "send", "to": bob.pk, "content": "visit at 5?", "client_id": "c-1"})
    again = await phone.receive_json_from(timeout=WS_WAIT)
    assert again == {"type": "ack", "client_id": "c-1", "message_id": ack["message_id"], "duplicate": True}
    assert await bobs.receive_nothing(timeout=0.3)
    assert await Message.objects.filter(client_id="c-1").acount() == 1


async def test_edit_delete_and_read_reach_both_users_devices(ws, pair):
    alice, bob, token_a, token_b, _ = pair
    sent = await send_message(alice.pk, bob.pk, "first")
    alices, _ = await opened(ws, token_a)
    bobs, _ = await opened(ws, token_b)
    message_id = sent.message.id

    await alices.send_json_to({"type": "edit", "message_id": message_id, "content": "first!"})
    for socket in (alices, bobs):
        edited = await socket.receive_json_from(timeout=WS_WAIT)
        assert edited["type"] == "message.edited" and edited["message"]["content"] == "first!"

    await bobs.send_json_to({"type": "read", "message_id": message_id})
    for socket in (alices, bobs):
        read = await socket.receive_json_from(timeout=WS_WAIT)
        assert read == {"type": "thread.read", "reader": bob.pk, "last_read_id": message_id, "pair": read["pair"]}

    await alices.send_json_to({"type": "delete", "message_id": message_id})
    for socket in (alices, bobs):
        deleted = await socket.receive_json_from(timeout=WS_WAIT)
        assert deleted == {"type": "message.deleted", "message_id": message_id, "pair": sorted((alice.pk, bob.pk))}
    tombstone = await DeletedMessage.objects.aget(pk=message_id)
    assert (tombstone.sender_id, tombstone.receiver_id) == (alice.pk, bob.pk)


async def test_ping_is_answered_with_pong_and_the_nonce(ws, pair):
    socket, _ = await opened(ws, pair[2])
    await socket.send_json_to({"type": "ping", "nonce": "n-7"})
    pong = await socket.receive_json_from(timeout=WS_WAIT)
    assert pong["type"] == "pong" and pong["nonce"] == "n-7" and pong["server_time"].endswith("Z")
    await socket.send_json_to({"type": "ping"})
    assert "nonce" not in await socket.receive_json_from(timeout=WS_WAIT)
