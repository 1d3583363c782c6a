"""REST authentication: simplejwt's Bearer tokens, with claims checked for shape
(habitto_chat.tokens) and revoked access tokens refused."""

from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from rest_framework_simplejwt import authentication
from rest_framework_simplejwt.exceptions import InvalidToken

from ..tokens import TokenError, decode_access_token, is_revoked


class JWTAuthentication(authentication.JWTAuthentication):
    refuse_revoked = True  # logout alone accepts a revoked token, to stay idempotent

    def get_validated_token(self, raw_token):
        try:
            token = decode_access_token(raw_token)
        except TokenError as exc:
            raise InvalidToken(exc.args[0]) from None
        if self.refuse_revoked and is_revoked(token):
            raise InvalidToken({"detail": "Token has been revoked.", "code": "token_revoked"})
        return token


class JWTScheme(SimpleJWTScheme):
    """Describes this authentication in the OpenAPI schema (drf-spectacular finds
    extensions by subclassing; the views' schema needs drf-spectacular anyway)."""

    target_class = "habitto_chat.api.authentication.JWTAuthentication"
