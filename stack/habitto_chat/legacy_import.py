"""Import the old habitto_bk backend's users, chat messages and notifications
(docs/cutover.md has the mapping, its limits and the cut-over procedure).

The source is the old PostgreSQL database, read in one REPEATABLE READ read-only
snapshot with server-side cursors, `batch_size` rows at a time; each batch is written
to this project's default database in its own transaction. Every step is an upsert keyed
by the old ids, so running the import again converges on the source instead of
duplicating anything. Rows are written directly, not through actions.py: the import
keeps old ids, publishes no realtime events (nobody is connected during a cut-over) and
sets the participants' counters from the whole history at once.
"""

from collections import Counter
from dataclasses import dataclass, field

import psycopg
from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist
from django.core.management.color import no_style
from django.db import connection, transaction
from django.db.models import Exists, OuterRef
from django.db.models.functions import Lower
from psycopg.rows import dict_row

from .models import Conversation, Message, Notification, Participant

# The old table has no kind: every old notification was a plain text one.
LEGACY_NOTIFICATION_KIND = "general"
# The app's user_type values (the old backend's) and their English aliases.
USER_TYPE_ALIASES = {"inquilino": "tenant", "propietario": "owner", "agente": "agent"}
USER_FIELDS = [
    "password", "last_login", "is_superuser", "username", "first_name",
    "last_name", "email", "is_staff", "is_active", "date_joined",
]  # fmt: skip
STEPS = ("users", "messages", "notifications")
SOURCE_CONNECT_TIMEOUT_SECONDS = 10
SOURCE_STATEMENT_TIMEOUT_MS = 300_000


class LegacyImportError(Exception):
    """The import cannot go on without losing or mixing up data; nothing of the
    current batch was written."""


@dataclass
class StepSummary:
    name: str
    counts: Counter = field(default_factory=Counter)


class LegacySource:
    """The old database, read in one consistent snapshot."""

    def __init__(self, url, batch_size):
        self.batch_size = batch_size
        self.connection = psycopg.connect(
            url,
            connect_timeout=SOURCE_CONNECT_TIMEOUT_SECONDS,
            options=f"-c statement_timeout={SOURCE_STATEMENT_TIMEOUT_MS}",
            row_factory=dict_row,
        )
        self.connection.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        self.connection.read_only = True

    def close(self):
        self.connection.close()

    def scalar(self, sql):
        with self.connection.cursor() as cursor:
            row = cursor.execute(sql).fetchone()
            return next(iter(row.values()))

    def batches(self, name, sql):
        """Lists of rows, `batch_size` at a time, from a server-side cursor."""
        with self.connection.cursor(name=f"legacy_{name}") as cursor:
            cursor.itersize = self.batch_size
            cursor.execute(sql)
            while rows := cursor.fetchmany(self.batch_size):
                yield rows


def run_import(source, steps=STEPS, dry_run=False):
    """Run the steps in order; returns their summaries. A dry run does all the work in
    one transaction and rolls it back, so its summary is exactly what a real run does."""
    if dry_run:
        with transaction.atomic():
            summaries = [_STEP_FUNCTIONS[step](source) for step in steps]
            transaction.set_rollback(True)
        return summaries
    # Each batch commits on its own: a failure keeps the batches before it, and a re-run
    # picks up from there.
    summaries = [_STEP_FUNCTIONS[step](source) for step in steps]
    # Explicit ids do not advance PostgreSQL sequences: the next new row would collide.
    _reset_sequences([get_user_model(), Message, Notification])
    return summaries


def _reset_sequences(models):
    statements = connection.ops.sequence_reset_sql(no_style(), models)
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


# --- users -----------------------------------------------------------------------

USERS_SQL = """
SELECT u.id, u.password, u.last_login, u.is_superuser, u.username, u.first_name,
       u.last_name, u.email, u.is_staff, u.is_active, u.date_joined,
       p.user_type, p.phone, p.profile_picture
FROM auth_user u LEFT JOIN user_userprofile p ON p.user_id = u.id
ORDER BY u.id
"""


def import_users(source):
    """auth_user rows by id with their password hashes as they are, and their profile
    (user_userprofile) when this project has the accounts Profile model."""
    summary = StepSummary("users")
    User = get_user_model()
    fields = [name for name in USER_FIELDS if _has_field(User, name)]
    profile_model = _profile_model()
    _check_case_clashes(source)
    for rows in source.batches("users", USERS_SQL):
        with transaction.atomic():
            _check_usernames(User, rows)
            existing = User._default_manager.in_bulk([row["id"] for row in rows])
            new, changed = [], []
            for row in rows:
                values = {name: row[name] for name in fields}
                user = existing.get(row["id"])
                if user is None:
                    new.append(User(id=row["id"], **values))
                elif _assign_changes(user, values):
                    changed.append(user)
            User._default_manager.bulk_create(new)
            User._default_manager.bulk_update(changed, fields)
            summary.counts.update(read=len(rows), created=len(new), updated=len(changed))
            summary.counts["unchanged"] += len(rows) - len(new) - len(changed)
            if profile_model is not None:
                _import_profiles(profile_model, rows, summary)
    if profile_model is None:
        summary.counts["profiles_not_imported_no_profile_model"] += summary.counts["read"]
    return summary


# The old backend compared usernames and emails case-sensitively; here both are unique
# whatever their case (lower() indexes, docs/accounts.md), so such pairs need a person.
CASE_CLASHES_SQL = """
SELECT 'username' AS field, lower(username) AS value, string_agg(id::text, ', ' ORDER BY id) AS ids
FROM auth_user GROUP BY lower(username) HAVING count(*) > 1
UNION ALL
SELECT 'email', lower(email), string_agg(id::text, ', ' ORDER BY id)
FROM auth_user WHERE email <> '' GROUP BY lower(email) HAVING count(*) > 1
"""


def _check_case_clashes(source):
    clashes = [row for rows in source.batches("case_clashes", CASE_CLASHES_SQL) for row in rows]
    if clashes:
        listed = "; ".join(f"{row['field']} {row['value']!r}: old ids {row['ids']}" for row in clashes)
        raise LegacyImportError(
            f"old users differ only in the case of their username or email, which this server "
            f"keeps unique whatever the case; rename or merge them first: {listed}"
        )


def _check_usernames(User, rows):
    by_name = {row["username"].lower(): row["id"] for row in rows}
    taken = (
        User._default_manager.annotate(username_lower=Lower("username"))
        .filter(username_lower__in=list(by_name))
        .values_list("id", "username_lower")
    )
    clashes = [(name, pk) for pk, name in taken if by_name[name] != pk]
    if clashes:
        listed = ", ".join(f"{name!r} (old id {by_name[name]}, here id {pk})" for name, pk in clashes)
        raise LegacyImportError(f"usernames already taken by other users here: {listed}")


def _profile_model():
    try:
        return apps.get_model("accounts", "Profile")
    except LookupError:
        return None


def _import_profiles(Profile, rows, summary):
    """One profile per user (users created by bulk_create get no post_save profile)."""
    existing = {p.user_id: p for p in Profile.objects.filter(user_id__in=[row["id"] for row in rows])}
    user_types = {value for value, _ in Profile._meta.get_field("user_type").choices}
    new, changed = [], []
    for row in rows:
        values = {
            "user_type": _user_type(row["user_type"], user_types, Profile),
            "phone": row["phone"] or "",
            "profile_picture": row["profile_picture"] or "",
        }
        profile = existing.get(row["id"])
        if profile is None:
            new.append(Profile(user_id=row["id"], **values))
        elif _assign_changes(profile, values, compare=lambda a, b: str(a or "") == str(b or "")):
            changed.append(profile)
    Profile.objects.bulk_create(new)
    Profile.objects.bulk_update(changed, ["user_type", "phone", "profile_picture"])
    summary.counts.update(profiles_created=len(new), profiles_updated=len(changed))


def _user_type(old_value, user_types, Profile):
    """The old value if this project stores the app's values, else its English alias."""
    if old_value in user_types:
        return old_value
    if USER_TYPE_ALIASES.get(old_value) in user_types:
        return USER_TYPE_ALIASES[old_value]
    return Profile._meta.get_field("user_type").default


# --- messages --------------------------------------------------------------------

MESSAGES_SQL = """
SELECT id, sender_id, receiver_id, content, created_at, is_read,
       deleted_for_sender, deleted_for_receiver, edited
FROM message_message
ORDER BY id
"""


@dataclass
class SideState:
    """One user's side of a pair, folded over the pair's messages in id order."""

    deleted_prefix_open: bool = True
    cleared_before_id: int = 0  # the end of the run of messages all hidden from this user
    cleared_count: int = 0
    last_read_id: int = 0  # newest received message marked read
    unread_after_pointer: int = 0  # received messages after max(last_read_id, cleared_before_id)
    unread_flags: int = 0  # received messages the old backend had as unread
    hidden_flags: int = 0  # messages the old backend hid from this user

    def fold(self, message_id, received, is_read, hidden):
        self.hidden_flags += hidden
        if self.deleted_prefix_open and hidden:
            self.cleared_before_id = message_id
            self.cleared_count += 1
        else:
            self.deleted_prefix_open = False
        if received:
            self.unread_flags += not is_read
            if is_read:
                self.last_read_id = message_id
                self.unread_after_pointer = 0
            elif message_id > self.cleared_before_id:  # a clear reads what it hides
                self.unread_after_pointer += 1


@dataclass
class PairState:
    conversation_id: int
    last_message_id: int = 0
    total: int = 0
    sides: dict = field(default_factory=dict)


def import_messages(source):
    """message_message rows, ids kept, into one conversation per pair of users; then
    every participant's pointers and counters from the whole history (docs/cutover.md)."""
    summary = StepSummary("messages")
    source_max = source.scalar("SELECT coalesce(max(id), 0) AS max_id FROM message_message")
    if Message.objects.filter(id__gt=source_max).exists():
        raise LegacyImportError(
            f"this database already has messages with ids above the old backend's newest ({source_max}): "
            "the new server has taken messages, and importing now would overwrite its conversations' counters."
        )
    User = get_user_model()
    pairs = {}
    previous_high = 0
    for rows in source.batches("messages", MESSAGES_SQL):
        with transaction.atomic():
            importable = _importable_messages(User, rows, summary)
            _ensure_conversations(importable, pairs)
            for row in importable:
                _fold(pairs, row)
            _upsert_messages(importable, pairs, summary)
            # Messages imported by an earlier run that are gone from the source (or are
            # no longer importable) are removed: a re-run converges on the source.
            high = rows[-1]["id"]
            kept = {row["id"] for row in importable}
            stale = [
                pk
                for pk in Message.objects.filter(id__gt=previous_high, id__lte=high).values_list("id", flat=True)
                if pk not in kept
            ]
            summary.counts["removed"] += Message.objects.filter(id__in=stale).delete()[0]
            previous_high = high
            summary.counts["read"] += len(rows)
    _write_participants(pairs, summary)
    summary.counts["conversations"] = len(pairs)
    return summary


def _importable_messages(User, rows, summary):
    known_users = set(
        User._default_manager.filter(
            id__in={row["sender_id"] for row in rows} | {row["receiver_id"] for row in rows}
        ).values_list("id", flat=True)
    )
    importable = []
    for row in rows:
        if row["sender_id"] == row["receiver_id"]:
            summary.counts["skipped_self_message"] += 1
        elif row["deleted_for_sender"] and row["deleted_for_receiver"]:
            summary.counts["skipped_deleted_for_both"] += 1
        elif not {row["sender_id"], row["receiver_id"]} <= known_users:
            summary.counts["skipped_unknown_user"] += 1
        else:
            importable.append(row)
    return importable


def _pair(row):
    return tuple(sorted((row["sender_id"], row["receiver_id"])))


def _ensure_conversations(rows, pairs):
    """The conversation (and its two participants) of every pair in these rows."""
    first_seen = {}
    for row in rows:
        first_seen.setdefault(_pair(row), row["created_at"])
    missing = [pair for pair in first_seen if pair not in pairs]
    if not missing:
        return
    found = _conversations_of(missing)
    new = [pair for pair in missing if pair not in found]
    if new:
        Conversation.objects.bulk_create(
            [Conversation(user_low_id=low, user_high_id=high, created_at=first_seen[(low, high)]) for low, high in new]
        )
        created = _conversations_of(new)
        Participant.objects.bulk_create(
            [
                Participant(conversation_id=created[(low, high)], user_id=user, other_user_id=other)
                for low, high in new
                for user, other in ((low, high), (high, low))
            ]
        )
        found.update(created)
    for pair in missing:
        pairs[pair] = PairState(found[pair], sides={pair[0]: SideState(), pair[1]: SideState()})


def _conversations_of(pair_list):
    lows = {low for low, _ in pair_list}
    wanted = set(pair_list)
    rows = Conversation.objects.filter(user_low_id__in=lows, user_high_id__in={high for _, high in pair_list})
    return {
        (c.user_low_id, c.user_high_id): c.id for c in rows if (c.user_low_id, c.user_high_id) in wanted
    }


def _fold(pairs, row):
    state = pairs[_pair(row)]
    state.last_message_id = row["id"]
    state.total += 1
    sender, receiver = row["sender_id"], row["receiver_id"]
    state.sides[sender].fold(row["id"], False, row["is_read"], row["deleted_for_sender"])
    state.sides[receiver].fold(row["id"], True, row["is_read"], row["deleted_for_receiver"])


def _upsert_messages(rows, pairs, summary):
    existing = Message.objects.in_bulk([row["id"] for row in rows])
    new, changed = [], []
    for row in rows:
        values = {
            "conversation_id": pairs[_pair(row)].conversation_id,
            "sender_id": row["sender_id"],
            "receiver_id": row["receiver_id"],
            "content": row["content"],
            "created_at": row["created_at"],
            # The old backend kept only a flag: the creation time marks the message edited.
            "edited_at": row["created_at"] if row["edited"] else None,
        }
        message = existing.get(row["id"])
        if message is None:
            new.append(Message(id=row["id"], **values))
            continue
        if (message.sender_id, message.receiver_id) != (row["sender_id"], row["receiver_id"]):
            raise LegacyImportError(
                f"message {row['id']} here is between users {message.sender_id} and {message.receiver_id}, "
                f"in the old backend between {row['sender_id']} and {row['receiver_id']}: "
                "this database has messages of its own, the ids cannot be kept."
            )
        if _assign_changes(message, values):
            changed.append(message)
    Message.objects.bulk_create(new)
    Message.objects.bulk_update(changed, ["content", "created_at", "edited_at"])
    summary.counts.update(created=len(new), updated=len(changed))
    summary.counts["unchanged"] += len(rows) - len(new) - len(changed)


def _write_participants(pairs, summary):
    """Pointers and counters with the invariants actions.py keeps: a received message is
    read when id <= last_read_id, a clear also reads what it hides (last_read_id >=
    cleared_before_id), unread and visible counts match the messages they count."""
    by_conversation = {state.conversation_id: state for state in pairs.values()}
    ids = list(by_conversation)
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        with transaction.atomic():
            sides = list(Participant.objects.filter(conversation_id__in=chunk))
            for side in sides:
                state = by_conversation[side.conversation_id]
                folded = state.sides[side.user_id]
                side.last_message_id = state.last_message_id or None
                side.cleared_before_id = folded.cleared_before_id
                side.last_read_id = max(folded.last_read_id, folded.cleared_before_id)
                side.unread_count = folded.unread_after_pointer
                side.visible_count = state.total - folded.cleared_count
                summary.counts["read_by_pointer"] += folded.unread_flags - folded.unread_after_pointer
                summary.counts["hidden_kept_visible"] += folded.hidden_flags - folded.cleared_count
            Participant.objects.bulk_update(
                sides, ["last_message_id", "cleared_before_id", "last_read_id", "unread_count", "visible_count"]
            )
    # Conversations whose every message is gone from the source.
    emptied = Participant.objects.filter(last_message_id__isnull=False).exclude(
        Exists(Message.objects.filter(conversation_id=OuterRef("conversation_id")))
    )
    emptied.update(last_message_id=None, unread_count=0, visible_count=0)


# --- notifications ---------------------------------------------------------------

NOTIFICATIONS_SQL = """
SELECT id, user_id, message, is_read, created_at FROM notification_notification ORDER BY id
"""


def import_notifications(source):
    """notification_notification rows by id, each to its own user only."""
    summary = StepSummary("notifications")
    User = get_user_model()
    for rows in source.batches("notifications", NOTIFICATIONS_SQL):
        with transaction.atomic():
            known_users = set(
                User._default_manager.filter(id__in={row["user_id"] for row in rows}).values_list("id", flat=True)
            )
            existing = Notification.objects.in_bulk([row["id"] for row in rows])
            new, changed = [], []
            for row in rows:
                if row["user_id"] not in known_users:
                    summary.counts["skipped_unknown_user"] += 1
                    continue
                values = notification_values(row)
                notification = existing.get(row["id"])
                if notification is None:
                    new.append(Notification(id=row["id"], **values))
                elif notification.recipient_id != row["user_id"]:
                    raise LegacyImportError(
                        f"notification {row['id']} here belongs to user {notification.recipient_id}, "
                        f"in the old backend to {row['user_id']}: the ids cannot be kept."
                    )
                elif _assign_changes(notification, values):
                    changed.append(notification)
            Notification.objects.bulk_create(new)
            Notification.objects.bulk_update(changed, NOTIFICATION_IMPORTED_FIELDS)
            summary.counts.update(read=len(rows), created=len(new), updated=len(changed))
    return summary


NOTIFICATION_IMPORTED_FIELDS = ["kind", "title", "message", "data", "is_read", "created_at"]


def notification_values(row):
    """An old notification (user, text, read flag, time) as this project's fields."""
    return {
        "recipient_id": row["user_id"],
        "kind": LEGACY_NOTIFICATION_KIND,
        "title": "",
        "message": row["message"],
        "data": {},
        "is_read": row["is_read"],
        "created_at": row["created_at"],
    }


# --- helpers ---------------------------------------------------------------------


def _has_field(model, name):
    try:
        model._meta.get_field(name)
        return True
    except FieldDoesNotExist:
        return False


def _assign_changes(instance, values, compare=lambda a, b: a == b):
    """Set the differing attributes; True when anything changed."""
    changed = False
    for name, value in values.items():
        if not compare(getattr(instance, name), value):
            setattr(instance, name, value)
            changed = True
    return changed


_STEP_FUNCTIONS = {"users": import_users, "messages": import_messages, "notifications": import_notifications}
