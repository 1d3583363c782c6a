"""Socket authentication middleware: finds the access token, verifies it once at the
handshake and leaves the result in the scope (`user_id`, `token_exp`, `token_jti`,
`auth_failure`).

A token up to the legacy grace past its expiry passes here (tokens.decode_socket_token);
the consumer holds each socket to its own deadline from `token_exp` (protocol 2: the
expiry itself), since only it knows which protocol the socket speaks.

The token may come from `?token=` (the shipped app), `Authorization: Bearer`, or the
subprotocol pair `access_token, <jwt>` (browsers, which cannot set headers). Refusal
happens in the consumer, after accept, so the client sees close code 4401.
"""

import asyncio
from urllib.parse import parse_qs, urlsplit

from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from rest_framework_simplejwt.settings import api_settings

from ..tokens import TokenError, decode_socket_token, is_revoked, token_user_id
from .hub import hub

SUBPROTOCOL = "access_token"


def token_from_scope(scope):
    """(raw token or None, subprotocol to answer with or None)."""
    subprotocols = scope.get("subprotocols") or []
    if SUBPROTOCOL in subprotocols:
        index = subprotocols.index(SUBPROTOCOL)
        if index + 1 < len(subprotocols):
            return subprotocols[index + 1], SUBPROTOCOL
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            kind, _, raw = value.decode("latin-1").partition(" ")
            if kind.lower() == "bearer" and raw.strip():
                return raw.strip(), None
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    values = query.get("token")
    return (values[0] if values else None), None


@database_sync_to_async
def authenticate(raw):
    """(user id, token claims, None) or (None, None, reason)."""
    if not raw:
        return None, None, "missing token"
    try:
        token = decode_socket_token(raw)
    except TokenError:
        return None, None, "invalid or expired token"
    user_id = token_user_id(token.payload)  # the claims' shape was checked in decoding
    if is_revoked(token):
        return None, None, "revoked token"
    User = get_user_model()
    if not User._default_manager.filter(pk=user_id, is_active=True).exists():
        return None, None, "inactive or unknown user"
    return user_id, token.payload, None


def origin_allowed(scope, allowed):
    """No Origin header (native apps) is allowed; a browser origin must be listed, or be
    this server's own origin (the web client served at `/`)."""
    origin = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"origin"), None)
    if origin is None or "*" in allowed:
        return True
    seen = urlsplit(origin.lower())
    if _same_origin(seen, scope):
        return True
    for entry in allowed:
        wanted = urlsplit(entry.lower())
        if seen.scheme == wanted.scheme and seen.hostname == wanted.hostname:
            if wanted.port is None or wanted.port == seen.port:
                return True
    return False


_SOCKET_SCHEME = {"http": "ws", "https": "wss"}
_DEFAULT_PORT = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _same_origin(seen, scope):
    """Whether the browser origin is the page's own: http with ws (https with wss), and
    the host and port of the request's Host header."""
    scheme = scope.get("scheme") or "ws"
    host = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"host"), None)
    if host is None or _SOCKET_SCHEME.get(seen.scheme) != scheme:
        return False
    target = urlsplit(f"//{host.lower()}")
    try:
        seen_port, target_port = seen.port, target.port
    except ValueError:  # a port that is no number
        return False
    return (
        seen.hostname is not None
        and seen.hostname == target.hostname
        and (seen_port or _DEFAULT_PORT[seen.scheme]) == (target_port or _DEFAULT_PORT[scheme])
    )


class JWTAuthMiddleware:
    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        hub.bind(asyncio.get_running_loop())
        raw, subprotocol = token_from_scope(scope)
        user_id, claims, failure = await authenticate(raw)
        scope = dict(
            scope,
            user_id=user_id,
            token_exp=claims["exp"] if claims else None,
            token_jti=claims.get(api_settings.JTI_CLAIM) if claims else None,
            auth_failure=failure,
            chat_subprotocol=subprotocol,
        )
        return await self.inner(scope, receive, send)
