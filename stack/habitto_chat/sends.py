"""Validation of one send, wherever it comes from: a REST body, a legacy room frame, a
protocol-2 frame or server-side code. Each check raises InvalidInput with the code
clients see (a 400 envelope or an error frame); what passes is a `SendRequest`.
"""

import unicodedata
from dataclasses import dataclass
from datetime import datetime

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

DEVICE_FRAME_TYPES = frozenset({"send", "edit", "delete", "read", "typing", "presence.query", "ping", "sync"})
MAX_REF = 64
MAX_RECENT_IDS = 1000  # the ids within 10 s of a client's newest message
MAX_PRESENCE_QUERY = 100
TYPING_STATES = frozenset({"start", "stop"})


@dataclass(frozen=True)
class SyncRequest:
    """A device's resume point: the highest message id it holds, the cursor of its last
    sync.done (None: no changes wanted), the ids it holds near its newest message."""

    after_id: int
    since: datetime | None = None
    recent: frozenset = frozenset()


def device_ref(frame):
    """The frame's `ref` (None without one), read before anything else so that every
    later error can carry it; invalid_frame for a frame that is no object."""
    if not isinstance(frame, dict):
        raise _frame_error("A frame must be a JSON object.")
    ref = frame.get("ref")
    if ref is not None and not (isinstance(ref, str) and 0 < len(ref) <= MAX_REF and ref.isprintable()):
        raise _frame_error(f"ref must be 1 to {MAX_REF} printable characters.")
    return ref


def device_frame_type(frame):
    """The type of a device frame (an object, device_ref); invalid_frame if unknown."""
    kind = frame.get("type")
    if kind not in DEVICE_FRAME_TYPES:
        raise _frame_error(f"Unknown frame type; expected one of {sorted(DEVICE_FRAME_TYPES)}.")
    return kind


def _id_value(frame, key):
    value = frame.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= parsing.MAX_ID:
        raise _frame_error(f"{key} must be a positive integer id.")
    return value


def device_client_id(frame):
    """The send's client_id, required on the device socket (it answers with it)."""
    client_id = frame.get("client_id")
    if client_id is None:
        raise InvalidInput("client_id is required.", code="invalid_client_id")
    return validate_client_id(client_id)


def device_send(frame):
    """{"type": "send", "to", "content", "client_id"} -> (to, content); the client_id
    is device_client_id's (checked first, so that later errors can name it)."""
    to = _id_value(frame, "to")
    return to, validate_content(frame.get("content"))


def device_edit(frame):
    """{"type": "edit", "message_id", "content"} -> (message_id, content)."""
    return _id_value(frame, "message_id"), validate_content(frame.get("content"))


def device_message_id(frame):
    """The message a delete or read frame names."""
    return _id_value(frame, "message_id")


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


def device_ping(frame):
    """A ping's optional nonce (echoed in the pong): a short string or an integer."""
    nonce = frame.get("nonce")
    if nonce is None or (isinstance(nonce, int) and not isinstance(nonce, bool) and abs(nonce) <= parsing.MAX_ID):
        return nonce
    if isinstance(nonce, str) and len(nonce) <= MAX_REF:
        return nonce
    raise _frame_error(f"nonce must be an integer or at most {MAX_REF} characters.")


def _cursor_error(text):
    return InvalidInput(text, code="invalid_cursor")


def _sync_request(after_id, since, recent):
    if isinstance(after_id, bool) or not isinstance(after_id, int) or not 0 <= after_id <= parsing.MAX_ID:
        raise _cursor_error("after_id must be an integer id, 0 for none.")
    if since is not None:
        try:
            since = parsing.parse_cursor(since)
        except ValueError:
            raise _cursor_error("since must be the cursor of a sync.done frame.") from None
    if recent is None:
        recent = []
    if not isinstance(recent, list) or len(recent) > MAX_RECENT_IDS:
        raise _cursor_error(f"recent must be a list of at most {MAX_RECENT_IDS} message ids.")
    if not all(isinstance(i, int) and not isinstance(i, bool) and 0 < i <= parsing.MAX_ID for i in recent):
        raise _cursor_error("recent must hold positive integer message ids.")
    return SyncRequest(after_id, since, frozenset(recent))


def device_sync(frame):
    """{"type": "sync", "after_id", "since"?, "recent"?} -> SyncRequest."""
    if "after_id" not in frame:
        raise _frame_error("sync needs after_id (0 when the device holds no message).")
    return _sync_request(frame["after_id"], frame.get("since"), frame.get("recent"))


def device_sync_query(query):
    """The same resume request in the socket URL's query ({name: [values]}, parse_qs):
    None when it has no after_id (no resume asked for)."""
    if "after_id" not in query:
        if "since" in query or "recent" in query:
            raise _cursor_error("since and recent need after_id.")
        return None
    try:
        after_id = parsing.parse_int(query["after_id"][-1], 0, parsing.MAX_ID)
        recent_text = query.get("recent", [""])[-1]
        recent = [parsing.parse_int(item.strip(), 1, parsing.MAX_ID) for item in recent_text.split(",") if item.strip()]
    except ValueError:
        raise _cursor_error("after_id and recent must be integer ids.") from None
    return _sync_request(after_id, query.get("since", [None])[-1], recent)
