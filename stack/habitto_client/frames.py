"""The legacy socket frames, built and read in one place.

Room socket, client -> server: {"sender", "receiver", "content"} and nothing else.
Room socket, server -> client: the stored message object, or {"error", "code"}.
Inbox socket, server -> client: {"message_id", "sender", "receiver", "content",
"created_at", "counterpart_id", "counterpart_username", "counterpart_full_name",
"counterpart_profile_picture"}.
"""

from typing import NamedTuple

from .errors import ChatError, ProtocolError


class ServerRejected(ChatError):
    """The server answered a room frame with {"error", "code"}: nothing was stored."""

    def __init__(self, code, error):
        self.code = code
        self.error = error
        super().__init__(f"{code}: {error}")


class RoomMessage(NamedTuple):
    id: int
    sender: int
    receiver: int
    content: str
    created_at: str
    client_id: str | None = None


class InboxFrame(NamedTuple):
    message_id: int
    sender: int
    receiver: int
    content: str
    created_at: str
    counterpart_id: int | None
    counterpart_username: str | None
    counterpart_full_name: str | None
    counterpart_profile_picture: str | None


ROOM_KEYS = ("id", "sender", "receiver", "content", "created_at")
INBOX_KEYS = ("message_id", "sender", "receiver", "content", "created_at")


def room_frame(sender, receiver, content):
    """The one frame a client sends on a room socket."""
    return {"sender": int(sender), "receiver": int(receiver), "content": content}


def send_frame(content, client_id):
    """Protocol 2, client -> server on a room socket: a send the server acknowledges by
    `client_id` (and stores once, however often it is repeated)."""
    return {"type": "message.send", "content": content, "client_id": client_id}


def is_error_frame(obj):
    return isinstance(obj, dict) and "error" in obj and "code" in obj and "id" not in obj


def read_room_frame(obj):
    """A server frame from a room socket -> RoomMessage; raises ServerRejected or ProtocolError."""
    if is_error_frame(obj):
        raise ServerRejected(obj.get("code"), obj.get("error"))
    try:
        return RoomMessage(int(obj["id"]), int(obj["sender"]), int(obj["receiver"]),
                           obj["content"], obj["created_at"], obj.get("client_id"))
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"not a room message frame: {obj!r}"[:300]) from exc


def read_inbox_frame(obj):
    """A server frame from an inbox socket -> InboxFrame; raises ProtocolError."""
    try:
        return InboxFrame(
            int(obj["message_id"]), int(obj["sender"]), int(obj["receiver"]),
            obj["content"], obj["created_at"], obj.get("counterpart_id"),
            obj.get("counterpart_username"), obj.get("counterpart_full_name"),
            obj.get("counterpart_profile_picture"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"not an inbox frame: {obj!r}"[:300]) from exc


# -- /ws/v2/, the device socket (docs/protocol.md): client -> server ------------------------------
# Every frame may carry "ref" (1-64 printable characters): the server copies it into the
# ack or error frame answering that frame.

def _v2(kind, ref, **fields):
    frame = {"type": kind, **fields}
    if ref is not None:
        frame["ref"] = ref
    return frame


def v2_send_frame(to, content, client_id, ref=None):
    """A message to user `to`; the server stores it once per client_id and answers with
    an ack, then message.created on every device of both users."""
    return _v2("send", ref, to=int(to), content=content, client_id=client_id)


def v2_edit_frame(message_id, content, ref=None):
    return _v2("edit", ref, message_id=int(message_id), content=content)


def v2_delete_frame(message_id, ref=None):
    return _v2("delete", ref, message_id=int(message_id))


def v2_read_frame(message_id, ref=None):
    """Marks the caller's received messages up to message_id read."""
    return _v2("read", ref, message_id=int(message_id))


def v2_typing_frame(to, state="start", ref=None):
    if state not in ("start", "stop"):
        raise ValueError(f"typing state {state!r}: start or stop")
    return _v2("typing", ref, to=int(to), state=state)


def v2_ping_frame(nonce=None, ref=None):
    return _v2("ping", ref) if nonce is None else _v2("ping", ref, nonce=nonce)


def v2_presence_query_frame(users, ref=None):
    return _v2("presence.query", ref, users=[int(u) for u in users])


def v2_sync_frame(after_id, since=None, recent=(), ref=None):
    """Resume: replay what is visible after after_id (and the changes since `since`)."""
    return _v2("sync", ref, after_id=int(after_id), since=since, recent=[int(i) for i in recent])
