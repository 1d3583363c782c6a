"""Errors of the chat's domain operations. REST turns them into 4xx envelopes, sockets
into error frames; both use `code` and the message text."""


class ChatError(Exception):
    status = 400
    code = "invalid"

    def __init__(self, message, code=None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class InvalidInput(ChatError):
    status = 400
    code = "invalid"


class NotFound(ChatError):
    status = 404
    code = "not_found"


class Forbidden(ChatError):
    status = 403
    code = "forbidden"


class Conflict(ChatError):
    status = 409
    code = "conflict"


class StoreFailed(ChatError):
    """The database refused this one message; the rest of its batch was stored."""

    status = 500
    code = "store_failed"
