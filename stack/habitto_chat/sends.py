"""Validation of one send, wherever it comes from: a REST body, a legacy room frame, a
protocol-2 frame or server-side code. Each check raises InvalidInput with the code
clients see (a 400 envelope or an error frame); what passes is a `SendRequest`.
"""

import unicodedata
from dataclasses import dataclass

from . import parsing
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


# What shows nothing on screen: controls, format characters (zero-width space and joiners,
# BOM, direction marks), spaces of every width (no-break included), line and paragraph
# separators, and the letters that are blank by design (Hangul fillers, the braille blank).
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
# A character can decompose into at most 4 (NFD), so composing (NFC) shrinks text at most
# 4 times: longer text is refused before normalising it.
_MAX_NFC_SHRINK = 4


def _visible(char):
    return unicodedata.category(char) not in _INVISIBLE_CATEGORIES and char not in _BLANK_LETTERS


def validate_content(content):
    """Message text as it will be stored (unchanged: the app matches its echo by text):
    a string that UTF-8 can encode (no lone surrogates: they fail only when the database
    stores them), without NUL, showing at least one visible character, and at most
    MAX_CONTENT_LENGTH characters once NFC-normalised (a decomposed "é" counts as one)."""
    if not isinstance(content, str):
        raise InvalidInput("content must be a string.", code="invalid_content")
    if "\x00" in content:
        raise InvalidInput("content must not contain NUL characters.", code="invalid_content")
    limit = chat_setting("MAX_CONTENT_LENGTH")
    if not content.isascii():
        try:
            content.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInput("content must be valid Unicode text (no lone surrogates).", code="invalid_content") from None
        if len(content) <= limit * _MAX_NFC_SHRINK:
            length = len(unicodedata.normalize("NFC", content))
        else:
            length = len(content)
    else:
        length = len(content)
    if length > limit:
        raise InvalidInput(f"content is longer than {limit} characters.", code="content_too_long")
    if not any(map(_visible, content)):
        raise InvalidInput("content must not be empty or only invisible characters.", code="empty_content")
    return content


def validate_client_id(client_id):
    """The sender's idempotency key (optional): a repeat to the same receiver returns the
    stored message, to another receiver is a conflict (actions.do_send_messages)."""
    if client_id is None:
        return None
    if not isinstance(client_id, str) or not 0 < len(client_id) <= MAX_CLIENT_ID or not client_id.isprintable():
        raise InvalidInput(
            f"client_id must be 1 to {MAX_CLIENT_ID} printable characters.", code="invalid_client_id"
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


# --- the device socket's frames (/ws/v2/, docs/protocol.md) ---------------------------
# Unknown keys are ignored (a newer client may send more); a missing or mistyped key is
# invalid_frame, a bad value has its own code.

MAX_PRESENCE_QUERY = 100
TYPING_STATES = frozenset({"start", "stop"})


def _id_value(frame, key):
    value = frame.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= parsing.MAX_ID:
        raise _frame_error(f"{key} must be a positive integer id.")
    return value


def device_typing(frame):
    """{"type": "typing", "to", "state"} -> (to, state)."""
    to = _id_value(frame, "to")
    state = frame.get("state")
    if state not in TYPING_STATES:
        raise _frame_error('state must be "start" or "stop".')
    return to, state


def device_presence_query(frame):
    """{"type": "presence.query", "users": [ids]} -> the distinct ids, in order."""
    users = frame.get("users")
    if not isinstance(users, list) or len(users) > MAX_PRESENCE_QUERY:
        raise _frame_error(f"users must be a list of at most {MAX_PRESENCE_QUERY} user ids.")
    if not all(isinstance(u, int) and not isinstance(u, bool) and 0 < u <= parsing.MAX_ID for u in users):
        raise _frame_error("users must be positive integer ids.")
    return list(dict.fromkeys(users))
