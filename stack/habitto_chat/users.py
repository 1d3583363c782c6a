"""How the chat shows a person: id, username, display name, picture.

The host project plugs its own source in with HABITTO_CHAT["USER_CARDS"], a dotted path
to `cards(user_ids) -> {id: UserCard}`. It is called with every user of a page or a
batch at once, so it can load them in one query. A hook that also fills `active`
(the user's is_active) saves the send path a query per batch; it must then read it fresh
on every call, never from a cache, or a deactivated user keeps sending until the cache
expires. A hook that caches cards leaves `active` None.
"""

from dataclasses import dataclass
from functools import lru_cache

from django.contrib.auth import get_user_model
from django.utils.module_loading import import_string

from .conf import chat_setting


@dataclass(frozen=True)
class UserCard:
    id: int
    username: str
    full_name: str
    picture: str | None = None  # absolute URL, or a path starting with "/"
    # is_active, when the hook read it along (the send path refuses inactive users);
    # None: not known, the send path asks the user table.
    active: bool | None = None


def display_name(first_name, last_name, username):
    """First + last name, trimmed, falling back to the username (the app's rule)."""
    return f"{first_name or ''} {last_name or ''}".strip() or username


def default_user_cards(user_ids):
    User = get_user_model()
    rows = User._default_manager.filter(pk__in=set(user_ids))
    return {
        u.pk: UserCard(
            u.pk,
            u.get_username(),
            display_name(getattr(u, "first_name", ""), getattr(u, "last_name", ""), u.get_username()),
            active=u.is_active,
        )
        for u in rows
    }


@lru_cache(maxsize=1)
def _loader(path):
    return import_string(path)


def user_cards(user_ids):
    """Cards for these users; unknown ids are absent from the result."""
    if not user_ids:
        return {}
    return _loader(chat_setting("USER_CARDS"))(user_ids)


def absolute_picture(picture, base_url):
    """Pictures in frames and responses are absolute (the app cannot resolve paths)."""
    if not picture or picture.startswith(("http://", "https://")):
        return picture or None
    return base_url.rstrip("/") + "/" + picture.lstrip("/")
