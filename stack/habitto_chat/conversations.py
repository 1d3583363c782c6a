"""Row-level helpers the actions and queries share: ids from requests, the counterpart
check, resolving the conversation of a pair of users. Nothing here publishes events."""

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction

from . import parsing
from .errors import InvalidInput, NotFound
from .models import Conversation, Participant


def parse_id(value, name):
    """A positive integer id from a query parameter, body field or path; 400 otherwise."""
    try:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ValueError("not an id")
        if isinstance(value, int):
            return parsing.check_range(value, 1, parsing.MAX_ID)
        return parsing.parse_int(value.strip(), 1, parsing.MAX_ID)
    except ValueError:
        raise InvalidInput(f"{name} must be a positive integer.", code="invalid_id") from None


def active_user_ids(user_ids):
    User = get_user_model()
    return set(User._default_manager.filter(pk__in=user_ids, is_active=True).values_list("pk", flat=True))


def check_counterpart(user_id, other_id, *, must_be_active=True):
    """The other person of a conversation must exist, not be the caller and, to receive
    messages, be active (a deactivated user's old conversations stay readable)."""
    if other_id == user_id:
        raise InvalidInput("You cannot message yourself.", code="self_message")
    if must_be_active:
        found = other_id in active_user_ids([other_id])
    else:
        found = get_user_model()._default_manager.filter(pk=other_id).exists()
    if not found:
        raise NotFound("No such user.", code="unknown_user")


def get_or_create_conversation(user_id, other_id):
    """The one conversation of this pair, created with both participants if missing."""
    low, high = sorted((user_id, other_id))
    conversation = Conversation.objects.filter(user_low_id=low, user_high_id=high).first()
    if conversation is not None:
        return conversation
    try:
        with transaction.atomic():
            conversation = Conversation.objects.create(user_low_id=low, user_high_id=high)
            Participant.objects.bulk_create(
                [
                    Participant(conversation=conversation, user_id=low, other_user_id=high),
                    Participant(conversation=conversation, user_id=high, other_user_id=low),
                ]
            )
            return conversation
    except IntegrityError:  # created concurrently by the other side
        return Conversation.objects.get(user_low_id=low, user_high_id=high)


def participant(user_id, other_id):
    """The caller's side of the conversation with `other_id`, or None if none exists."""
    return Participant.objects.filter(user_id=user_id, other_user_id=other_id).first()
