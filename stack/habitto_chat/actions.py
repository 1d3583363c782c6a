"""The chat's write operations: every change a user can make goes through a `do_*` here.

Each one validates, writes inside a transaction and publishes its realtime events only
after that transaction commits (events.publish_on_commit), so REST, sockets and
server-side code produce the same events, and nothing is announced that could still
roll back. `do_send_messages` is the batch form the sockets use for group commit.
Notifications (docs/notifications.md): do_publish_notification, do_mark_notification_read.
Presence: do_record_last_seen (its events are the realtime layer's own: realtime/presence.py).
"""

import functools
import logging
from collections import defaultdict
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone

from . import wire
from .conversations import active_user_ids, check_counterpart, get_or_create_conversation, participant
from .errors import ChatError, Conflict, Forbidden, NotFound, StoreFailed
from .events import publish_on_commit
from .message_store import StoredMessage, insert_messages, messages_by_client_id
from .metrics import MESSAGES_STORED
from .models import Conversation, DeletedMessage, LastSeen, Message, Notification, Participant
from .notifications import validate_notification
from .quietsql import quiet_cursor, select_rows
from .sends import SendRequest, validate_client_id, validate_content
from .users import user_cards

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SendResult:
    message: StoredMessage
    created: bool  # False when a repeated client_id returned the message stored before


def do_open_conversation(user_id, other_id):
    """The conversation with an active other user, created with both sides if missing
    (a room socket opening); its id. NotFound when the other user is unknown or inactive."""
    check_counterpart(user_id, other_id)
    return get_or_create_conversation(user_id, other_id).id


def do_send_message(sender_id, receiver_id, content, client_id=None):
    """Validate and store one message (the REST and server-side path); raises the
    ChatError that refused it."""
    content = validate_content(content)
    client_id = validate_client_id(client_id)
    check_counterpart(sender_id, receiver_id)
    conversation = get_or_create_conversation(sender_id, receiver_id)
    request = SendRequest(sender_id, receiver_id, conversation.id, content, client_id)
    result = do_send_messages([request])[0]
    if isinstance(result, ChatError):
        raise result
    return result


def do_send_messages(requests):
    """Store already validated sends (group commit). Results keep the requests' order:
    each a SendResult, or the ChatError that refused that send alone; the rest of the
    batch is stored and announced in one publish whatever happened to one of them.

    A send is refused when its sender or receiver is no longer active (a room socket
    opened before a deactivation): read with the batch's user cards, one query. All
    sends go in one transaction; only when that fails are they stored again one by one,
    each in a savepoint, so the success case costs the same few statements for any batch
    size. No model instances: rows in, StoredMessages out (message_store)."""
    if not requests:
        return []
    user_ids = {r.sender_id for r in requests} | {r.receiver_id for r in requests}
    active, cards = _active_users_and_cards(user_ids)
    results = [_refusal(request, active) for request in requests]
    storable = [index for index, refused in enumerate(results) if refused is None]
    if storable:
        batch = [requests[index] for index in storable]
        try:
            stored = _store_together(batch, cards)
        except Exception as error:
            logger.warning("a batch of %d sends failed (%r); storing them one by one", len(batch), error)
            stored = _store_apart(batch, cards)
        for index, result in zip(storable, stored):
            results[index] = result
    return results


def _active_users_and_cards(user_ids):
    """(the active users among these, their cards): one query when the USER_CARDS hook
    reports `active` (both shipped hooks do), else one more for the users it did not."""
    cards = user_cards(user_ids)
    active = {pk for pk, card in cards.items() if card.active}
    unknown = [pk for pk in user_ids if pk not in cards or cards[pk].active is None]
    if unknown:
        active |= active_user_ids(unknown)
    return active, cards


def _refusal(request, active):
    if request.sender_id not in active:
        return Forbidden("This account is deactivated.", code="inactive_user")
    if request.receiver_id not in active:
        return NotFound("No such user.", code="unknown_user")
    return None


def _store_together(requests, cards):
    with transaction.atomic():
        _lock_conversations({r.conversation_id for r in requests})
        results, new_messages = _insert(requests)
        _publish_created(new_messages, cards)
    return results


def _store_apart(requests, cards):
    """The failure path: each send in its own savepoint, in order (ids still increase per
    conversation: the conversations stay locked until the one commit)."""
    results, new_messages = [], []
    with transaction.atomic():
        _lock_conversations({r.conversation_id for r in requests})
        for request in requests:
            try:
                with transaction.atomic():
                    (result,), created = _insert([request])
            except Exception as error:
                result, created = _after_failure(request, error), []
            results.append(result)
            new_messages += created
        _publish_created(new_messages, cards)
    return results


def _after_failure(request, error):
    """A send the database refused. With a client_id it may have lost a race with a
    concurrent send of the same client_id, which is now visible: that one is the answer."""
    if request.client_id is not None:
        stored = messages_by_client_id([request]).get((request.sender_id, request.client_id))
        if stored is not None:
            return _repeat(request, stored)
    logger.error("storing a message from user %s failed", request.sender_id, exc_info=error)
    return StoreFailed("The message could not be stored; send it again.")


def _insert(requests):
    """Inside the caller's transaction: insert the new messages and advance both sides;
    (results, new messages). A client_id seen before, stored or earlier in this batch,
    answers with its message."""
    stored = messages_by_client_id(requests)
    first_of = {}  # (sender, client_id) -> index in `new` of its first send in this batch
    new, plan = [], []  # plan: per request, a stored message or (index in new, first?)
    for request in requests:
        key = (request.sender_id, request.client_id)
        if request.client_id is not None and key in stored:
            plan.append(stored[key])
        elif request.client_id is not None and key in first_of:
            plan.append((first_of[key], False))
        else:
            if request.client_id is not None:
                first_of[key] = len(new)
            plan.append((len(new), True))
            new.append(request)
    new_messages = insert_messages(new)
    _advance_participants(new_messages)
    results = []
    for request, step in zip(requests, plan):
        if isinstance(step, StoredMessage):
            results.append(_repeat(request, step))
        elif step[1]:
            results.append(SendResult(new_messages[step[0]], True))
        else:
            results.append(_repeat(request, new_messages[step[0]]))
    return results, new_messages


def _repeat(request, stored):
    """A client_id used before: the same send again (same receiver) returns the stored
    message; reusing it for another receiver is a conflict, never the old message."""
    if stored.receiver_id == request.receiver_id:
        return SendResult(stored, False)
    return Conflict(
        "client_id was already used for a message to another user; use a new one.", code="client_id_conflict"
    )


def _publish_created(messages, cards):
    if messages:
        transaction.on_commit(functools.partial(MESSAGES_STORED.inc, len(messages)))
    publish_on_commit(wire.message_created_events(messages, cards))


def _lock_conversations(conversation_ids):
    """Sends into one conversation take turns from INSERT to COMMIT, so its ids commit in
    increasing order: otherwise a lower id committing after a higher one is skipped by a
    client catching up with ?after_id=. (SQLite already serializes writers.)"""
    if conversation_ids and connection.features.has_select_for_update:
        select_rows(Conversation.objects.select_for_update().filter(pk__in=conversation_ids).order_by("pk").values_list("pk"))


def _advance_participants(messages):
    """Newest message and unread counts of both sides: one statement per conversation of
    the batch, sent with executemany (raw SQL: the ORM's CASE-per-row bulk_update cost
    more than the inserts, see docs/realtime.md)."""
    if not messages:
        return
    newest, low_user, unread_low, unread_high = {}, {}, defaultdict(int), defaultdict(int)
    for m in messages:
        conversation = m.conversation_id
        newest[conversation] = max(newest.get(conversation, 0), m.id)
        low_user[conversation] = low = min(m.sender_id, m.receiver_id)
        (unread_low if m.receiver_id == low else unread_high)[conversation] += 1
    rows = [
        (newest_id, newest_id, low_user[c], unread_low[c], unread_high[c], unread_low[c] + unread_high[c], c)
        for c, newest_id in newest.items()
    ]
    with quiet_cursor() as cursor:
        cursor.executemany(_ADVANCE_SQL, rows)


# A batch committing after a newer one must not move the pointer back, hence the CASE.
_ADVANCE_SQL = """
UPDATE {table} SET
  {last} = CASE WHEN {last} IS NULL OR {last} < %s THEN %s ELSE {last} END,
  {unread} = {unread} + CASE WHEN {user} = %s THEN %s ELSE %s END,
  {visible} = {visible} + %s
WHERE {conversation} = %s
""".format(
    table=connection.ops.quote_name(Participant._meta.db_table),
    last=connection.ops.quote_name("last_message_id"),
    unread=connection.ops.quote_name("unread_count"),
    visible=connection.ops.quote_name("visible_count"),
    user=connection.ops.quote_name("user_id"),
    conversation=connection.ops.quote_name("conversation_id"),
)


def _own_message(user_id, message_id):
    message = Message.objects.select_for_update().filter(pk=message_id, sender_id=user_id).first()
    if message is None:
        raise NotFound("No such message.", code="unknown_message")
    return message


def do_edit_message(user_id, message_id, content):
    """Only the sender edits; returns the message payload as the REST API shows it."""
    content = validate_content(content)
    with transaction.atomic():
        message = _own_message(user_id, message_id)
        message.content = content
        message.edited_at = timezone.now()
        message.save(update_fields=["content", "edited_at"])
        receiver_read = (
            Participant.objects.filter(conversation_id=message.conversation_id, user_id=message.receiver_id)
            .values_list("last_read_id", flat=True)
            .first()
            or 0
        )
        payload = wire.message_dict(message, message.id <= receiver_read)
        publish_on_commit([wire.message_edited_event(payload)])
    return payload


def do_delete_message(user_id, message_id):
    """Only the sender deletes, for both sides; pointers and unread counts follow."""
    with transaction.atomic():
        message = _own_message(user_id, message_id)
        sides = list(Participant.objects.select_for_update().filter(conversation_id=message.conversation_id))
        message.delete()
        DeletedMessage.objects.create(
            id=message_id,
            conversation_id=message.conversation_id,
            sender_id=message.sender_id,
            receiver_id=message.receiver_id,
        )
        previous_id = (
            Message.objects.filter(conversation_id=message.conversation_id)
            .order_by("-id")
            .values_list("id", flat=True)
            .first()
        )
        for side in sides:
            if side.last_message_id == message_id:
                side.last_message_id = previous_id
            unseen = message_id > max(side.last_read_id, side.cleared_before_id)
            if side.user_id == message.receiver_id and unseen and side.unread_count > 0:
                side.unread_count -= 1
            if message_id > side.cleared_before_id and side.visible_count > 0:
                side.visible_count -= 1
        Participant.objects.bulk_update(sides, ["last_message_id", "unread_count", "visible_count"])
        publish_on_commit([wire.message_deleted_event(message_id, message.sender_id, message.receiver_id)])


def do_mark_read(user_id, message_id):
    """The receiver marks everything up to this message read; the sender's call is a no-op."""
    message = Message.objects.filter(pk=message_id, receiver_id=user_id).only("id", "sender_id").first()
    if message is None:
        if Message.objects.filter(pk=message_id, sender_id=user_id).exists():
            return  # your own message: nothing of yours to mark
        raise NotFound("No such message.", code="unknown_message")
    _advance_read(user_id, message.sender_id, message.id)


def do_mark_thread_read(user_id, other_id):
    check_counterpart(user_id, other_id, must_be_active=False)
    side = participant(user_id, other_id)
    if side is not None and side.last_message_id:
        _advance_read(user_id, other_id, side.last_message_id)


def _advance_read(user_id, other_id, up_to_id):
    with transaction.atomic():
        side = Participant.objects.select_for_update().filter(user_id=user_id, other_user_id=other_id).first()
        if side is None or up_to_id <= side.last_read_id:
            return
        side.last_read_id = up_to_id
        side.read_at = timezone.now()
        side.unread_count = Message.objects.filter(
            conversation_id=side.conversation_id,
            receiver_id=user_id,
            id__gt=max(up_to_id, side.cleared_before_id),
        ).count()
        side.save(update_fields=["last_read_id", "read_at", "unread_count"])
        publish_on_commit([wire.thread_read_event(user_id, other_id, up_to_id)])


def do_clear_conversation(user_id, other_id):
    """Hide everything so far from this user only: one UPDATE of their side, O(1) in messages."""
    check_counterpart(user_id, other_id, must_be_active=False)
    with transaction.atomic():
        side = Participant.objects.select_for_update().filter(user_id=user_id, other_user_id=other_id).first()
        if side is None or not side.last_message_id:
            return 0
        cleared = max(side.cleared_before_id, side.last_message_id)
        side.cleared_before_id = cleared
        side.cleared_at = timezone.now()
        side.last_read_id = max(side.last_read_id, cleared)
        side.unread_count = 0
        side.visible_count = 0
        side.save(
            update_fields=["cleared_before_id", "cleared_at", "last_read_id", "unread_count", "visible_count"]
        )
        publish_on_commit([wire.conversation_cleared_event(user_id, other_id, cleared)])
    return cleared


def do_publish_notification(recipient_id, kind, message, *, title="", data=None):
    """Store a notification for one user and, once committed, deliver it to every socket of
    theirs on any process (the notification socket of its kind, protocol-2 inboxes).
    Inside a caller's transaction it is delivered when that transaction commits."""
    request = validate_notification(recipient_id, kind, message, title=title, data=data)
    if not get_user_model()._default_manager.filter(pk=request.recipient_id).exists():
        raise NotFound("No such user.", code="unknown_user")
    with transaction.atomic():
        notification = Notification.objects.create(
            recipient_id=request.recipient_id,
            kind=request.kind,
            title=request.title,
            message=request.message,
            data=request.data,
        )
        publish_on_commit(
            [wire.notification_created_event(wire.notification_dict(notification), request.recipient_id)]
        )
    return notification


def do_mark_notification_read(user_id, notification_id):
    """Only the recipient marks a notification read (anyone else's is NotFound); idempotent.
    Returns the notification as the REST API shows it."""
    notification = Notification.objects.filter(pk=notification_id, recipient_id=user_id).first()
    if notification is None:
        raise NotFound("No such notification.", code="unknown_notification")
    if not notification.is_read:
        Notification.objects.filter(pk=notification.pk).update(is_read=True)
        notification.is_read = True
    return wire.notification_dict(notification)


def do_record_last_seen(user_id, when):
    """Store when the user's last device socket closed; never moves it back (a process
    sweeping a lapsed connection after Redis returns may report an older moment). No
    event: the realtime layer announces presence itself (realtime/presence.py)."""
    with transaction.atomic():
        if not LastSeen.objects.filter(user_id=user_id, seen_at__lt=when).update(seen_at=when):
            LastSeen.objects.get_or_create(user_id=user_id, defaults={"seen_at": when})
