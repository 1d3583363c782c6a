"""Every shape the chat puts on the wire, built here and nowhere else.

REST responses, room frames, inbox frames and realtime events all use these
functions, so a message looks the same wherever it appears (client-contract.md).
Events are plain JSON-safe dicts with a `type`; they travel through the channel layer
between processes and are turned into frames by the sockets that receive them.
"""

import functools
import json
from datetime import timezone

from .users import UserCard, absolute_picture

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def dumps(payload):
    """Compact JSON text for a frame."""
    return _dumps(payload)


@functools.lru_cache(maxsize=4096)  # a batch's messages share one timestamp
def iso(moment):
    """ISO 8601 in UTC with a `Z`: the app treats naive times as local."""
    if moment is None:
        return None
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


# --- messages ------------------------------------------------------------------------


def message_dict(message, is_read):
    """A message object: `sender` and `receiver` are ids, never objects."""
    return {
        "id": message.id,
        "sender": message.sender_id,
        "receiver": message.receiver_id,
        "content": message.content,
        "created_at": iso(message.created_at),
        "edited_at": iso(message.edited_at),
        "is_read": is_read,
        "client_id": message.client_id,
    }


def card_dict(card, base_url):
    return {
        "id": card.id,
        "username": card.username,
        "full_name": card.full_name,
        "profile_picture": absolute_picture(card.picture, base_url),
    }


def conversation_item(card, last_message, unread_count, base_url):
    return {
        "counterpart": card_dict(card, base_url),
        "last_message": last_message,
        "unread_count": unread_count,
    }


# --- realtime events (between processes) ---------------------------------------------


def card_event(card):
    """A user card inside an event: pictures stay relative, each socket makes them absolute."""
    return {"id": card.id, "username": card.username, "full_name": card.full_name, "picture": card.picture}


def message_created_events(messages, cards, read_up_to=None):
    """message.created events of stored messages (models or message_store rows), with
    {user_id: UserCard} (a missing card shows an empty name). The parts that repeat in a
    batch (each pair's recipients, pair and cards) are built once and shared: events are
    read-only once built. A new message is unread; a replayed one (`read_up_to`: message ->
    the receiver's last_read_id) may already be read."""
    shared, events = {}, []
    for m in messages:
        sender, receiver = m.sender_id, m.receiver_id
        parts = shared.get((sender, receiver))
        if parts is None:
            parts = shared[(sender, receiver)] = {
                "recipients": [sender, receiver],
                "pair": sorted((sender, receiver)),
                "cards": {
                    str(user_id): card_event(cards.get(user_id) or UserCard(user_id, "", ""))
                    for user_id in (sender, receiver)
                },
            }
        is_read = read_up_to is not None and m.id <= read_up_to(m)
        events.append({"type": "message.created", "message": message_dict(m, is_read), **parts})
    return events


def message_edited_event(message_payload):
    sender, receiver = message_payload["sender"], message_payload["receiver"]
    return {
        "type": "message.edited",
        "recipients": [sender, receiver],
        "pair": sorted((sender, receiver)),
        "message": message_payload,
    }


def message_deleted_event(message_id, sender_id, receiver_id):
    return {
        "type": "message.deleted",
        "recipients": [sender_id, receiver_id],
        "pair": sorted((sender_id, receiver_id)),
        "message_id": message_id,
    }


def thread_read_event(reader_id, other_id, last_read_id):
    # The reader's other devices and the other person (read receipts) both learn it.
    return {
        "type": "thread.read",
        "recipients": [reader_id, other_id],
        "pair": sorted((reader_id, other_id)),
        "reader": reader_id,
        "last_read_id": last_read_id,
    }


def conversation_cleared_event(user_id, other_id, cleared_before_id):
    # Private to the user who cleared: the other person must not learn it.
    return {
        "type": "conversation.cleared",
        "recipients": [user_id],
        "pair": sorted((user_id, other_id)),
        "cleared_before_id": cleared_before_id,
    }


def session_revoked_event(user_id, jti):
    """Logout revoked this access token: sockets opened with it close (4401)."""
    return {"type": "session.revoked", "recipients": [user_id], "pair": None, "jti": jti}


def user_deactivated_event(user_id):
    """The account was deactivated: all its sockets close (4401)."""
    return {"type": "user.deactivated", "recipients": [user_id], "pair": None}


SESSION_EVENTS = ("session.revoked", "user.deactivated")


def typing_event(user_id, other_id, state):
    """`user_id` started or stopped typing to `other_id`: to the other person's devices."""
    return {"type": "typing", "recipients": [other_id], "pair": sorted((user_id, other_id)), "user": user_id, "state": state}


def presence_event(user_id, contact_ids, online, last_seen):
    """`user_id`'s first device came up or last device went down: to their contacts."""
    return {
        "type": "presence",
        "recipients": list(contact_ids),
        "pair": None,
        "user": user_id,
        "online": online,
        "last_seen": iso(last_seen),
    }


# Ephemeral events only the device socket (/ws/v2/) carries.
DEVICE_EVENTS = ("typing", "presence")


# --- notifications -------------------------------------------------------------------


def notification_dict(notification):
    """A notification in a REST page (and in protocol 2's notification event). An empty
    title is null: the app then shows its own localized default title."""
    return {
        "id": notification.id,
        "kind": notification.kind,
        "title": notification.title or None,
        "message": notification.message,
        "data": notification.data,
        "is_read": notification.is_read,
        "created_at": iso(notification.created_at),
    }


def notification_created_event(notification_payload, recipient_id):
    """Private to its recipient, on every socket of theirs on every process."""
    return {
        "type": "notification.created",
        "recipients": [recipient_id],
        "pair": None,
        "notification": notification_payload,
    }


# --- frames for the legacy sockets ---------------------------------------------------


def room_frame(event):
    """What a legacy room socket receives: the message object plus the old backend's
    room keys, `room_id`/`roomId` ("<low>-<high>", a string as the seed sent it) and
    `createdAt` (= created_at). The same for every socket of the room."""
    message = event["message"]
    low, high = event["pair"]
    room_id = f"{low}-{high}"
    return {**message, "room_id": room_id, "roomId": room_id, "createdAt": message["created_at"]}


def inbox_frame(event, owner_id, base_url):
    """What a legacy inbox socket receives; the counterpart is relative to the owner."""
    message = event["message"]
    counterpart_id = message["receiver"] if message["sender"] == owner_id else message["sender"]
    counterpart = event["cards"][str(counterpart_id)]
    return {
        "message_id": message["id"],
        "id": message["id"],  # the app reads `message_id ?? id`
        "sender": message["sender"],
        "receiver": message["receiver"],
        "content": message["content"],
        "created_at": message["created_at"],
        "counterpart_id": counterpart_id,
        "counterpart_username": counterpart["username"],
        "counterpart_full_name": counterpart["full_name"],
        "counterpart_profile_picture": absolute_picture(counterpart["picture"], base_url),
    }


def error_frame(code, text):
    return {"error": text, "code": code}


# --- frames for the notification sockets (the old backend's shapes) --------------------
# /ws/property-notifications/<id>/ carried property_like, match_accepted and "general"
# frames (any other kind); /ws/tenant-notifications/<id>/ only match_accepted_by_owner
# (habitto_bk message/notification_consumers.py). Each known kind's frame lists its
# fields at the top level, taken from the notification's `data`.

NOTIFICATION_FRAME_FIELDS = {
    "property_like": ("property_id", "property_title", "interested_user"),
    "match_accepted": (
        "property_id", "property_title", "property_address", "owner_contact", "match_status", "next_steps",
    ),
    "match_accepted_by_owner": (
        "property_id", "property_title", "property_address", "owner_name", "owner_contact", "match_score",
        "next_steps",
    ),
}  # fmt: skip
TENANT_KINDS = frozenset({"match_accepted_by_owner"})
PROPERTY_AUDIENCE, TENANT_AUDIENCE = "property", "tenant"
# Keys a frame sets itself, or that the app reads in their place (`event` for `type`,
# `id` for `notification_id`): a notification's data may not use them.
NOTIFICATION_RESERVED_KEYS = frozenset({"type", "event", "timestamp", "notification_id", "id"})
LEGACY_INVALID_JSON = "JSON inválido"  # the old consumers' words


def notification_audience(kind):
    return TENANT_AUDIENCE if kind in TENANT_KINDS else PROPERTY_AUDIENCE


def notification_frame(event):
    """The old frame of a notification: a known kind's fields (then any other data keys,
    e.g. pending_requests_count, which the app reads) at the top level; any other kind
    is a general frame with its data nested."""
    notification = event["notification"]
    kind, data = notification["kind"], notification["data"]
    frame = {"type": kind}
    if kind in NOTIFICATION_FRAME_FIELDS:
        frame.update(data)
    else:
        frame.update(message=notification["message"], data=data)
    frame.update(timestamp=notification["created_at"], notification_id=notification["id"])
    return frame


def notification_welcome_frame(audience, moment):
    text = "Conectado a notificaciones de " + ("inquilino" if audience == TENANT_AUDIENCE else "propiedades")
    return {"type": "connection_established", "message": text, "timestamp": iso(moment)}


def pong_frame(moment):
    return {"type": "pong", "timestamp": iso(moment)}


def notification_error_frame(code, text):
    """The old consumers' error frame; a frame that is not JSON in their words."""
    return {"type": "error", "message": LEGACY_INVALID_JSON if code == "invalid_json" else text}


# --- frames for protocol 2 (opt-in: ?protocol=2) --------------------------------------

PROTOCOL_2 = "2"


def v2_frame(event, owner_id, base_url, replay=False):
    """Protocol 2 carries every event as {"type", ...}; inbox-style counterpart included.
    `replay`: sent again from the database by a device socket's sync, not live."""
    kind = event["type"]
    frame = {"type": kind}
    if kind in ("message.created", "message.edited"):
        frame["message"] = event["message"]
        cards = event.get("cards")
        if cards:
            message = event["message"]
            other = message["receiver"] if message["sender"] == owner_id else message["sender"]
            card = cards[str(other)]
            frame["counterpart"] = {
                "id": card["id"],
                "username": card["username"],
                "full_name": card["full_name"],
                "profile_picture": absolute_picture(card["picture"], base_url),
            }
    elif kind == "message.deleted":
        frame["message_id"] = event["message_id"]
    elif kind == "thread.read":
        frame.update(reader=event["reader"], last_read_id=event["last_read_id"])
    elif kind == "conversation.cleared":
        frame["cleared_before_id"] = event["cleared_before_id"]
    elif kind == "notification.created":
        frame["notification"] = event["notification"]
    elif kind == "typing":
        frame.update(user=event["user"], state=event["state"])
    elif kind == "presence":
        return {"type": kind, "user": event["user"], "online": event["online"], "last_seen": event["last_seen"]}
    frame["pair"] = event["pair"]
    if replay:
        frame["replay"] = True
    return frame


def v2_ack(client_id, message_id, created, ref=None):
    return _with_ref({"type": "ack", "client_id": client_id, "message_id": message_id, "duplicate": not created}, ref)


def v2_error(code, text, ref=None, client_id=None):
    frame = _with_ref({"type": "error", "code": code, "message": text}, ref)
    if client_id is not None:
        frame["client_id"] = client_id
    return frame


def _with_ref(frame, ref):
    """The client's `ref` of the frame this one answers (device socket), when it gave one."""
    if ref is not None:
        frame["ref"] = ref
    return frame


# --- frames of the device socket (/ws/v2/) ---------------------------------------------


def hello_frame(user_id, heartbeat):
    return {"type": "hello", "user_id": user_id, "protocol": PROTOCOL_2, "heartbeat": heartbeat}


def sync_done_frame(after_id, since, replayed):
    return {"type": "sync.done", "after_id": after_id, "since": since, "replayed": replayed}


def device_pong_frame(moment, nonce=None):
    frame = {"type": "pong", "server_time": iso(moment)}
    if nonce is not None:
        frame["nonce"] = nonce
    return frame


def presence_item(user_id, online, last_seen):
    return {"user": user_id, "online": online, "last_seen": iso(last_seen)}


def presence_snapshot_frame(items):
    """`items`: presence_item dicts of the contacts asked about."""
    return {"type": "presence.snapshot", "users": items}


def sync_cursor(moment):
    """The opaque `since` of sync.done (parsing.parse_cursor reads it back)."""
    return iso(moment)


# --- frame texts, serialized once per event ---------------------------------------------
# A socket renders its frame from the event and the event's `frames` cache, one dict per
# event shared by every socket it goes to: the first socket serializes, the rest reuse.


def room_text(event, frames):
    try:
        return frames["room"]
    except KeyError:
        text = frames["room"] = _dumps(room_frame(event))
        return text


def inbox_text(event, frames, owner_id, base_url):
    key = ("inbox", owner_id, base_url)
    try:
        return frames[key]
    except KeyError:
        text = frames[key] = _dumps(inbox_frame(event, owner_id, base_url))
        return text


def notification_text(event, frames, audience):
    """The frame for a notification socket of this audience, or None when the kind goes
    to the other one."""
    if notification_audience(event["notification"]["kind"]) != audience:
        return None
    try:
        return frames["notification"]
    except KeyError:
        text = frames["notification"] = _dumps(notification_frame(event))
        return text


def v2_text(event, frames, owner_id, base_url):
    key = ("v2", owner_id, base_url)
    try:
        return frames[key]
    except KeyError:
        text = frames[key] = _dumps(v2_frame(event, owner_id, base_url))
        return text
