"""Access tokens: decoding, and revocation on logout.

simplejwt blacklists refresh tokens only; logout also records the access token's jti in
the same blacklist tables, and both REST and socket authentication refuse it from then
on; sockets already open with it are closed. Without the token_blacklist app installed, nothing is revocable.
"""

from datetime import datetime, timezone

from django.apps import apps
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import AccessToken

from . import wire
from .events import publish_on_commit

__all__ = ["TokenError", "decode_access_token", "is_revoked", "revoke_access_token"]


def _blacklist_installed():
    return apps.is_installed("rest_framework_simplejwt.token_blacklist")


def decode_access_token(raw):
    """Verify signature, expiry and type; raises TokenError."""
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
            "user_id": token.get(api_settings.USER_ID_CLAIM),
            "token": str(token),
            "created_at": datetime.fromtimestamp(token.get("iat", token["exp"]), tz=timezone.utc),
            "expires_at": datetime.fromtimestamp(token["exp"], tz=timezone.utc),
        },
    )
    BlacklistedToken.objects.get_or_create(token=outstanding)
    user_id = token.get(api_settings.USER_ID_CLAIM)
    if user_id is not None:
        publish_on_commit([wire.session_revoked_event(int(user_id), token[api_settings.JTI_CLAIM])])
