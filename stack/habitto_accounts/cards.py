"""The chat app's hook for showing people (HABITTO_CHAT["USER_CARDS"]): id, username,
display name and picture path for a batch of users, in one query."""

from django.contrib.auth import get_user_model
from django.core.files.storage import default_storage

from habitto_chat.users import UserCard, display_name


def user_cards(user_ids):
    """{id: UserCard} for the existing users among `user_ids` (inactive ones included:
    old conversations still show who the other person was)."""
    ids = {int(pk) for pk in user_ids}
    if not ids:
        return {}
    # values(), not model instances: this runs for every batch of messages sent.
    rows = get_user_model().objects.filter(pk__in=ids).values_list(
        "pk", "username", "first_name", "last_name", "profile__profile_picture", "is_active"
    )
    return {
        pk: UserCard(
            id=pk,
            username=username,
            full_name=display_name(first_name, last_name, username),
            picture=default_storage.url(picture) if picture else None,
            active=is_active,
        )
        for pk, username, first_name, last_name, picture, is_active in rows
    }
