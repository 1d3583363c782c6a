"""The chat app's hook for showing people (HABITTO_CHAT["USER_CARDS"]): id, username,
display name and picture path for a batch of users, in one query."""

from django.contrib.auth import get_user_model
from django.core.exceptions import ObjectDoesNotExist

from habitto_chat.users import UserCard, display_name


def _picture(user):
    try:
        return user.profile.picture_path()
    except ObjectDoesNotExist:  # a user created before the accounts app existed
        return None


def user_cards(user_ids):
    """{id: UserCard} for the existing users among `user_ids` (inactive ones included:
    old conversations still show who the other person was)."""
    ids = {int(pk) for pk in user_ids}
    if not ids:
        return {}
    users = get_user_model().objects.filter(pk__in=ids).select_related("profile")
    return {
        user.pk: UserCard(
            id=user.pk,
            username=user.username,
            full_name=display_name(user.first_name, user.last_name, user.username),
            picture=_picture(user),
        )
        for user in users
    }
