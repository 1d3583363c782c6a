"""Validation of one send, wherever it comes from: a REST body, a legacy room frame, a
protocol-2 frame or server-side code. Each check raises InvalidInput with the code
clients see (a 400 envelope or an error frame); what passes is a `SendRequest`.
"""

from dataclasses import dataclass

from .conf import chat_setting
from .errors import InvalidInput

MAX_CLIENT_ID = 64
LEGACY_KEYS = frozenset({"sender", "receiver", "content"})
V2_KEYS = frozenset({"type", "content", "client_id"})


@dataclass(frozen=True)
class SendRequest:
    """A validated send, ready for actions.do_send_messages."""

    sender_id: int
    receiver_id: int
    conversation_id: int
    content: str
    client_id: str | None = None


def validate_content(content):
    if not isinstance(content, str):
        raise InvalidInput("content must be a string.", code="invalid_content")
    if not content.strip():
        raise InvalidInput("content must not be empty.", code="empty_content")
    limit = chat_setting("MAX_CONTENT_LENGTH")
    if len(content) > limit:
        raise InvalidInput(f"content is longer than {limit} characters.", code="content_too_long")
    if "\x00" in content:
        raise InvalidInput("content must not contain NUL characters.", code="invalid_content")
    return content


def validate_client_id(client_id):
    """The sender's idempotency key (optional): a repeated one returns the stored message."""
    if client_id is None:
        return None
    if not isinstance(client_id, str) or not 0 < len(client_id) <= MAX_CLIENT_ID:
        raise InvalidInput(
            f"client_id must be a string of 1 to {MAX_CLIENT_ID} characters.", code="invalid_client_id"
        )
    return client_id


def _frame_error(text, code="invalid_frame"):
    return InvalidInput(text, code=code)


def legacy_room_send(frame, user_id, other_id, conversation_id):
    """The shipped app's room frame {"sender", "receiver", "content"}: exactly these keys,
    the sender the authenticated user, the receiver the room's other participant."""
    if not isinstance(frame, dict):
        raise _frame_error("A frame must be a JSON object.")
    keys = frame.keys()
    if keys != LEGACY_KEYS:
        unknown, missing = keys - LEGACY_KEYS, LEGACY_KEYS - keys
        detail = f"unknown keys {sorted(unknown)}" if unknown else f"missing keys {sorted(missing)}"
        raise _frame_error(f"Expected sender, receiver and content: {detail}.")
    sender, receiver = frame["sender"], frame["receiver"]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (sender, receiver)):
        raise _frame_error("sender and receiver must be integer ids.")
    if sender != user_id:
        raise _frame_error("sender must be the authenticated user.", "forged_sender")
    if receiver != other_id:
        raise _frame_error("receiver must be the other participant of this room.", "wrong_receiver")
    return SendRequest(user_id, other_id, conversation_id, validate_content(frame["content"]))


def v2_room_send(frame, user_id, other_id, conversation_id):
    """Protocol 2: {"type": "message.send", "content", "client_id"?}; the receiver is the
    room's other participant."""
    if not isinstance(frame, dict) or frame.get("type") != "message.send":
        raise _frame_error('Expected {"type": "message.send", ...}.')
    unknown = frame.keys() - V2_KEYS
    if unknown:
        raise _frame_error(f"unknown keys {sorted(unknown)}.")
    content = validate_content(frame.get("content"))
    client_id = validate_client_id(frame.get("client_id"))
    return SendRequest(user_id, other_id, conversation_id, content, client_id)
