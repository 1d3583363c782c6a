"""The chat's read queries: conversation list, thread, a user's messages, unread counts,
contacts and last seen (presence).

Each page costs a fixed number of queries whatever the number of conversations or
messages (tests/test_chat_queries.py counts them), and every ordering is by id.
"""

from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Count, F, Max, OuterRef, Q, Subquery, Sum

from . import wire
from .errors import NotFound
from .models import DeletedMessage, LastSeen, Message, Notification, Participant
from .users import user_cards


@dataclass
class Page:
    items: list
    count: int | None  # None for cursor pages: counting is what cursors avoid
    has_more: bool


def conversation_page(user_id, offset, limit, base_url):
    """The caller's conversations with a visible message, most recent first (4 queries)."""
    sides = Participant.objects.filter(
        user_id=user_id, last_message_id__isnull=False, last_message_id__gt=F("cleared_before_id")
    )
    count = sides.count()
    rows = list(
        sides.order_by("-last_message_id").values(
            "conversation_id", "other_user_id", "last_message_id", "last_read_id", "unread_count"
        )[offset : offset + limit]
    )
    if not rows:
        return Page([], count, False)
    messages = Message.objects.in_bulk([r["last_message_id"] for r in rows])
    other_read = dict(
        Participant.objects.filter(conversation_id__in=[r["conversation_id"] for r in rows])
        .exclude(user_id=user_id)
        .values_list("conversation_id", "last_read_id")
    )
    cards = user_cards([r["other_user_id"] for r in rows])
    items = []
    for row in rows:
        message, card = messages.get(row["last_message_id"]), cards.get(row["other_user_id"])
        if message is None or card is None:
            continue  # deleted concurrently: a null here would break the app's whole list
        read_up_to = row["last_read_id"] if message.receiver_id == user_id else other_read.get(row["conversation_id"], 0)
        items.append(
            wire.conversation_item(
                card, wire.message_dict(message, message.id <= read_up_to), row["unread_count"], base_url
            )
        )
    return Page(items, count, offset + limit < count)


def thread_page(user_id, other_id, *, before_id=None, after_id=None, offset=0, limit=50):
    """Messages between the caller and `other_id` that the caller has not cleared.

    Newest first, by page (offset) or before a cursor; `after_id` returns the messages
    after it, oldest first, for catching up after a reconnect. 3-4 queries.
    """
    sides = {
        side.user_id: side
        for side in Participant.objects.filter(
            Q(user_id=user_id, other_user_id=other_id) | Q(user_id=other_id, other_user_id=user_id)
        )
    }
    mine = sides.get(user_id)
    if mine is None:
        return Page([], 0 if before_id is None and after_id is None else None, False)
    theirs = sides.get(other_id)
    visible = Message.objects.filter(conversation_id=mine.conversation_id, id__gt=mine.cleared_before_id)
    count = None
    if after_id is not None:
        rows = list(visible.filter(id__gt=after_id).order_by("id")[: limit + 1])
    elif before_id is not None:
        rows = list(visible.filter(id__lt=before_id).order_by("-id")[: limit + 1])
    else:
        count = mine.visible_count
        rows = list(visible.order_by("-id")[offset : offset + limit + 1])
    has_more = len(rows) > limit
    rows = rows[:limit]
    reads = {user_id: mine.last_read_id, other_id: theirs.last_read_id if theirs else 0}
    return Page([wire.message_dict(m, m.id <= reads[m.receiver_id]) for m in rows], count, has_more)


def _with_receiver_read(messages, user_id):
    """Annotate what the receiver has read and what the caller has cleared (subqueries)."""
    side = Participant.objects.filter(conversation_id=OuterRef("conversation_id"))
    return messages.annotate(
        receiver_read=Subquery(side.filter(user_id=OuterRef("receiver_id")).values("last_read_id")[:1]),
        caller_cleared=Subquery(side.filter(user_id=user_id).values("cleared_before_id")[:1]),
    ).filter(id__gt=F("caller_cleared"))


def user_messages_page(user_id, *, before_id=None, offset=0, limit=50):
    """All messages the caller sent or received and has not cleared, newest first."""
    messages = _with_receiver_read(Message.objects.filter(Q(sender_id=user_id) | Q(receiver_id=user_id)), user_id)
    count = None
    if before_id is not None:
        rows = list(messages.filter(id__lt=before_id).order_by("-id")[: limit + 1])
    else:
        count = messages.count()
        rows = list(messages.order_by("-id")[offset : offset + limit + 1])
    has_more = len(rows) > limit
    return Page([wire.message_dict(m, m.id <= (m.receiver_read or 0)) for m in rows[:limit]], count, has_more)


def visible_message(user_id, message_id):
    """One message the caller sent or received and has not cleared; NotFound otherwise."""
    messages = _with_receiver_read(
        Message.objects.filter(Q(sender_id=user_id) | Q(receiver_id=user_id), pk=message_id), user_id
    )
    message = messages.first()
    if message is None:
        raise NotFound("No such message.", code="unknown_message")
    return wire.message_dict(message, message.id <= (message.receiver_read or 0))


def message_events_since(start, user_ids, limit):
    """message.created events of the messages created at or after `start` that `user_ids`
    sent or received, oldest first, with their creation time: [(event, created_at)], and
    whether `limit` cut the scan short. For gap repair (realtime/gaps.py): at most `limit`
    messages of all conversations are read, then filtered here; 3 queries."""
    # The newest id older than the window, found walking the primary key back from the
    # end, bounds the forward scan on the primary key (created_at has no index).
    floor = Message.objects.filter(created_at__lt=start).order_by("-id").values_list("id", flat=True).first()
    rows = list(
        Message.objects.filter(id__gt=floor or 0, created_at__gte=start).order_by("id")[: limit + 1]
    )
    truncated = len(rows) > limit
    users = set(user_ids)
    rows = [m for m in rows[:limit] if m.sender_id in users or m.receiver_id in users]
    cards = user_cards({m.sender_id for m in rows} | {m.receiver_id for m in rows})
    events = wire.message_created_events(rows, cards)
    return list(zip(events, (m.created_at for m in rows))), truncated


# --- a device socket's resume (realtime/device.py, docs/protocol.md) ---------------------

REPLAY_PAGE = 500  # messages per replay query
# Two processes can commit, or deliver, message ids out of order; a resume also replays
# what was created this long before the newest message the device holds.
RESUME_OVERLAP = timedelta(seconds=5)
# How far back the overlap looks, in messages: ids follow creation closely, so the
# overlap window is the top of the device's messages below after_id.
RESUME_OVERLAP_SCAN = 2000
# Changes are replayed from this long before the device's cursor (clocks of processes
# differ; an edit's time is set before its commit): replays may repeat, never miss.
CHANGES_MARGIN = timedelta(seconds=5)


def _visible_messages(user_id):
    return _with_receiver_read(Message.objects.filter(Q(sender_id=user_id) | Q(receiver_id=user_id)), user_id)


def _visible_by_id(user_id, limit, *, after_id=None, up_to_id=None):
    """The user's visible messages after `after_id` (oldest first) or up to `up_to_id`
    (newest first), at most `limit`: the sent and the received ones each read on their
    (sender, id) / (receiver, id) index with the limit, then merged (one query with OR
    would read and sort every matching message for each page)."""
    rows = []
    for side in ("sender_id", "receiver_id"):
        messages = Message.objects.filter(**{side: user_id})
        if after_id is not None:
            messages = messages.filter(id__gt=after_id).order_by("id")
        else:
            messages = messages.filter(id__lte=up_to_id).order_by("-id")
        rows += _with_receiver_read(messages, user_id)[:limit]
    rows.sort(key=lambda m: m.id, reverse=after_id is None)
    return rows[:limit]


def _replayed_events(rows):
    cards = user_cards({m.sender_id for m in rows} | {m.receiver_id for m in rows})
    return wire.message_created_events(rows, cards, read_up_to=lambda m: m.receiver_read or 0)


def replay_page(user_id, after_id, limit=REPLAY_PAGE):
    """message.created events of the messages the user sees (sent or received, not
    cleared) with id > after_id, oldest first, at most `limit` (3 queries)."""
    return _replayed_events(_visible_by_id(user_id, limit, after_id=after_id))


def resume_overlap(user_id, after_id, recent):
    """message.created events of the messages the user sees with id <= after_id created
    at most RESUME_OVERLAP before the newest of them, except those in `recent` (the ids
    the device holds there), oldest first (2-3 queries)."""
    rows = _visible_by_id(user_id, RESUME_OVERLAP_SCAN, up_to_id=after_id)
    if not rows:
        return []
    start = rows[0].created_at - RESUME_OVERLAP
    rows = [m for m in reversed(rows) if m.created_at >= start and m.id not in recent]
    return _replayed_events(rows) if rows else []


def changes_since(user_id, after_id, since):
    """Events of what changed since the cursor `since` (minus CHANGES_MARGIN) that a
    device holding messages up to after_id may have missed: edits and deletions of its
    messages, read pointers of its conversations (either side), its own clears (4 queries)."""
    start = since - CHANGES_MARGIN
    events = []
    edited = _visible_messages(user_id).filter(edited_at__gt=start, id__lte=after_id).order_by("id")
    for m in edited:
        events.append(wire.message_edited_event(wire.message_dict(m, m.id <= (m.receiver_read or 0))))
    deleted = DeletedMessage.objects.filter(
        Q(sender_id=user_id) | Q(receiver_id=user_id), deleted_at__gt=start, id__lte=after_id
    ).order_by("id")
    for tombstone in deleted:
        events.append(wire.message_deleted_event(tombstone.id, tombstone.sender_id, tombstone.receiver_id))
    reads = Participant.objects.filter(Q(user_id=user_id) | Q(other_user_id=user_id), read_at__gt=start)
    for side in reads.order_by("read_at"):
        events.append(wire.thread_read_event(side.user_id, side.other_user_id, side.last_read_id))
    for side in Participant.objects.filter(user_id=user_id, cleared_at__gt=start).order_by("cleared_at"):
        events.append(wire.conversation_cleared_event(user_id, side.other_user_id, side.cleared_before_id))
    return events


def newest_visible_id(user_id):
    """The id of the newest message the user sees, 0 if none (1 query)."""
    sides = Participant.objects.filter(user_id=user_id, last_message_id__gt=F("cleared_before_id"))
    return sides.aggregate(newest=Max("last_message_id"))["newest"] or 0


def has_conversation(user_id, other_id):
    """Whether the two users share a conversation (1 query)."""
    return Participant.objects.filter(user_id=user_id, other_user_id=other_id).exists()


def unread_total(user_id):
    return Participant.objects.filter(user_id=user_id).aggregate(total=Sum("unread_count"))["total"] or 0


def notification_page(user_id, *, is_read=None, offset=0, limit=50):
    """The caller's notifications, newest first, optionally only read or unread (2 queries,
    both on the (recipient, is_read, -id) or (recipient, -id) index)."""
    notifications = Notification.objects.filter(recipient_id=user_id)
    if is_read is not None:
        notifications = notifications.filter(is_read=is_read)
    count = notifications.count()
    rows = list(notifications.order_by("-id")[offset : offset + limit]) if offset < count else []
    return Page([wire.notification_dict(n) for n in rows], count, offset + limit < count)


def unread_notifications_by_kind(user_id):
    """{kind: unread count} of the caller's notifications (1 query)."""
    rows = (
        Notification.objects.filter(recipient_id=user_id, is_read=False)
        .values_list("kind")
        .annotate(unread=Count("id"))
        .order_by("kind")
    )
    return dict(rows)


CONTACTS_LIMIT = 500  # the most recent conversations whose people get a user's presence


def contact_ids(user_id, limit=CONTACTS_LIMIT):
    """The people sharing a conversation with the user, most recent conversation first
    (those without a message last), at most `limit` (1 query, on chat_participant_recent)."""
    return list(
        Participant.objects.filter(user_id=user_id)
        .order_by(F("last_message_id").desc(nulls_last=True), "-id")
        .values_list("other_user_id", flat=True)[:limit]
    )


def contacts_among(user_id, other_ids):
    """Those of `other_ids` who share a conversation with the user (1 query)."""
    return set(
        Participant.objects.filter(user_id=user_id, other_user_id__in=other_ids).values_list(
            "other_user_id", flat=True
        )
    )


def last_seen_of(user_ids):
    """{user id: when their last device socket closed} for those that have a record (1 query)."""
    return dict(LastSeen.objects.filter(user_id__in=user_ids).values_list("user_id", "seen_at"))
