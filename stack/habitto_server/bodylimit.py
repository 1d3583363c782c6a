"""Request bodies bounded for every content type, before Django reads them.

Django's ASGI handler reads the whole body (into a temporary file) before any view or
parser runs, and DRF's form and multipart parsers do not apply
DATA_UPLOAD_MAX_MEMORY_SIZE. This ASGI middleware refuses a body over its route's limit
(settings.BODY_LIMITS, path patterns; else MAX_BODY_BYTES) with a 413 in the JSON envelope: at once when
Content-Length says so, and for a body without a length (chunked) as soon as the bytes
received pass the limit; the rest is never read and the connection is closed.
"""

import json
import re

from django.conf import settings


def body_limit(path):
    for pattern, limit in settings.BODY_LIMITS.items():
        if re.fullmatch(pattern, path):
            return limit
    return settings.MAX_BODY_BYTES


def _declared_length(scope):
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the HTTP server refuses a malformed length itself
    return None


async def _refuse(send, limit):
    body = json.dumps({
        "success": False,
        "message": f"The request body is too large (at most {limit} bytes).",
        "data": {"code": "payload_too_large", "limit": limit},
    }).encode()
    await send({
        "type": "http.response.start",
        "status": 413,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),  # the unread rest of the body must not be parsed as a request
        ],
    })
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = body_limit(scope["path"])
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            return await _refuse(send, limit)

        received = 0
        over_limit = False
        response_started = False

        async def bounded_receive():
            nonlocal received, over_limit
            if over_limit:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Django stops reading at a disconnect and answers nothing; we answer.
                    over_limit = True
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message):
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        await self.app(scope, bounded_receive, tracking_send)
        if over_limit and not response_started:
            await _refuse(send, limit)
