"""Access tokens: decoding, the legacy sockets' grace after expiry, and revocation on logout.

simplejwt blacklists refresh tokens only; logout also records the access token's jti in
the same blacklist tables, and both REST and socket authentication refuse it from then
on; sockets already open with it are closed. Without the token_blacklist app installed, nothing is revocable.

The shipped app opens its sockets with whatever access token it has stored and refreshes
only after an HTTP 401, so its room socket often starts with an expired token and is
never reopened. Legacy sockets therefore accept a token up to `SOCKET_TOKEN_GRACE`
seconds past its expiry (docs/protocol.md, "Token expiry"); everything else about the
token is checked as strictly as ever.
"""

import copy
from datetime import datetime, timedelta, timezone

from django.apps import apps
from rest_framework_simplejwt import tokens as jwt
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.utils import datetime_from_epoch

from . import parsing, wire
from .conf import chat_setting
from .events import publish_on_commit

__all__ = [
    "AccessToken",
    "StrictClaimsMixin",
    "TokenError",
    "decode_access_token",
    "decode_socket_token",
    "expiry_leeway",
    "is_revoked",
    "revoke_access_token",
    "socket_token_grace",
    "token_user_id",
]


def token_user_id(payload):
    """The user id a token names, as an int. simplejwt >= 5.5 writes it as a decimal
    string, older versions (the shipped app's tokens) as an integer; anything else
    (missing, "abc", true, 1.0, a list, out of range) is a TokenError."""
    value = payload.get(api_settings.USER_ID_CLAIM)
    try:
        if isinstance(value, str):
            return parsing.parse_int(value, 1, parsing.MAX_ID)
        if type(value) is int:  # not bool, not float
            return parsing.check_range(value, 1, parsing.MAX_ID)
    except ValueError:
        pass
    raise TokenError("Token has no valid user id")


class StrictClaimsMixin:
    """Signed with our key is not enough: claims of the wrong type or range are a
    TokenError (a 401 or 4401), never an exception deeper down (a 500)."""

    def verify(self):
        token_user_id(self.payload)
        try:
            super().verify()
            datetime_from_epoch(self.payload.get("iat", self.payload["exp"]))  # in range
        except (KeyError, OverflowError, OSError, TypeError, ValueError) as exc:
            raise TokenError("Token has an invalid claim") from exc


class AccessToken(StrictClaimsMixin, jwt.AccessToken):
    pass


def _blacklist_installed():
    return apps.is_installed("rest_framework_simplejwt.token_blacklist")


def decode_access_token(raw):
    """Verify signature, expiry, type and the shape of the claims; raises TokenError."""
    return AccessToken(raw)


def socket_token_grace():
    """How long past its expiry a legacy socket's token is honoured (timedelta):
    HABITTO_CHAT["SOCKET_TOKEN_GRACE"] seconds, by default the refresh-token lifetime
    (as long as the app could have renewed the token itself)."""
    seconds = chat_setting("SOCKET_TOKEN_GRACE")
    if seconds is None:
        return api_settings.REFRESH_TOKEN_LIFETIME
    return timedelta(seconds=seconds)


def expiry_leeway():
    """simplejwt's own clock leeway (its LEEWAY setting), as a timedelta."""
    from rest_framework_simplejwt.state import token_backend

    return token_backend.get_leeway()


class _GraceAccessToken(AccessToken):
    """An access token checked by simplejwt's own decode (signature, audience, issuer,
    type, jti) with the expiry leeway widened by the socket grace: PyJWT and
    Token.check_exp both read the backend's leeway. (PyJWT applies it to `iat` and `nbf`
    as well; simplejwt sets no `nbf`, and an `iat` in the future needs our own key.)"""

    def get_token_backend(self):
        backend = copy.copy(super().get_token_backend())
        backend.leeway = backend.get_leeway() + socket_token_grace()
        return backend


def decode_socket_token(raw):
    """A socket's access token, accepted up to the grace past `exp`; raises TokenError.
    Which sockets may use the grace is the consumer's decision: it knows the protocol
    and holds protocol 2 to `exp` (+ leeway)."""
    return _GraceAccessToken(raw)


def is_revoked(token):
    if not _blacklist_installed():
        return False
    from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken

    return BlacklistedToken.objects.filter(token__jti=token[api_settings.JTI_CLAIM]).exists()


def revoke_access_token(token):
    if not _blacklist_installed():
        return
    from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

    outstanding, _ = OutstandingToken.objects.get_or_create(
        jti=token[api_settings.JTI_CLAIM],
        defaults={
            "user_id": token_user_id(token.payload),
            "token": str(token),
            "created_at": datetime.fromtimestamp(token.get("iat", token["exp"]), tz=timezone.utc),
            "expires_at": datetime.fromtimestamp(token["exp"], tz=timezone.utc),
        },
    )
    _, newly_revoked = BlacklistedToken.objects.get_or_create(token=outstanding)
    if newly_revoked:  # logging out twice closes nothing more
        event = wire.session_revoked_event(token_user_id(token.payload), token[api_settings.JTI_CLAIM])
        publish_on_commit([event])
