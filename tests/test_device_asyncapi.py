"""docs/asyncapi.yaml is true to the code: a session on /ws/v2/ that makes the server send
every kind of frame, each frame checked against the document's schema for its `type`,
and every frame the session sends checked against the client side of the document."""

from pathlib import Path

import jsonschema
import pytest
import yaml
from asgiref.sync import sync_to_async

from habitto_chat import actions

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_writer")]

DOC = yaml.safe_load((Path(__file__).resolve().parent.parent / "docs" / "asyncapi.yaml").read_text())


def _resolve(node):
    """The document with every local $ref replaced by what it points at."""
    if isinstance(node, dict):
        if set(node) == {"$ref"}:
            target = DOC
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            return _resolve(target)
        return {key: _resolve(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolve(item) for item in node]
    return node


def _schemas_by_type(operation):
    """{frame type: payload schema} of one operation's messages."""
    schemas = {}
    for message in _resolve(DOC["operations"][operation]["messages"]):
        payload = message["payload"]
        parts = payload.get("allOf", [payload])
        frame_type = next(p["properties"]["type"]["const"] for p in parts if "type" in p.get("properties", {}))
        schemas[frame_type] = payload
    return schemas


SERVER_FRAMES = _schemas_by_type("receiveFromServer")
CLIENT_FRAMES = _schemas_by_type("sendToServer")
ERROR_CODES = set(_resolve(DOC["components"]["schemas"]["errorCode"])["enum"])


def check(frame, schemas):
    assert frame["type"] in schemas, f"{frame['type']} is not in docs/asyncapi.yaml"
    jsonschema.validate(frame, schemas[frame["type"]], cls=jsonschema.Draft202012Validator)
    return frame


class Device:
    """A /ws/v2/ socket whose every frame, both ways, is checked against the document."""

    def __init__(self, socket):
        self.socket = socket
        self.seen = []

    async def send(self, frame):
        await self.socket.send_json_to(check(frame, CLIENT_FRAMES))

    async def receive(self):
        frame = check(await self.socket.receive_json_from(timeout=3), SERVER_FRAMES)
        self.seen.append(frame)
        return frame

    async def until(self, frame_type):
        while True:
            frame = await self.receive()
            if frame["type"] == frame_type:
                return frame


async def test_every_frame_of_a_session_matches_the_asyncapi_document(ws, pair, make_user):
    alice, bob, token_a, token_b, _ = pair
    # An earlier message and a conversation, so the resume below has something to replay.
    earlier = await sync_to_async(actions.do_send_message)(bob.pk, alice.pk, "¿sigue disponible?")
    a = Device(await ws("/ws/v2/", token_a))
    b = Device(await ws("/ws/v2/", token_b))
    await a.until("hello")
    await b.until("hello")
    await a.send({"type": "sync", "after_id": 0, "since": None, "recent": []})
    replayed = await a.until("message.created")
    assert replayed["replay"] is True and replayed["message"]["id"] == earlier.message.id
    done = await a.until("sync.done")
    await a.send({"type": "ping", "nonce": "n1", "ref": "p1"})
    await a.until("pong")
    await a.send({"type": "send", "to": bob.pk, "content": "sí, el sábado", "client_id": "doc-1"})
    ack = await a.until("ack")
    await b.until("message.created")
    await a.send({"type": "edit", "message_id": ack["message_id"], "content": "sí, el domingo"})
    await b.until("message.edited")
    await b.send({"type": "read", "message_id": ack["message_id"]})
    await a.until("thread.read")
    await a.send({"type": "typing", "to": bob.pk, "state": "start"})
    await b.until("typing")
    await a.send({"type": "presence.query", "users": [bob.pk]})
    await a.until("presence.snapshot")
    await a.send({"type": "delete", "message_id": ack["message_id"]})
    await b.until("message.deleted")
    await sync_to_async(actions.do_publish_notification)(alice.pk, "general", "Nueva visita")
    await a.until("notification.created")
    # Clears reach the clearer's other devices only.
    a2 = Device(await ws("/ws/v2/", token_a))
    await a2.until("hello")
    await sync_to_async(actions.do_clear_conversation)(alice.pk, bob.pk)
    await a2.until("conversation.cleared")
    # A contact's device closing is a presence frame for the others.
    b3 = Device(await ws("/ws/v2/", token_b))
    await b3.until("hello")
    await b.socket.disconnect()
    await b3.socket.disconnect()
    offline = await a.until("presence")
    while offline["online"]:  # bob's own arrival, before
        offline = await a.until("presence")
    assert offline["user"] == bob.pk and offline["last_seen"] is not None
    # An error, with the client's ref copied.
    await a.send({"type": "edit", "message_id": earlier.message.id, "content": "not mine", "ref": "e1"})
    error = await a.until("error")
    assert error["code"] == "unknown_message" and error["ref"] == "e1"
    assert done["after_id"] >= earlier.message.id

    seen = {frame["type"] for frame in a.seen + a2.seen + b.seen}
    assert seen == set(SERVER_FRAMES), f"not exercised: {set(SERVER_FRAMES) - seen}"


def test_the_documented_error_codes_are_the_ones_the_protocol_doc_lists():
    text = (Path(__file__).resolve().parent.parent / "docs" / "protocol.md").read_text()
    section = text[text.index("## `/ws/v2/`") :]
    assert all(f"`{code}`" in section for code in ERROR_CODES), ERROR_CODES
