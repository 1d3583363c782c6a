"""REST authentication: simplejwt's Bearer tokens, refusing revoked access tokens."""

from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from rest_framework_simplejwt import authentication
from rest_framework_simplejwt.exceptions import InvalidToken

from ..tokens import is_revoked


class JWTAuthentication(authentication.JWTAuthentication):
    def get_validated_token(self, raw_token):
        token = super().get_validated_token(raw_token)
        if is_revoked(token):
            raise InvalidToken({"detail": "Token has been revoked.", "code": "token_revoked"})
        return token


class JWTScheme(SimpleJWTScheme):
    """Describes this authentication in the OpenAPI schema (drf-spectacular finds
    extensions by subclassing; the views' schema needs drf-spectacular anyway)."""

    target_class = "habitto_chat.api.authentication.JWTAuthentication"
