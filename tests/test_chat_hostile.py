"""Hostile input on the write path (issue 11): one user's poison message, parser bombs or
crashing frames never cost another user anything, and never leave a socket registered.

- Content is validated in one place (sends.validate_content) for REST, sockets and
  actions: encodable text, something visible, the length after NFC normalisation.
- A message the database refuses fails alone: the rest of its group-commit batch is
  stored, in order, announced in one publish; the success path takes no savepoint.
- client_id reused for another receiver is a 409 / an error frame; sends into a room
  whose partner (or owner) was deactivated are refused at store time.
- Deep JSON (10,000 `[`) is an error frame; sockets leave the hub on every way out.
"""

import asyncio
import json
import logging
import threading

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from habitto_chat import actions, events, sends
from habitto_chat.conversations import get_or_create_conversation, participant
from habitto_chat.errors import ChatError, Conflict, Forbidden, InvalidInput, NotFound, StoreFailed
from habitto_chat.models import Message
from habitto_chat.realtime import batcher as batcher_module
from habitto_chat.realtime import consumers
from habitto_chat.realtime.hub import hub
from habitto_chat.sends import SendRequest

WAIT = 3
API = "/api/messages/"


def frame(sender, receiver, content):
    return {"sender": sender.pk, "receiver": receiver.pk, "content": content}


async def receive(communicator, timeout=WAIT):
    return await communicator.receive_json_from(timeout)


async def expect_error(communicator, code):
    frame_ = await receive(communicator)
    assert frame_.get("code") == code, frame_
    return frame_


@database_sync_to_async
def contents_from(user):
    return list(Message.objects.filter(sender=user).order_by("id").values_list("content", flat=True))


@database_sync_to_async
def deactivate(user):
    user.is_active = False
    user.save(update_fields=["is_active"])


def registered(user):
    return len(hub._sockets.get(user.pk, ()))


class Recorder:
    """An event sink counting publishes (each call is one published batch)."""

    def __init__(self):
        self.batches = []

    def __call__(self, published):
        self.batches.append(published)


@pytest.fixture
def recorder(monkeypatch):
    sink = Recorder()
    monkeypatch.setattr(events, "_sinks", [*events._sinks, sink])
    return sink


# --- one place validates content -----------------------------------------------------------


@pytest.mark.parametrize(
    "content,code",
    [
        ("x\ud800", "invalid_content"),  # a lone surrogate: UTF-8 cannot encode it
        ("\udfff", "invalid_content"),
        ("ok \ud83d", "invalid_content"),  # half an emoji
        ("\u00a0\u00a0", "empty_content"),  # no-break spaces
        ("\u200b", "empty_content"),  # zero-width space (Cf)
        ("\u200d\u200c\ufeff\u2060", "empty_content"),  # joiners, BOM, word joiner
        ("\u3164\u2800\u115f", "empty_content"),  # Hangul filler, braille blank
        ("\u2028\u2029\u3000\t\n", "empty_content"),  # separators, ideographic space, controls
        ("\u202e\u200f", "empty_content"),  # direction overrides and marks alone
        ("e\u0301" * 4001, "content_too_long"),  # 4,001 characters once composed
        ("\u0958" * 4001, "content_too_long"),  # NFC decomposes it: 8,002 characters
        ("x" * 16001, "content_too_long"),
    ],
)
def test_validate_content_refuses(content, code):
    with pytest.raises(InvalidInput) as refused:
        sends.validate_content(content)
    assert refused.value.code == code


@pytest.mark.parametrize(
    "content",
    ["e\u0301" * 4000, "\u00a0x\u00a0", "\u200bhi", "🙂", "\u0301", "ü" * 4000, "[[[[{{" * 600, "\x01visible"],
)
def test_validate_content_accepts_and_keeps_text_unchanged(content):
    """Decomposed text counts composed (4,000 é in 8,000 code points) and is stored as sent."""
    assert sends.validate_content(content) is content


@pytest.mark.parametrize("client_id", ["c\ud800", "a\x00b", "tab\there", "\u200b", "line\n"])
def test_client_id_must_be_printable(client_id):
    with pytest.raises(InvalidInput) as refused:
        sends.validate_client_id(client_id)
    assert refused.value.code == "invalid_client_id"


@pytest.mark.django_db
@pytest.mark.parametrize("content", ["x\ud800", "\u200b\u00a0"])
def test_rest_refuses_what_sockets_refuse(client_for, make_user, content):
    """The same check on REST: a 400 with the socket's code, nothing stored."""
    alice, bob = make_user(), make_user()
    body = json.dumps({"receiver": bob.pk, "content": content})  # \\ud800 escapes in the JSON text
    response = client_for(alice).generic("POST", API, body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert Message.objects.count() == 0


# --- a poison message fails alone ---------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_writer")
async def test_poison_sender_gets_an_error_while_another_user_sends_20(ws, make_user, token_for):
    """The issue's reproduction: lone surrogates from one socket ("\\ud800" in the JSON
    text) while another user sends 20 messages at the same moment: every one of the 20 is
    echoed and stored, the poison sender gets invalid_content and nothing is stored for it."""
    alice, bob, carol = [await database_sync_to_async(make_user)() for _ in range(3)]
    poison_room = await ws(f"/ws/chat/{min(alice.pk, carol.pk)}-{max(alice.pk, carol.pk)}/", token_for(alice))
    room = await ws(f"/ws/chat/{min(bob.pk, carol.pk)}-{max(bob.pk, carol.pk)}/", token_for(bob))
    poison = '{"sender": %d, "receiver": %d, "content": "x\\ud800"}' % (alice.pk, carol.pk)
    for n in range(20):
        await room.send_json_to(frame(bob, carol, f"normal {n}"))
        if n % 4 == 0:
            await poison_room.send_to(text_data=poison)
    echoes = [await receive(room) for _ in range(20)]
    assert [e["content"] for e in echoes] == [f"normal {n}" for n in range(20)]
    for _ in range(5):
        await expect_error(poison_room, "invalid_content")
    assert await contents_from(bob) == [f"normal {n}" for n in range(20)]
    assert await contents_from(alice) == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_writer")
async def test_a_row_the_database_refuses_fails_alone_in_its_batch(ws, make_user, token_for, monkeypatch, recorder, caplog):
    """Defence in depth: with validation bypassed, a lone surrogate reaches the batch.
    The writer is held so the poison and 20 normal sends share one batch: the batch fails,
    is stored again one by one, the 20 commit in order with one publish, the poison's
    sender gets store_failed."""
    monkeypatch.setattr(sends, "validate_content", lambda content: content)
    caplog.set_level(logging.WARNING, logger="habitto_chat.actions")
    alice, bob, carol = [await database_sync_to_async(make_user)() for _ in range(3)]
    poison_room = await ws(f"/ws/chat/{min(alice.pk, carol.pk)}-{max(alice.pk, carol.pk)}/", token_for(alice))
    room = await ws(f"/ws/chat/{min(bob.pk, carol.pk)}-{max(bob.pk, carol.pk)}/", token_for(bob))

    async def until_pending(count):
        for _ in range(300):
            # flushing: the first send has been enqueued (and, with 0 pending, taken)
            batcher = batcher_module.batcher()
            if batcher._flushing and len(batcher._pending) == count:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"{count} sends never queued")

    gate = threading.Event()
    held = batcher_module._writer.submit(gate.wait, WAIT * 5)
    try:
        await room.send_json_to(frame(bob, carol, "normal 0"))  # taken alone, waits for the writer
        await until_pending(0)
        for n in range(1, 11):
            await room.send_json_to(frame(bob, carol, f"normal {n}"))
        await until_pending(10)
        await poison_room.send_json_to(frame(alice, carol, "x\ud800"))
        await until_pending(11)
        for n in range(11, 20):
            await room.send_json_to(frame(bob, carol, f"normal {n}"))
        await until_pending(20)
    finally:
        gate.set()
        held.result(WAIT)
    echoes = [await receive(room) for _ in range(20)]
    error = await expect_error(poison_room, "store_failed")
    assert set(error) == {"error", "code"}
    assert [e["content"] for e in echoes] == [f"normal {n}" for n in range(20)]
    assert any("a batch of 20 sends failed" in r.getMessage() for r in caplog.records)
    created = [len(b) for b in recorder.batches if b[0]["type"] == "message.created"]
    assert created == [1, 19]  # the first alone, then the failing batch's 19 others in one publish
    ids = [e["id"] for e in echoes]
    assert ids == sorted(ids)
    assert await contents_from(bob) == [f"normal {n}" for n in range(20)]
    assert await contents_from(alice) == []


def _requests(alice, bob, carol, contents):
    low = get_or_create_conversation(alice.pk, bob.pk).id
    other = get_or_create_conversation(carol.pk, bob.pk).id
    return [
        SendRequest(alice.pk, bob.pk, low, content) if sender == "a" else SendRequest(carol.pk, bob.pk, other, content)
        for sender, content in contents
    ]


@pytest.mark.django_db
def test_do_send_messages_stores_the_rest_of_a_failing_batch(make_user, recorder, django_capture_on_commit_callbacks):
    """Results keep order: SendResults and the one StoreFailed; one publish of the rest."""
    alice, bob, carol = make_user(), make_user(), make_user()
    requests = _requests(alice, bob, carol, [("a", "one"), ("c", "bad\ud800"), ("c", "two"), ("a", "three")])
    with django_capture_on_commit_callbacks(execute=True):
        results = actions.do_send_messages(requests)
    assert isinstance(results[1], StoreFailed) and results[1].code == "store_failed"
    stored = [r.message for i, r in enumerate(results) if i != 1]
    assert [m.content for m in stored] == ["one", "two", "three"]
    assert [m.id for m in stored] == sorted(m.id for m in stored)
    assert list(Message.objects.order_by("id").values_list("content", flat=True)) == ["one", "two", "three"]
    assert [[e["message"]["content"] for e in batch] for batch in recorder.batches] == [["one", "two", "three"]]
    side = participant(bob.pk, alice.pk)
    assert (side.unread_count, side.last_message_id) == (2, stored[2].id)


@pytest.mark.django_db
def test_the_success_path_costs_the_same_for_3_and_30_sends_and_takes_no_savepoint_per_message(make_user):
    counts = []
    for size in (3, 30):
        alice, bob, carol = make_user(), make_user(), make_user()
        requests = _requests(alice, bob, carol, [("a" if n % 2 else "c", f"m{n}") for n in range(size)])
        with CaptureQueriesContext(connection) as captured:
            results = actions.do_send_messages(requests)
        assert all(not isinstance(r, ChatError) for r in results)
        counts.append(len(captured))
        assert sum("SAVEPOINT" in q["sql"].upper() and "RELEASE" not in q["sql"].upper() for q in captured) <= 1
    assert counts[0] == counts[1]


# --- client_id reuse and deactivated users ---------------------------------------------------


@pytest.mark.django_db
def test_client_id_reused_for_another_receiver_is_a_409(client_for, make_user):
    """Same client_id, same receiver: the stored message (200). Another receiver: 409
    with a message, nothing stored, the first message untouched."""
    alice, bob, carol = make_user(), make_user(), make_user()
    client = client_for(alice)
    first = client.post(API, {"receiver": bob.pk, "content": "hi", "client_id": "k-1"}, format="json")
    assert first.status_code == 201
    again = client.post(API, {"receiver": bob.pk, "content": "hi", "client_id": "k-1"}, format="json")
    assert again.status_code == 200 and again.json()["data"]["id"] == first.json()["data"]["id"]
    clash = client.post(API, {"receiver": carol.pk, "content": "hi carol", "client_id": "k-1"}, format="json")
    assert clash.status_code == 409, clash.content
    body = clash.json()
    assert body["success"] is False and body["data"] == {"code": "client_id_conflict"}
    assert "client_id" in body["message"]
    assert Message.objects.count() == 1


@pytest.mark.django_db
def test_client_id_conflict_inside_one_batch(make_user):
    alice, bob, carol = make_user(), make_user(), make_user()
    to_bob = get_or_create_conversation(alice.pk, bob.pk).id
    to_carol = get_or_create_conversation(alice.pk, carol.pk).id
    results = actions.do_send_messages(
        [SendRequest(alice.pk, bob.pk, to_bob, "a", "same"), SendRequest(alice.pk, carol.pk, to_carol, "b", "same"),
         SendRequest(alice.pk, bob.pk, to_bob, "a again", "same")]
    )
    assert results[0].created and isinstance(results[1], Conflict) and results[1].code == "client_id_conflict"
    assert results[2].message.id == results[0].message.id and not results[2].created
    assert Message.objects.count() == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_writer")
async def test_client_id_conflict_on_a_protocol2_socket(ws, pair, make_user):
    alice, bob, token_a, _, path = pair
    carol = await database_sync_to_async(make_user)()
    to_bob = await ws(f"{path}?token={token_a}&protocol=2")
    to_carol = await ws(f"/ws/chat/{min(alice.pk, carol.pk)}-{max(alice.pk, carol.pk)}/?token={token_a}&protocol=2")
    await to_bob.send_json_to({"type": "message.send", "content": "for bob", "client_id": "k"})
    frames = [await receive(to_bob), await receive(to_bob)]
    assert {f["type"] for f in frames} == {"ack", "message.created"}
    await to_carol.send_json_to({"type": "message.send", "content": "for carol", "client_id": "k"})
    error = await receive(to_carol)
    assert error["type"] == "error" and error["code"] == "client_id_conflict" and error["message"]
    assert await database_sync_to_async(Message.objects.count)() == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_writer")
@pytest.mark.parametrize("protocol", ["", "&protocol=2"])
async def test_room_opened_before_the_partner_was_deactivated_stores_nothing(ws, pair, protocol):
    alice, bob, token_a, _, path = pair
    room = await ws(f"{path}?token={token_a}{protocol}")
    await deactivate(bob)
    if protocol:
        await room.send_json_to({"type": "message.send", "content": "still there?"})
    else:
        await room.send_json_to(frame(alice, bob, "still there?"))
    await expect_error(room, "unknown_user")
    assert await database_sync_to_async(Message.objects.count)() == 0


@pytest.mark.django_db
def test_a_deactivated_sender_stores_nothing(make_user):
    """What a socket of a just-deactivated user still had in flight is refused."""
    alice, bob = make_user(), make_user()
    request = SendRequest(alice.pk, bob.pk, get_or_create_conversation(alice.pk, bob.pk).id, "late")
    get_user_model().objects.filter(pk=alice.pk).update(is_active=False)
    (result,) = actions.do_send_messages([request])
    assert isinstance(result, Forbidden) and result.code == "inactive_user"
    get_user_model().objects.filter(pk=alice.pk).update(is_active=True)
    get_user_model().objects.filter(pk=bob.pk).update(is_active=False)
    (result,) = actions.do_send_messages([request])
    assert isinstance(result, NotFound) and result.code == "unknown_user"
    assert Message.objects.count() == 0


# --- parser bombs and crashing frames --------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_writer")
async def test_deeply_nested_frames_25_times_then_the_user_still_connects(ws, pair, settings):
    """10,000 `[` in a frame: an error frame, the socket stays usable; 25 times, on
    sockets opened and closed, then a socket for the same user opens (no 4429)."""
    settings.HABITTO_CHAT = {**settings.HABITTO_CHAT, "MAX_SOCKETS_PER_USER": 3}
    alice, bob, token_a, _, path = pair
    bomb = "[" * 10_000
    for attempt in range(25):
        room = await ws(path, token_a)
        await room.send_to(text_data=bomb)
        await expect_error(room, "json_too_deep")
        if attempt % 5 == 0:
            await room.send_json_to(frame(alice, bob, f"after bomb {attempt}"))
            assert (await receive(room))["content"] == f"after bomb {attempt}"
        await room.disconnect()
    assert registered(alice) == 0
    last = await ws(path, token_a)
    await last.send_json_to(frame(alice, bob, "hello"))
    assert (await receive(last))["content"] == "hello"


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_writer")
@pytest.mark.parametrize(
    "text,code",
    [
        ("[" * 33 + "]" * 33, "json_too_deep"),
        ('{"a":' * 40 + "1" + "}" * 40, "json_too_deep"),
        ("[" * 100_000, "frame_too_large"),
        ("1" * 5000, "invalid_json"),  # more digits than int() takes
        ('{"sender": 1e999999}', "invalid_frame"),
        ("[" * 32 + "]" * 32, "invalid_frame"),  # deep enough to parse, still not a send
    ],
)
async def test_parser_bombs_get_error_frames(ws, pair, text, code):
    alice, bob, token_a, _, path = pair
    room = await ws(path, token_a)
    await room.send_to(text_data=text)
    await expect_error(room, code)
    await room.send_json_to(frame(alice, bob, "[[[[" * 20))  # brackets in a string do not count
    assert (await receive(room))["content"] == "[[[[" * 20


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_writer")
async def test_an_exception_in_receive_is_an_error_frame_and_the_socket_goes_on(ws, pair, monkeypatch, caplog):
    alice, bob, token_a, _, path = pair
    room = await ws(path, token_a)
    original = consumers.RoomConsumer.handle

    async def crash_once(self, payload):
        if payload == ["crash"]:
            raise RuntimeError("boom")
        return await original(self, payload)

    monkeypatch.setattr(consumers.RoomConsumer, "handle", crash_once)
    with caplog.at_level(logging.ERROR, logger="habitto_chat.realtime.consumers"):
        await room.send_json_to(["crash"])
        await expect_error(room, "server_error")
    assert any(r.exc_info and "boom" in str(r.exc_info[1]) for r in caplog.records)
    await room.send_json_to(frame(alice, bob, "still here"))
    assert (await receive(room))["content"] == "still here"


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_writer")
async def test_a_failure_while_opening_closes_1011_and_leaves_nothing_registered(ws, pair, monkeypatch):
    alice, bob, token_a, _, path = pair

    async def broken(*args):
        raise RuntimeError("database away")

    monkeypatch.setattr(consumers, "_open_conversation", broken)
    room = await ws(path, token_a)
    output = await room.receive_output(WAIT)
    assert output["type"] == "websocket.close" and output["code"] == consumers.SERVER_ERROR
    assert registered(alice) == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_writer")
async def test_a_cancelled_socket_task_still_leaves_the_hub(ws, pair, settings):
    """A socket whose task dies without a disconnect message (cancelled, as a server does
    on shutdown or timeout) is unregistered all the same: no 4429 afterwards."""
    settings.HABITTO_CHAT = {**settings.HABITTO_CHAT, "MAX_SOCKETS_PER_USER": 2}
    alice, bob, token_a, _, path = pair
    for _ in range(3):
        sockets = [await ws(path, token_a) for _ in range(2)]
        assert registered(alice) == 2
        for socket in sockets:
            socket.future.cancel()
            with pytest.raises(asyncio.CancelledError):
                await socket.future
        assert registered(alice) == 0
    room = await ws(path, token_a)
    await room.send_json_to(frame(alice, bob, "back"))
    assert (await receive(room))["content"] == "back"


@pytest.mark.django_db
@pytest.mark.parametrize("depth,status", [(32, 400), (33, 400), (10_000, 400)])
def test_rest_bodies_nested_too_deep_are_400(client_for, make_user, depth, status):
    """Over MAX_JSON_DEPTH (32) the parser's own message; at 32 the serializer's 400."""
    alice = make_user()
    body = "[" * depth + "]" * depth
    response = client_for(alice).generic("POST", API, body, content_type="application/json")
    assert response.status_code == status, response.content
    too_deep = "nested too deeply" in response.json()["message"]
    assert too_deep is (depth > 32)
