"""Tables of the chat, shaped for the read paths (docs/architecture.md):

- Conversation: one row per pair of users (ids stored low/high), however many messages.
- Participant: one person's side of a conversation: the newest message, how far they
  have read, where they cleared it, their unread and visible counts, so the conversation
  list is an index scan on (user, -last_message_id) and a clear is one UPDATE of one row.
- Message: ids increase monotonically and every ordering is by id.
- LastSeen: when each user's last device socket closed (presence).
"""

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone


class Conversation(models.Model):
    user_low = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    user_high = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            # the unique index also serves lookups by user_low
            models.UniqueConstraint(fields=["user_low", "user_high"], name="chat_conversation_pair"),
            models.CheckConstraint(condition=Q(user_low__lt=F("user_high")), name="chat_conversation_ordered"),
        ]

    def __str__(self):
        return f"conversation {self.user_low_id}-{self.user_high_id}"


class Participant(models.Model):
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="participants")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    other_user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    # Newest message of the conversation (null until the first one, or after the last is deleted).
    last_message_id = models.BigIntegerField(null=True)
    # Messages with id <= last_read_id that this user received are read.
    last_read_id = models.BigIntegerField(default=0)
    # Messages with id <= cleared_before_id are hidden from this user (per-user clear).
    cleared_before_id = models.BigIntegerField(default=0)
    unread_count = models.PositiveIntegerField(default=0)
    # Messages this user can see (not cleared): the thread page's count without a COUNT(*).
    visible_count = models.PositiveIntegerField(default=0)
    # When last_read_id and cleared_before_id last moved: a device resuming with a cursor
    # learns the receipts and clears it missed (queries.changes_since).
    read_at = models.DateTimeField(null=True, blank=True)
    cleared_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "other_user"], name="chat_participant_pair"),
            models.UniqueConstraint(fields=["conversation", "user"], name="chat_participant_side"),
        ]
        indexes = [
            # the conversation list: a user's conversations, most recent first
            models.Index(F("user"), F("last_message_id").desc(), name="chat_participant_recent"),
        ]

    def __str__(self):
        return f"user {self.user_id} in {self.conversation_id}"


class Message(models.Model):
    id = models.BigAutoField(primary_key=True)
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages", db_index=False
    )
    sender = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    receiver = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    content = models.TextField()
    # Chosen by the client to make a retried send idempotent (unique per sender).
    client_id = models.CharField(max_length=64, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    edited_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["conversation", "id"], name="chat_message_thread"),
            models.Index(fields=["sender", "id"], name="chat_message_sent"),
            models.Index(fields=["receiver", "id"], name="chat_message_received"),
            # the edits a resuming device missed (queries.changes_since); few rows are edited
            models.Index(fields=["edited_at"], condition=Q(edited_at__isnull=False), name="chat_message_edited"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["sender", "client_id"],
                condition=Q(client_id__isnull=False),
                name="chat_message_client_id",
            )
        ]

    def __str__(self):
        return f"message {self.id} {self.sender_id}->{self.receiver_id}"


class DeletedMessage(models.Model):
    """The tombstone of a deleted message, written in the deleting transaction: a device
    that was offline learns the deletion when it resumes (queries.changes_since)."""

    id = models.BigIntegerField(primary_key=True)  # the deleted message's id
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="+", db_index=False)
    sender = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    receiver = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    deleted_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["deleted_at"], name="chat_deleted_message_at")]

    def __str__(self):
        return f"deleted message {self.id} {self.sender_id}->{self.receiver_id}"


class Notification(models.Model):
    """One notification for one user (docs/notifications.md): marketplace events the host
    backend publishes through actions.do_publish_notification. `data` carries the
    kind's fields for the notification sockets' frames (wire.NOTIFICATION_FRAME_FIELDS)."""

    id = models.BigAutoField(primary_key=True)
    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    kind = models.CharField(max_length=50)
    title = models.CharField(max_length=200, blank=True)
    message = models.TextField()
    data = models.JSONField(default=dict, blank=True)
    is_read = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            # the notifications page: a user's notifications, newest first
            models.Index(F("recipient"), F("id").desc(), name="chat_notification_recent"),
            # the badge (unread count) and the ?is_read= filter, newest first
            models.Index(F("recipient"), F("is_read"), F("id").desc(), name="chat_notification_unread"),
        ]

    def __str__(self):
        return f"notification {self.id} for {self.recipient_id}: {self.kind}"


class LastSeen(models.Model):
    """When a user's last /ws/v2/ device socket closed (presence, realtime/presence.py):
    the `last_seen` of presence frames. One row per user, rewritten on each last close."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="+")
    seen_at = models.DateTimeField()

    def __str__(self):
        return f"user {self.user_id} last seen {self.seen_at}"
