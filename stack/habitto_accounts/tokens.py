"""JWT issue, rotation and logout on top of simplejwt and habitto_chat.tokens.

Refresh tokens are single-use: rotating one blacklists it inside the same transaction,
and a concurrent second use loses on the blacklist's unique key instead of minting a
second pair. Claims are checked for shape (habitto_chat.tokens.StrictClaimsMixin): a
token signed with our key but naming user "abc" is refused like a forged one.
"""

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from rest_framework.exceptions import AuthenticationFailed, ValidationError
from rest_framework_simplejwt import tokens as jwt
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken

from habitto_chat.tokens import AccessToken, StrictClaimsMixin, revoke_access_token, token_user_id


class RefreshToken(StrictClaimsMixin, jwt.RefreshToken):
    """simplejwt >= 5.5 writes `user_id` as a string; the shipped app was built against
    tokens carrying the integer id (older simplejwt), so ours carry the integer."""

    access_token_class = AccessToken

    @classmethod
    def for_user(cls, user):
        token = super().for_user(user)
        token[api_settings.USER_ID_CLAIM] = user.pk
        return token


class _RefreshAtLogout(RefreshToken):
    """A refresh token presented at logout is checked like any other, except that one
    already used up (rotated, or logged out before) is fine: it is dead either way."""

    def check_blacklist(self):
        pass


def _active_user(token):
    user = get_user_model().objects.filter(pk=token_user_id(token.payload)).first()
    if user is None or not api_settings.USER_AUTHENTICATION_RULE(user):
        raise AuthenticationFailed("No active account found for the given token.", "no_active_account")
    return user


def _blacklist_once(token):
    """Blacklist `token`; TokenError if it was blacklisted meanwhile (a racing reuse)."""
    outstanding, _ = token.outstand()
    try:
        with transaction.atomic():
            BlacklistedToken.objects.create(token=outstanding)
    except IntegrityError:
        raise TokenError("Token is blacklisted") from None


def rotate(raw_refresh):
    """A new {"access", "refresh"} pair for a valid refresh token, which is used up.
    Raises TokenError (bad, expired or used token) or AuthenticationFailed."""
    with transaction.atomic():
        old = RefreshToken(raw_refresh)  # signature, expiry, type, claims, blacklist
        user = _active_user(old)
        _blacklist_once(old)
        new = RefreshToken.for_user(user)
        return {"access": str(new.access_token), "refresh": str(new)}


def logout(user, access_token, raw_refresh=None):
    """Revoke the access token in use and, when one is given, blacklist the caller's
    refresh token. Idempotent. A refresh token that is not valid or not the caller's
    is a 400 and nothing is revoked."""
    refresh = None
    if raw_refresh:
        try:
            refresh = _RefreshAtLogout(raw_refresh)
        except TokenError as exc:
            raise ValidationError({"refresh": [str(exc)]}) from None
        if token_user_id(refresh.payload) != user.pk:
            raise ValidationError({"refresh": ["This refresh token is not yours."]})
    with transaction.atomic():
        if refresh is not None:
            refresh.blacklist()  # get_or_create: a used-up token stays blacklisted once
        revoke_access_token(access_token)
