"""Typing and presence on the device socket /ws/v2/, in process (docs/protocol.md): they
reach the other person's devices, never a stranger's; several devices per user; last
seen stored and shown; presence.query leaves strangers out. Across two live server
processes and with Redis down: tests/e2e/test_presence_live.py."""

import asyncio

import pytest
from asgiref.sync import sync_to_async

from habitto_chat import actions, wire
from habitto_chat.models import LastSeen
from tests.conftest import WS_WAIT

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_writer")]


@pytest.fixture
def people(make_user, token_for):
    """Alice and Bob share a conversation; Eve shares none with either: (user, token) each."""
    alice, bob, eve = make_user("alice"), make_user("bob"), make_user("eve")
    actions.do_send_message(alice.pk, bob.pk, "hi")
    return [(user, token_for(user)) for user in (alice, bob, eve)]


async def device(ws, token):
    """A device socket past hello and sync.done: (socket, its presence.snapshot)."""
    socket = await ws(f"/ws/v2/?token={token}")
    kinds = [(await socket.receive_json_from(timeout=WS_WAIT))["type"] for _ in range(2)]
    assert kinds == ["hello", "sync.done"]
    snapshot = await socket.receive_json_from(timeout=WS_WAIT)
    assert snapshot["type"] == "presence.snapshot"
    return socket, snapshot


async def settle():
    """Let the closes' tasks (last seen, offline) finish."""
    await asyncio.sleep(0.3)


async def test_typing_reaches_every_device_of_the_other_person_only(ws, people):
    """A typing frame reaches both of Bob's devices (with the pair), not Alice's other device, not Eve."""
    (alice, token_a), (bob, token_b), (_, token_e) = people
    alice_phone, _ = await device(ws, token_a)
    alice_laptop, _ = await device(ws, token_a)
    bob_phone, _ = await device(ws, token_b)
    bob_laptop, _ = await device(ws, token_b)
    eve_phone, _ = await device(ws, token_e)
    for socket in (alice_phone, alice_laptop):
        assert (await socket.receive_json_from(timeout=WS_WAIT))["online"] is True  # bob came online

    for state in ("start", "stop"):
        await alice_phone.send_json_to({"type": "typing", "to": bob.pk, "state": state, "ref": "t"})
        expected = {"type": "typing", "user": alice.pk, "state": state, "pair": sorted((alice.pk, bob.pk))}
        for socket in (bob_phone, bob_laptop):
            assert await socket.receive_json_from(timeout=WS_WAIT) == expected
    for socket in (alice_phone, alice_laptop, eve_phone):
        assert await socket.receive_nothing(timeout=0.2)


async def test_typing_to_a_stranger_is_no_conversation_and_reaches_nobody(ws, people):
    """Typing to someone without a conversation, an unknown user or oneself: error no_conversation with the ref."""
    (alice, token_a), _, (eve, token_e) = people
    alice_phone, _ = await device(ws, token_a)
    eve_phone, _ = await device(ws, token_e)
    for to in (eve.pk, 10**9, alice.pk):
        await alice_phone.send_json_to({"type": "typing", "to": to, "state": "start", "ref": f"r{to}"})
        error = await alice_phone.receive_json_from(timeout=WS_WAIT)
        assert (error["type"], error["code"], error["ref"]) == ("error", "no_conversation", f"r{to}")
    await alice_phone.send_json_to({"type": "typing", "to": eve.pk, "state": "maybe"})
    assert (await alice_phone.receive_json_from(timeout=WS_WAIT))["code"] == "invalid_frame"
    assert await eve_phone.receive_nothing(timeout=0.3)


async def test_a_burst_of_typing_frames_is_cut_to_five(ws, people):
    """Beyond five typing frames a second a socket's frames are dropped silently (no error)."""
    (_, token_a), (bob, token_b), _ = people
    bob_phone, _ = await device(ws, token_b)
    alice_phone, _ = await device(ws, token_a)
    for _ in range(30):
        await alice_phone.send_json_to({"type": "typing", "to": bob.pk, "state": "start"})
    await alice_phone.send_json_to({"type": "ping", "nonce": 1})
    assert (await alice_phone.receive_json_from(timeout=WS_WAIT))["type"] == "pong"  # no error before it
    assert (await bob_phone.receive_json_from(timeout=WS_WAIT))["online"] is True
    typing = [await bob_phone.receive_json_from(timeout=WS_WAIT) for _ in range(5)]
    assert {f["type"] for f in typing} == {"typing"}
    assert await bob_phone.receive_nothing(timeout=0.3)


async def test_online_until_the_last_device_closes_and_strangers_learn_nothing(ws, people):
    """Bob sees Alice online with her first device, offline with last_seen after her last; Eve sees nothing."""
    (alice, token_a), (bob, token_b), (_, token_e) = people
    bob_phone, _ = await device(ws, token_b)
    eve_phone, _ = await device(ws, token_e)
    alice_phone, _ = await device(ws, token_a)
    assert await bob_phone.receive_json_from(timeout=WS_WAIT) == {
        "type": "presence", "user": alice.pk, "online": True, "last_seen": None,
    }
    alice_laptop, _ = await device(ws, token_a)
    await alice_phone.disconnect()
    assert await bob_phone.receive_nothing(timeout=0.3)  # the laptop is still up
    await alice_laptop.disconnect()
    offline = await bob_phone.receive_json_from(timeout=WS_WAIT)
    seen = await LastSeen.objects.aget(user_id=alice.pk)
    assert offline == {"type": "presence", "user": alice.pk, "online": False, "last_seen": wire.iso(seen.seen_at)}
    assert await eve_phone.receive_nothing(timeout=0.2)


async def test_last_seen_is_stored_and_shown_in_the_snapshot(ws, people):
    """After Alice's last device closed, Bob's next device's snapshot shows her offline with that last_seen."""
    (alice, token_a), (bob, token_b), _ = people
    alice_phone, snapshot = await device(ws, token_a)
    assert snapshot["users"] == [{"user": bob.pk, "online": False, "last_seen": None}]
    await alice_phone.disconnect()
    await settle()
    seen = await LastSeen.objects.aget(user_id=alice.pk)
    _, snapshot = await device(ws, token_b)
    assert snapshot["users"] == [{"user": alice.pk, "online": False, "last_seen": wire.iso(seen.seen_at)}]

    _, snapshot = await device(ws, token_a)  # Bob is online now
    assert snapshot["users"] == [{"user": bob.pk, "online": True, "last_seen": None}]


async def test_presence_query_leaves_strangers_out(ws, people, make_user):
    """presence.query answers for the asked users sharing a conversation; strangers and unknown ids are left out."""
    (alice, token_a), (bob, token_b), (eve, _) = people
    carol = await sync_to_async(make_user)("carol")
    await sync_to_async(actions.do_send_message)(carol.pk, alice.pk, "hello")
    alice_phone, _ = await device(ws, token_a)
    await device(ws, token_b)
    assert (await alice_phone.receive_json_from(timeout=WS_WAIT))["online"] is True
    await alice_phone.send_json_to({"type": "presence.query", "users": [eve.pk, bob.pk, 10**9, carol.pk], "ref": "q"})
    assert await alice_phone.receive_json_from(timeout=WS_WAIT) == {
        "type": "presence.snapshot",
        "users": [
            {"user": bob.pk, "online": True, "last_seen": None},
            {"user": carol.pk, "online": False, "last_seen": None},
        ],
    }
    await alice_phone.send_json_to({"type": "presence.query", "users": list(range(1, 102)), "ref": "big"})
    error = await alice_phone.receive_json_from(timeout=WS_WAIT)
    assert (error["code"], error["ref"]) == ("invalid_frame", "big")


async def test_typing_and_presence_never_reach_room_or_inbox_sockets(ws, people):
    """The protocol-2 room and inbox sockets (and the legacy ones) carry no typing or presence frame."""
    (alice, token_a), (bob, token_b), _ = people
    low, high = sorted((alice.pk, bob.pk))
    others = [
        await ws(f"/ws/chat/{low}-{high}/?token={token_b}&protocol=2"),
        await ws(f"/ws/chat/inbox/{bob.pk}/?token={token_b}&protocol=2"),
        await ws(f"/ws/chat/{low}-{high}/?token={token_b}"),
        await ws(f"/ws/chat/inbox/{bob.pk}/?token={token_b}"),
    ]
    bob_phone, _ = await device(ws, token_b)
    alice_phone, _ = await device(ws, token_a)
    await alice_phone.send_json_to({"type": "typing", "to": bob.pk, "state": "start"})
    assert (await bob_phone.receive_json_from(timeout=WS_WAIT))["type"] == "presence"
    assert (await bob_phone.receive_json_from(timeout=WS_WAIT))["type"] == "typing"
    await alice_phone.disconnect()
    assert (await bob_phone.receive_json_from(timeout=WS_WAIT))["online"] is False
    for socket in others:
        assert await socket.receive_nothing(timeout=0.1)
