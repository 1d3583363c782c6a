"""Usernames and emails are unique whatever their case, and the database says so: the
unique indexes on lower(username) and lower(email) (migration 0004) are the rule, and
`taken` asks the same question with the same SQL function, so the friendly 400 of a
serializer and the IntegrityError of a race always agree."""

from django.contrib.auth import get_user_model
from django.db.models import Value
from django.db.models.functions import Lower

USERNAME_TAKEN = "A user with that username already exists."
EMAIL_TAKEN = "A user with this email already exists."
TAKEN_MESSAGES = {"username": USERNAME_TAKEN, "email": EMAIL_TAKEN}


def taken(field, value, exclude_pk=None):
    """Whether another user has `value` in `field` ("username" or "email"), compared
    with lower() as the unique indexes compare."""
    others = get_user_model().objects.alias(folded=Lower(field)).filter(folded=Lower(Value(value)))
    if exclude_pk is not None:
        others = others.exclude(pk=exclude_pk)
    return others.exists()


def taken_errors(**values):
    """{field: [message]} for the values that are taken; {} if none is (then an
    IntegrityError had another cause)."""
    return {
        field: [TAKEN_MESSAGES[field]] for field, value in values.items() if value and taken(field, value)
    }
