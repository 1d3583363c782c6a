"""Access tokens: decoding, and revocation on logout.

simplejwt blacklists refresh tokens only; logout also records the access token's jti in
the same blacklist tables, and both REST and socket authentication refuse it from then
on; sockets already open with it are closed. Without the token_blacklist app installed, nothing is revocable.
"""

from datetime import datetime, timezone

from django.apps import apps
from rest_framework_simplejwt import tokens as jwt
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.utils import datetime_from_epoch

from . import parsing, wire
from .events import publish_on_commit

__all__ = [
    "AccessToken",
    "StrictClaimsMixin",
    "TokenError",
    "decode_access_token",
    "is_revoked",
    "revoke_access_token",
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
