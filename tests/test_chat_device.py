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
    assert snapshot["type"] == "presence.snapshot"  # its content: tests/test_chat_device_presence.py
    return socket, frames


async def ack_and_echo(socket):
    """The ack of a send, then its message.created."""
    frames = [await socket.receive_json_from(timeout=WS_WAIT) for _ in range(2)]
    assert [f["type"] for f in frames] == ["ack", "message.created"], frames
    return frames


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
    assert [f["type"] for f in frames] == ["ack", "message.created"]  # the sender: ack first
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
    assert (await alices.receive_json_from(timeout=WS_WAIT))["type"] == "presence"  # bob came online
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


# --- resume ----------------------------------------------------------------------------


def _store(sender, receiver, count, prefix="m"):
    """`count` messages sent in one batch (one commit); their ids."""
    from habitto_chat.conversations import get_or_create_conversation
    from habitto_chat.sends import SendRequest

    conversation = get_or_create_conversation(sender.pk, receiver.pk).id
    requests = [SendRequest(sender.pk, receiver.pk, conversation, f"{prefix}{n}") for n in range(count)]
    return [result.message.id for result in actions.do_send_messages(requests)]


store = sync_to_async(_store)


def replayed(frames):
    return [f["message"]["id"] for f in frames if f["type"] == "message.created"]


async def test_a_big_backlog_is_replayed_in_pages_in_order(ws, pair, monkeypatch):
    """1,200 missed messages: three queries of 500, oldest first, each frame marked replay."""
    alice, bob, token_a, _, _ = pair
    ids = await store(bob, alice, 1200)
    pages = []
    original = device._replay_page

    async def recording(user_id, after_id, *args):
        events = await original(user_id, after_id, *args)
        pages.append(len(events))
        return events

    monkeypatch.setattr(device, "_replay_page", recording)
    socket, frames = await opened(ws, token_a, "after_id=0")
    assert frames[0]["type"] == "hello"
    created = [f for f in frames if f["type"] == "message.created"]
    assert [f["message"]["id"] for f in created] == ids
    assert all(f["replay"] is True and f["counterpart"]["id"] == bob.pk for f in created)
    assert pages == [500, 500, 200]
    assert frames[-1] == {"type": "sync.done", "after_id": ids[-1], "since": frames[-1]["since"], "replayed": 1200}


async def test_replayed_messages_look_like_live_ones_with_their_read_state(ws, pair):
    alice, bob, token_a, token_b, _ = pair
    first, second = await store(alice, bob, 2)
    await sync_to_async(actions.do_mark_read)(bob.pk, first)
    live, _ = await opened(ws, token_a)
    await live.send_json_to({"type": "send", "to": bob.pk, "content": "third", "client_id": "c-3"})
    live_frames = [await live.receive_json_from(timeout=WS_WAIT) for _ in range(2)]
    live_created = next(f for f in live_frames if f["type"] == "message.created")

    _, frames = await opened(ws, token_a, f"after_id=0")
    created = [f for f in frames if f["type"] == "message.created"]
    assert [f["message"]["is_read"] for f in created] == [True, False, False]
    assert {**created[-1], "replay": None} == {**live_created, "replay": None}


async def test_the_overlap_replays_recent_lower_ids_the_device_does_not_hold(ws, pair):
    """Messages created within 5 s before the device's newest are replayed again, except
    those listed in `recent`; messages with id > after_id always are."""
    alice, bob, token_a, _, _ = pair
    older = await store(bob, alice, 2, "old")
    await Message.objects.filter(pk__in=older).aupdate(created_at=timezone.now() - timedelta(minutes=1))
    held = await store(bob, alice, 3)
    new = await store(bob, alice, 2, "new")

    _, frames = await opened(ws, token_a, f"after_id={held[-1]}&recent={held[0]},{held[2]}")
    assert replayed(frames) == [held[1], *new]
    sync = {"type": "sync", "after_id": held[-1], "recent": held}
    socket, _ = await opened(ws, token_a)
    await socket.send_json_to(sync)
    assert replayed(await frames_until(socket, "sync.done")) == new
    await socket.send_json_to({**sync, "recent": []})
    assert replayed(await frames_until(socket, "sync.done")) == [*held, *new]


async def test_cleared_and_strangers_messages_are_never_replayed(ws, pair, make_user):
    alice, bob, token_a, _, _ = pair
    carol = await sync_to_async(make_user)("carol")
    before = await store(bob, alice, 2)
    await sync_to_async(actions.do_clear_conversation)(alice.pk, bob.pk)
    after = await store(bob, alice, 1)
    await store(carol, bob, 3)
    mine = await store(alice, carol, 1)
    _, frames = await opened(ws, token_a, "after_id=0")
    assert replayed(frames) == [*after, *mine]
    assert not set(before) & set(replayed(frames))


async def test_changes_while_offline_are_replayed_after_the_messages(ws, pair, make_user):
    """Edits, deletions, receipts (both sides) and own clears since the cursor come back
    with replay: true; a change older than the cursor does not."""
    alice, bob, token_a, _, _ = pair
    carol = await sync_to_async(make_user)("carol")
    old_edit, edited, deleted, read_by_bob, unread = await store(alice, bob, 5)
    from_carol = await store(carol, alice, 1)
    await sync_to_async(actions.do_edit_message)(alice.pk, old_edit, "edited long ago")
    await Message.objects.filter(pk=old_edit).aupdate(edited_at=timezone.now() - timedelta(hours=1))
    socket, frames = await opened(ws, token_a)
    done = frames[-1]
    assert done["after_id"] == from_carol[0]
    await socket.disconnect()
    await Participant.objects.filter(user=alice).aupdate(read_at=None)  # nothing before the cursor

    # offline, from a past cursor's point of view: pretend the cursor was taken 10 s ago,
    # so these changes are newer than it even with the 5 s margin
    since = (timezone.now() - timedelta(seconds=10)).isoformat()
    await sync_to_async(actions.do_edit_message)(alice.pk, edited, "edited offline")
    await sync_to_async(actions.do_delete_message)(alice.pk, deleted)
    await sync_to_async(actions.do_mark_read)(bob.pk, read_by_bob)
    await sync_to_async(actions.do_clear_conversation)(alice.pk, carol.pk)
    await Participant.objects.filter(user=bob).aupdate(read_at=timezone.now())  # moved now
    socket = await ws(v2(token_a))
    await frames_until(socket, "presence.snapshot")
    held = [old_edit, edited, deleted, read_by_bob, unread, *from_carol]
    await socket.send_json_to({"type": "sync", "after_id": done["after_id"], "since": since, "recent": held})
    frames = await frames_until(socket, "sync.done")
    changes = [f for f in frames if f["type"] not in ("message.created", "sync.done")]
    assert all(f["replay"] is True for f in changes)
    kinds = {(f["type"], f.get("message", {}).get("id") or f.get("message_id") or f.get("reader")) for f in changes}
    assert kinds == {
        ("message.edited", edited),
        ("message.deleted", deleted),
        ("thread.read", bob.pk),
        ("conversation.cleared", None),
    }
    read = next(f for f in changes if f["type"] == "thread.read")
    assert read["last_read_id"] == read_by_bob
    cleared = next(f for f in changes if f["type"] == "conversation.cleared")
    assert cleared["pair"] == sorted((alice.pk, carol.pk)) and cleared["cleared_before_id"] == from_carol[0]
    edited_frame = next(f for f in changes if f["type"] == "message.edited")
    assert edited_frame["message"]["content"] == "edited offline"
    assert frames[-1]["since"] > since
    assert replayed(frames) == []  # all held: nothing in the overlap


async def test_live_events_during_a_replay_are_held_and_deduplicated(ws, pair, monkeypatch):
    """A message committed while the replay reads is both replayed and held live: the
    device gets it once, then what came after the replay, live, after sync.done."""
    alice, bob, token_a, _, _ = pair
    original = device._replay_page
    sent = []

    async def racing(user_id, after_id, *args):
        if not sent:
            sent.append((await send_message(bob.pk, alice.pk, "during")).message.id)
            events = await original(user_id, after_id, *args)
            sent.append((await send_message(bob.pk, alice.pk, "after")).message.id)
            return events
        return await original(user_id, after_id, *args)

    monkeypatch.setattr(device, "_replay_page", racing)
    socket = await ws(v2(token_a, "after_id=0"))
    frames = await frames_until(socket, "sync.done")
    assert replayed(frames) == [sent[0]]
    later = await frames_until(socket, "message.created")
    assert [f["type"] for f in later] == ["message.created"]
    assert later[0]["message"]["id"] == sent[1] and "replay" not in later[0]
    assert (await socket.receive_json_from(timeout=WS_WAIT))["type"] == "presence.snapshot"
    assert await socket.receive_nothing(timeout=0.3)


async def test_a_sync_frame_right_after_opening_runs_after_the_plain_sync(ws, pair):
    alice, bob, token_a, _, _ = pair
    ids = await store(bob, alice, 3)
    socket = await ws(v2(token_a))
    await socket.send_json_to({"type": "sync", "after_id": ids[0], "recent": [ids[0]]})
    first = await frames_until(socket, "sync.done")
    second = await frames_until(socket, "sync.done")
    assert replayed(first) + replayed(second) == ids[1:]
    assert second[-1]["after_id"] == ids[-1]


# --- error codes -----------------------------------------------------------------------


async def test_frame_errors(ws, pair, settings):
    settings.HABITTO_CHAT = {**settings.HABITTO_CHAT, "MAX_FRAME_BYTES": 1000, "MAX_CONTENT_LENGTH": 10}
    alice, bob, token_a, _, _ = pair
    socket, _ = await opened(ws, token_a)
    await socket.send_to(text_data="{nope")
    assert (await socket.receive_json_from(timeout=WS_WAIT))["code"] == "invalid_json"
    await socket.send_to(text_data="[" * 40 + "]" * 40)
    assert (await socket.receive_json_from(timeout=WS_WAIT))["code"] == "json_too_deep"
    await socket.send_to(text_data=json.dumps({"type": "ping", "nonce": "x" * 2000}))
    assert (await socket.receive_json_from(timeout=WS_WAIT))["code"] == "frame_too_large"
    await socket.send_to(bytes_data=b"\x00")
    assert (await socket.receive_json_from(timeout=WS_WAIT))["code"] == "binary_frame"
    for frame in (
        ["send"],
        {"type": "message.send", "content": "room frame"},
        {"type": "send", "to": "bob", "content": "x", "client_id": "c"},
        {"type": "edit", "content": "x"},
        {"type": "typing", "to": bob.pk, "state": "sleeping"},
        {"type": "presence.query", "users": list(range(1, 102))},
        {"type": "sync"},
        {"type": "ping", "ref": ""},
    ):
        assert (await error_of(socket, frame))["code"] == "invalid_frame", frame
    error = await error_of(socket, {"type": "dance", "ref": "r-9"})
    assert error == {"type": "error", "code": "invalid_frame", "message": error["message"], "ref": "r-9"}


async def test_send_errors_carry_ref_and_client_id(ws, pair, make_user):
    alice, bob, token_a, _, _ = pair
    sleeper = await sync_to_async(make_user)("sleeper", is_active=False)
    socket, _ = await opened(ws, token_a)
    send = {"type": "send", "to": bob.pk, "content": "hi", "client_id": "c-1", "ref": "r"}
    cases = [
        ({"content": 5}, "invalid_content"),
        ({"content": " \u200b "}, "empty_content"),
        ({"content": "x" * 4001}, "content_too_long"),
        ({"to": 10**9}, "unknown_user"),
        ({"to": sleeper.pk}, "unknown_user"),
        ({"to": alice.pk}, "self_message"),
    ]
    for change, code in cases:
        error = await error_of(socket, {**send, **change})
        assert (error["code"], error["ref"], error["client_id"]) == (code, "r", "c-1"), change
    for client_id in (None, "", "x" * 65, "tab\t"):
        error = await error_of(socket, {**send, "client_id": client_id})
        assert error["code"] == "invalid_client_id" and "client_id" not in error


async def test_client_id_conflict_inactive_user_and_rate_limit(ws, pair, make_user, settings):
    alice, bob, token_a, _, _ = pair
    carol = await sync_to_async(make_user)("carol")
    socket, _ = await opened(ws, token_a)
    await socket.send_json_to({"type": "send", "to": bob.pk, "content": "one", "client_id": "same"})
    await ack_and_echo(socket)
    error = await error_of(socket, {"type": "send", "to": carol.pk, "content": "two", "client_id": "same"})
    assert error["code"] == "client_id_conflict" and error["client_id"] == "same"

    settings.HABITTO_CHAT = {**settings.HABITTO_CHAT, "SEND_BURST": 1, "SEND_RATE_PER_SECOND": 0.001}
    from habitto_chat import ratelimit

    ratelimit.reset()
    await socket.send_json_to({"type": "send", "to": bob.pk, "content": "a", "client_id": "r-1"})
    await ack_and_echo(socket)
    error = await error_of(socket, {"type": "send", "to": bob.pk, "content": "b", "client_id": "r-2"})
    assert error["code"] == "rate_limited"
    ratelimit.reset()
    settings.HABITTO_CHAT = {**settings.HABITTO_CHAT, "SEND_BURST": 40, "SEND_RATE_PER_SECOND": 20.0}

    # deactivated without the event that would close the socket (a direct UPDATE)
    await alice.__class__.objects.filter(pk=alice.pk).aupdate(is_active=False)
    error = await error_of(socket, {"type": "send", "to": bob.pk, "content": "c", "client_id": "r-3"})
    assert error["code"] == "inactive_user"


async def test_store_failed_and_server_error(ws, pair, monkeypatch, caplog):
    from habitto_chat.realtime import batcher as batcher_module

    alice, bob, token_a, _, _ = pair
    socket, _ = await opened(ws, token_a)

    def failing_write(requests):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(batcher_module, "_write", failing_write)
    error = await error_of(socket, {"type": "send", "to": bob.pk, "content": "x", "client_id": "c", "ref": "r"})
    assert (error["code"], error["ref"], error["client_id"]) == ("store_failed", "r", "c")

    async def crash(self, payload, ref):
        raise RuntimeError("boom")

    monkeypatch.setitem(device.DeviceConsumer._handlers, "ping", crash)
    assert (await error_of(socket, {"type": "ping"}))["code"] == "server_error"


async def test_message_errors_no_conversation_and_presence_stubs(ws, pair, make_user):
    alice, bob, token_a, token_b, _ = pair
    carol = await sync_to_async(make_user)("carol")
    theirs = (await send_message(bob.pk, carol.pk, "not yours")).message.id
    to_alice = (await send_message(bob.pk, alice.pk, "to alice")).message.id
    socket, _ = await opened(ws, token_a)
    for frame in (
        {"type": "edit", "message_id": theirs, "content": "mine now"},
        {"type": "edit", "message_id": to_alice, "content": "mine now"},
        {"type": "delete", "message_id": to_alice},
        {"type": "read", "message_id": theirs},
        {"type": "read", "message_id": 10**12},
    ):
        error = await error_of(socket, {**frame, "ref": "m"})
        assert (error["code"], error["ref"]) == ("unknown_message", "m"), frame
    for to in (carol.pk, 10**9, alice.pk):
        assert (await error_of(socket, {"type": "typing", "to": to, "state": "start"}))["code"] == "no_conversation"
    await socket.send_json_to({"type": "typing", "to": bob.pk, "state": "start"})
    await socket.send_json_to({"type": "presence.query", "users": [bob.pk, carol.pk]})
    assert await socket.receive_json_from(timeout=WS_WAIT) == {
        "type": "presence.snapshot", "users": [{"user": bob.pk, "online": False, "last_seen": None}]
    }


async def test_cursor_errors_and_sync_in_progress(ws, pair, monkeypatch):
    alice, bob, token_a, _, _ = pair
    socket = await ws(v2(token_a, "after_id=x"))
    assert (await socket.receive_json_from(timeout=WS_WAIT))["type"] == "hello"
    assert (await socket.receive_json_from(timeout=WS_WAIT))["code"] == "invalid_cursor"
    assert (await socket.receive_json_from(timeout=WS_WAIT))["type"] == "sync.done"
    await socket.receive_json_from(timeout=WS_WAIT)
    for frame in (
        {"after_id": -1},
        {"after_id": "5"},
        {"after_id": 0, "since": "yesterday"},
        {"after_id": 0, "since": "2026-01-01T00:00:00"},
        {"after_id": 0, "recent": [1, "2"]},
        {"after_id": 0, "recent": list(range(1, 1002))},
        # accepted by fromisoformat, but past datetime's range or PostgreSQL's offsets
        {"after_id": 1, "since": "0001-01-01T00:00:00Z"},
        {"after_id": 1, "since": "0001-01-01T12:00:00+23:00"},
        {"after_id": 1, "since": "9999-12-31T23:59:59-23:00"},
        {"after_id": 1, "since": "2999-01-01T00:00:00Z"},
    ):
        error = await error_of(socket, {"type": "sync", "ref": "s", **frame})
        assert (error["code"], error["ref"]) == ("invalid_cursor", "s"), frame

    gate = asyncio.Event()
    original = device._replay_page

    async def slow(*args):
        await gate.wait()
        return await original(*args)

    monkeypatch.setattr(device, "_replay_page", slow)
    await socket.send_json_to({"type": "sync", "after_id": 0})
    error = await error_of(socket, {"type": "sync", "after_id": 0, "ref": "again"})
    assert (error["code"], error["ref"]) == ("sync_in_progress", "again")
    gate.set()
    assert (await socket.receive_json_from(timeout=WS_WAIT))["type"] == "sync.done"


# --- typing and presence events (published by realtime/presence.py) ---------------------


async def test_typing_and_presence_events_reach_device_sockets_only(ws, pair):
    """The hub carries them like any event; the room and inbox sockets of protocol 2
    (whose clients do not know these frames) leave them out."""
    from habitto_chat import wire
    from habitto_chat.realtime.hub import hub

    alice, bob, token_a, token_b, room = pair
    await send_message(alice.pk, bob.pk, "hi")
    bobs, _ = await opened(ws, token_b)
    bob_room = await ws(f"{room}?token={token_b}&protocol=2")
    bob_inbox = await ws(f"/ws/chat/inbox/{bob.pk}/?token={token_b}&protocol=2")
    seen = timezone.now()
    hub.publish([wire.typing_event(alice.pk, bob.pk, "start"), wire.presence_event(alice.pk, [bob.pk], False, seen)])
    typing = await bobs.receive_json_from(timeout=WS_WAIT)
    assert typing == {"type": "typing", "user": alice.pk, "state": "start", "pair": sorted((alice.pk, bob.pk))}
    presence = await bobs.receive_json_from(timeout=WS_WAIT)
    assert presence == {"type": "presence", "user": alice.pk, "online": False, "last_seen": wire.iso(seen)}
    for socket in (bob_room, bob_inbox):
        assert await socket.receive_nothing(timeout=0.3)


def test_resume_queries_cost_the_same_for_any_backlog(pair, make_user, django_assert_num_queries):
    """A replay page is 3 queries (sent, received, user cards), the changes 4."""
    alice, bob = pair[0], pair[1]
    carol = make_user("carol")
    _store(bob, alice, 400)
    _store(alice, carol, 300)
    with django_assert_num_queries(3):
        events = queries.replay_page(alice.pk, 0)
    assert len(events) == 500 and [e["message"]["id"] for e in events] == sorted(e["message"]["id"] for e in events)
    with django_assert_num_queries(3):
        assert len(queries.resume_overlap(alice.pk, events[-1]["message"]["id"], frozenset())) == 500
    with django_assert_num_queries(4):
        queries.changes_since(alice.pk, 0, timezone.now())


async def test_a_resume_in_the_query_string_replays_changes_since_the_cursor(ws, pair):
    alice, bob, token_a, _, _ = pair
    first, second = await store(alice, bob, 2)
    since = (timezone.now() - timedelta(seconds=10)).isoformat().replace("+00:00", "Z")
    await sync_to_async(actions.do_mark_read)(bob.pk, second)
    _, frames = await opened(ws, token_a, f"after_id={second}&since={since}&recent={first},{second}")
    assert [f["type"] for f in frames] == ["hello", "thread.read", "sync.done"]
    assert frames[1]["last_read_id"] == second and frames[1]["replay"] is True


async def test_a_device_too_far_behind_during_a_sync_is_closed_as_slow(ws, pair, monkeypatch):
    alice, bob, token_a, _, _ = pair
    monkeypatch.setattr(device, "MAX_HELD_EVENTS", 2)
    gate = asyncio.Event()
    original = device._replay_page

    async def slow(*args):
        await gate.wait()
        return await original(*args)

    monkeypatch.setattr(device, "_replay_page", slow)
    socket = await ws(v2(token_a, "after_id=0"))
    assert (await socket.receive_json_from(timeout=WS_WAIT))["type"] == "hello"
    for n in range(3):
        await send_message(bob.pk, alice.pk, f"m{n}")
    assert await socket.receive_output(timeout=WS_WAIT) == {"type": "websocket.close", "code": 4408, "reason": "too many events during a sync"}
    gate.set()


async def test_pipelined_sends_are_each_acknowledged_before_their_echo_in_order(ws, pair):
    alice, bob, token_a, _, _ = pair
    socket, _ = await opened(ws, token_a)
    for n in range(20):
        await socket.send_json_to({"type": "send", "to": bob.pk, "content": f"m{n}", "client_id": f"p-{n}"})
    frames = [await socket.receive_json_from(timeout=WS_WAIT) for _ in range(40)]
    acked = set()
    for frame in frames:
        if frame["type"] == "ack":
            acked.add(frame["client_id"])
        else:
            assert frame["message"]["client_id"] in acked
    created = [f["message"]["id"] for f in frames if f["type"] == "message.created"]
    assert created == sorted(created) and len(acked) == 20


async def test_frames_with_unhashable_type_or_state_are_invalid_frames(ws, pair):
    """A list or object where a string belongs is an invalid_frame, not a server error."""
    alice, bob, token_a, _, _ = pair
    socket = await ws(v2(token_a))
    for _ in range(3):  # hello, sync.done, presence.snapshot
        await socket.receive_json_from(timeout=WS_WAIT)
    for frame in ({"type": []}, {"type": {}}, {"type": "typing", "to": bob.pk, "state": []}):
        assert (await error_of(socket, frame))["code"] == "invalid_frame", frame


async def test_sync_and_presence_queries_have_a_budget_per_socket(ws, pair):
    """Five sync or presence.query frames at once, then one a second: a client looping
    on them gets rate_limited (with its ref) instead of holding up everyone's queries."""
    alice, bob, token_a, _, _ = pair
    socket = await ws(v2(token_a))
    for _ in range(3):  # hello, sync.done, presence.snapshot
        await socket.receive_json_from(timeout=WS_WAIT)
    for _ in range(5):
        await socket.send_json_to({"type": "presence.query", "users": [bob.pk]})
        assert (await socket.receive_json_from(timeout=WS_WAIT))["type"] == "presence.snapshot"
    error = await error_of(socket, {"type": "sync", "after_id": 0, "ref": "loop"})
    assert (error["code"], error["ref"]) == ("rate_limited", "loop")
    error = await error_of(socket, {"type": "presence.query", "users": [bob.pk]})
    assert error["code"] == "rate_limited"
