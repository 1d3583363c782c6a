"""Reactions to changes made outside the chat: a deactivated user's open sockets close.
(`QuerySet.update(is_active=False)` sends no signal; deactivate through `save()`.)"""

from . import wire
from .events import publish_on_commit


def close_sockets_of_deactivated_user(sender, instance, **kwargs):
    if getattr(instance, "is_active", True) is False:
        publish_on_commit([wire.user_deactivated_event(instance.pk)])
