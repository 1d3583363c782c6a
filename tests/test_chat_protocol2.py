"""Protocol 2 (opt-in with ?protocol=2): acks with client ids, edits, deletions, read
marks and clears pushed live; legacy sockets never see any of it."""

import json

import pytest
from asgiref.sync import sync_to_async

from habitto_chat import actions
from habitto_chat.models import Message

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_writer")]


def v2(path, token):
    """A socket path asking for protocol 2 (open it with the `ws` fixture)."""
    return f"{path}?token={token}&protocol=2"


async def test_send_with_client_id_is_acknowledged_once_and_deduplicated(ws, pair):
    """A retried send with the same client_id is acknowledged as a duplicate, stored once."""
    alice, bob, token_a, _, room = pair
    socket = await ws(v2(room, token_a))
    await socket.send_json_to({"type": "message.send", "content": "visit at 5?", "client_id": "c-1"})
    frames = [await socket.receive_json_from(timeout=3) for _ in range(2)]
    by_type = {f["type"]: f for f in frames}
    assert by_type["ack"]["client_id"] == "c-1" and by_type["ack"]["duplicate"] is False
    created = by_type["message.created"]
    assert created["message"]["client_id"] == "c-1"
    assert created["message"]["id"] == by_type["ack"]["message_id"]
    assert created["counterpart"]["id"] == bob.pk
    await socket.send_json_to({"type": "message.send", "content": "visit at 5?", "client_id": "c-1"})
    again = await socket.receive_json_from(timeout=3)
    assert again == {"type": "ack", "client_id": "c-1", "message_id": created["message"]["id"], "duplicate": True}
    assert await socket.receive_nothing(timeout=0.3)
    assert await Message.objects.filter(client_id="c-1").acount() == 1


async def test_edits_deletes_reads_and_clears_reach_protocol2_only(ws, pair):
    """Protocol-2 sockets get every event type; legacy room and inbox sockets get none of them."""
    alice, bob, token_a, token_b, room = pair
    sent = await sync_to_async(actions.do_send_message)(alice.pk, bob.pk, "first")
    v2_room = await ws(v2(room, token_b))
    v2_inbox = await ws(v2(f"/ws/chat/inbox/{bob.pk}/", token_b))
    legacy_room = await ws(room, token_b)
    legacy_inbox = await ws(f"/ws/chat/inbox/{bob.pk}/", token_b)

    await sync_to_async(actions.do_edit_message)(alice.pk, sent.message.id, "first (edited)")
    await sync_to_async(actions.do_mark_thread_read)(bob.pk, alice.pk)
    await sync_to_async(actions.do_clear_conversation)(bob.pk, alice.pk)
    await sync_to_async(actions.do_delete_message)(alice.pk, sent.message.id)

    for socket in (v2_room, v2_inbox):
        kinds = [(await socket.receive_json_from(timeout=3))["type"] for _ in range(4)]
        assert kinds == ["message.edited", "thread.read", "conversation.cleared", "message.deleted"]
    for socket in (legacy_room, legacy_inbox):
        assert await socket.receive_nothing(timeout=0.3)


async def test_clear_is_private_to_the_user_who_cleared(ws, pair):
    """The other person's protocol-2 sockets never learn that a conversation was cleared."""
    alice, bob, token_a, _, room = pair
    await sync_to_async(actions.do_send_message)(bob.pk, alice.pk, "hello")
    alice_room = await ws(v2(room, token_a))
    await sync_to_async(actions.do_clear_conversation)(bob.pk, alice.pk)
    assert await alice_room.receive_nothing(timeout=0.3)


async def test_protocol2_errors_are_typed_and_legacy_frames_refused(ws, pair):
    """Protocol 2 answers bad frames with {"type":"error"}; the legacy frame shape is not protocol 2."""
    alice, bob, token_a, _, room = pair
    socket = await ws(v2(room, token_a))
    await socket.send_json_to({"sender": alice.pk, "receiver": bob.pk, "content": "legacy"})
    error = await socket.receive_json_from(timeout=3)
    assert error["type"] == "error" and error["code"] == "invalid_frame"
    await socket.send_to(text_data=json.dumps({"type": "message.send", "content": ""}))
    assert (await socket.receive_json_from(timeout=3))["code"] == "empty_content"

