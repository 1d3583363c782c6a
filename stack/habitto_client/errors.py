"""The client's exceptions: one base class, so callers can catch everything with ChatError."""


class ChatError(Exception):
    """Anything that went wrong talking to the chat server."""


class Timeout(ChatError):
    """A network call (connect, request, handshake or receive) took longer than its timeout."""


class ConnectError(ChatError):
    """The server could not be reached: connection refused or reset, unknown host."""


class ProtocolError(ChatError):
    """The server answered something the protocol does not allow (e.g. a non-JSON frame)."""


class HTTPStatusError(ChatError):
    """An HTTP call answered with an unexpected status; `body` is the parsed JSON or the text."""

    def __init__(self, status, body, message=None):
        self.status = status
        self.body = body
        if message is None:
            detail = body.get("message") if isinstance(body, dict) else None
            message = f"HTTP {status}" + (f": {detail}" if detail else "")
        super().__init__(message)


class AuthError(HTTPStatusError):
    """Wrong credentials, or a missing, expired or revoked token (HTTP 400 on login, 401, 403)."""


class HandshakeRejected(ChatError):
    """The server refused the WebSocket upgrade with an HTTP status (e.g. 403, 404)."""

    def __init__(self, status, body=b""):
        self.status = status
        self.body = body
        super().__init__(f"WebSocket handshake refused with HTTP {status}")


class SocketClosed(ChatError):
    """The WebSocket is closed; `code` is the server's close code (4401, 4403...) or None."""

    def __init__(self, code=None, reason=""):
        self.code = code
        self.reason = reason
        text = f"socket closed by the server with code {code}" if code else "socket closed"
        super().__init__(text + (f" ({reason})" if reason else ""))
