"""Random and malformed frames at room and inbox sockets of both protocols (hypothesis):
random bytes, binary frames, deep nesting, wrong types, huge numbers and strings, unicode
edge cases (lone surrogates, invisible characters, decomposed text).

For every example: each frame gets exactly one answer (an error frame, or the echo /
ack of a valid send), the socket is never closed, nothing is logged at ERROR and no
exception leaves the consumer; then a valid send still works on the same socket.
"""

import json
import logging
import uuid

import pytest
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_writer")]

WAIT = 5
MAX_FRAME = 65536

# Every code point, lone surrogates included (hypothesis leaves them out by default).
any_char = st.characters(exclude_categories=())
edge_chars = st.sampled_from(
    ["\ud800", "\udfff", "\x00", "\u00a0", "\u200b", "\u200d", "\ufeff", "\u202e", "\u3164", "\u2800",
     "e\u0301", "\u0958", "\U0001f642", "\uffff", "\U0010ffff", "\n", "\\", '"', "[", "{"]
)
texts = st.one_of(
    st.text(any_char, max_size=40),
    st.lists(edge_chars, max_size=20).map("".join),
    st.integers(3990, 4010).map(lambda n: "y" * n),
    st.integers(1990, 2010).map(lambda n: "e\u0301" * n),
)
numbers = st.one_of(
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 2**63, 2**64, True, False]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4), max_leaves=12
)


def shaped_sends(user_ids):
    """Frames that look like sends, with every field possibly wrong."""
    ids = st.one_of(st.sampled_from(user_ids), numbers, texts, st.none())
    legacy = st.fixed_dictionaries(
        {"sender": ids, "receiver": ids, "content": st.one_of(texts, json_values)},
        optional={"client_id": texts, "type": texts},
    )
    v2 = st.fixed_dictionaries(
        {"type": st.sampled_from(["message.send", "message.edit", "", "typing"]) | texts},
        optional={"content": st.one_of(texts, json_values), "client_id": st.one_of(texts, numbers, st.none()),
                  "extra": json_values},
    )
    return (legacy | v2).map(json.dumps)


raw_texts = st.one_of(
    st.text(any_char, max_size=200),  # mostly not JSON
    st.integers(1, 20_000).map(lambda n: "[" * n),
    st.integers(1, 20_000).map(lambda n: "[" * n + "]" * n),
    st.integers(1, 3_000).map(lambda n: '{"a":' * n + "0" + "}" * n),
    st.integers(4_000, 6_000).map(lambda n: "9" * n),  # more digits than int() takes
    st.sampled_from(["1e999999", "-1e999999", "NaN", "Infinity", "null", "[]", "{}", '""', "\ufeff{}"]),
    st.integers(MAX_FRAME - 50, MAX_FRAME + 50).map(lambda n: json.dumps({"content": "z" * n})),
    json_values.map(json.dumps),
)


def frames_for(user_ids):
    text_frames = st.one_of(raw_texts, shaped_sends(user_ids)).map(lambda text: ("text", text))
    binary_frames = st.binary(max_size=300).map(lambda data: ("bytes", data))
    return st.lists(st.one_of(text_frames, binary_frames), min_size=1, max_size=4)


def error_frame(frame, v2):
    if v2:
        return set(frame) == {"type", "code", "message"} and frame["type"] == "error"
    return set(frame) == {"error", "code"}


@pytest.fixture
def people(make_user, token_for, settings):
    # Valid random sends must not run into the rate limit over hundreds of examples.
    settings.HABITTO_CHAT = {**settings.HABITTO_CHAT, "SEND_RATE_PER_SECOND": 10_000.0, "SEND_BURST": 10_000}
    alice, bob = make_user("alice"), make_user("bob")
    low, high = sorted((alice.pk, bob.pk))
    return alice, bob, token_for(alice), f"/ws/chat/{low}-{high}/", f"/ws/chat/inbox/{alice.pk}/"


@pytest.mark.parametrize("kind", ["room", "inbox"])
@pytest.mark.parametrize("protocol", ["legacy", "v2"])
@hypothesis_settings(
    max_examples=40, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
async def test_random_frames_get_answers_and_the_socket_keeps_working(ws, people, caplog, kind, protocol, data):
    alice, bob, token, room_path, inbox_path = people
    caplog.set_level(logging.WARNING)
    errors_before = len([r for r in caplog.records if r.levelno >= logging.ERROR])
    v2 = protocol == "v2"
    query = f"?token={token}" + ("&protocol=2" if v2 else "")
    socket = await ws((room_path if kind == "room" else inbox_path) + query)
    frames = data.draw(frames_for([alice.pk, bob.pk]))

    for form, payload in frames:  # send_input: send_to() refuses empty frames
        await socket.send_input({"type": "websocket.receive", form: payload})

    # A valid send after them all: on a room socket from this socket, on an inbox from a room.
    marker = uuid.uuid4().hex
    sender = socket if kind == "room" else await ws(room_path + query)
    if v2:
        await sender.send_json_to({"type": "message.send", "content": marker, "client_id": marker})
    else:
        await sender.send_json_to({"sender": alice.pk, "receiver": bob.pk, "content": marker})

    answers, seen = 0, []
    while True:
        output = await socket.receive_output(WAIT)
        assert output["type"] == "websocket.send", f"closed or odd output {output} after {frames!r}"
        frame = json.loads(output["text"])
        seen.append(frame)
        if error_frame(frame, v2):
            answers += 1
        elif kind == "room" and v2 and frame.get("type") == "ack":
            if frame["client_id"] == marker:
                break
            answers += 1
        elif kind == "room" and not v2:
            assert {"id", "sender", "content"} <= set(frame), frame
            if frame["content"] == marker:
                break
            answers += 1  # the echo of a valid random send
        elif kind == "inbox" and (frame.get("content") == marker or frame.get("message", {}).get("content") == marker):
            break
        else:
            assert kind == "room" and v2 and frame["type"] == "message.created", frame
    assert answers == len(frames), (frames, seen)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR][errors_before:] == []
    await socket.disconnect(WAIT)  # re-raises anything that escaped the consumer
    if sender is not socket:
        await sender.disconnect(WAIT)
