"""REST authentication: simplejwt's Bearer tokens, refusing revoked access tokens."""

from rest_framework_simplejwt import authentication
from rest_framework_simplejwt.exceptions import InvalidToken

from ..tokens import is_revoked


class JWTAuthentication(authentication.JWTAuthentication):
    def get_validated_token(self, raw_token):
        token = super().get_validated_token(raw_token)
        if is_revoked(token):
            raise InvalidToken({"detail": "Token has been revoked.", "code": "token_revoked"})
        return token


try:  # describe the scheme in the OpenAPI schema (drf-spectacular is optional for the app)
    from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme

    class JWTScheme(SimpleJWTScheme):
        target_class = "habitto_chat.api.authentication.JWTAuthentication"

except ImportError:  # pragma: no cover
    pass
