"""Validation of one notification to publish (docs/notifications.md): the one place that
says what a kind, title, message and data may be, for the action, the management command
and any server-side caller alike. Errors are InvalidInput with a code per field."""

import json
import re
from dataclasses import dataclass

from .conversations import parse_id
from .errors import InvalidInput
from .wire import NOTIFICATION_FRAME_FIELDS, NOTIFICATION_RESERVED_KEYS

KIND_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,49}")  # fits Notification.kind (50)
MAX_TITLE = 200  # Notification.title
MAX_MESSAGE = 4000
MAX_DATA_BYTES = 16384  # the data's JSON text: it travels in every frame of the notification


@dataclass(frozen=True)
class NotificationRequest:
    recipient_id: int
    kind: str
    title: str
    message: str
    data: dict


def validate_notification(recipient_id, kind, message, title="", data=None):
    data = {} if data is None else data
    recipient_id = parse_id(recipient_id, "recipient")
    if not isinstance(kind, str) or not KIND_PATTERN.fullmatch(kind):
        raise InvalidInput(
            "kind must be 1-50 characters: a lowercase letter, then lowercase letters, digits or _.",
            code="invalid_kind",
        )
    if not isinstance(title, str) or len(title) > MAX_TITLE:
        raise InvalidInput(f"title must be a string of at most {MAX_TITLE} characters.", code="invalid_title")
    if not isinstance(message, str) or not message.strip() or len(message) > MAX_MESSAGE:
        raise InvalidInput(f"message must be 1 to {MAX_MESSAGE} characters.", code="invalid_message")
    if not isinstance(data, dict):
        raise InvalidInput("data must be a JSON object.", code="invalid_data")
    try:
        size = len(json.dumps(data, ensure_ascii=False, allow_nan=False).encode())
    except (TypeError, ValueError):
        raise InvalidInput("data must be JSON (strings as keys, finite numbers).", code="invalid_data") from None
    if size > MAX_DATA_BYTES:
        raise InvalidInput(f"data must be at most {MAX_DATA_BYTES} bytes of JSON.", code="invalid_data")
    reserved = sorted(NOTIFICATION_RESERVED_KEYS & data.keys())
    if reserved:
        # The frames put these keys beside the data's own; the app reads `event`/`id` as fallbacks.
        raise InvalidInput(f"data must not use the keys {', '.join(reserved)}.", code="invalid_data")
    missing = [name for name in NOTIFICATION_FRAME_FIELDS.get(kind, ()) if name not in data]
    if missing:
        raise InvalidInput(
            f"a {kind} notification needs these data fields: {', '.join(missing)}.", code="missing_data_fields"
        )
    return NotificationRequest(recipient_id, kind, title, message, data)
