"""Reading claims from a JWT without verifying it (the client only needs `user_id` and `exp`)."""

import base64
import json

from .errors import ProtocolError


def jwt_claims(token):
    """The payload of a JWT as a dict. No signature check: the server verifies tokens."""
    try:
        payload = token.split(".")[1]
        payload += "=" * (-len(payload) % 4)
        claims = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
    except (IndexError, ValueError, UnicodeError, AttributeError) as exc:
        raise ProtocolError(f"not a JWT: {exc}") from None
    if not isinstance(claims, dict):
        raise ProtocolError("JWT payload is not an object")
    return claims


def jwt_user_id(token):
    """The `user_id` claim as an int (the app reads the current user's id from it)."""
    claims = jwt_claims(token)
    try:
        return int(claims["user_id"])
    except (KeyError, TypeError, ValueError):
        raise ProtocolError("JWT has no integer user_id claim") from None
