"""Request parsing: JSON bodies bounded in size and nesting.

Django applies DATA_UPLOAD_MAX_MEMORY_SIZE only when `request.body` is read; DRF's
JSONParser reads the stream instead, so without this a client could make the server
parse a body of any size. (The standalone server also refuses any body over its limit
before reading it: habitto_server/bodylimit.py.) Nesting is bounded by the interpreter's
recursion limit, which the C decoder checks while it descends: a body nested deeper is
a 400, not a RecursionError.
"""

import io

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import JSONParser


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "payload_too_large"


class BoundedJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None:
            body = stream.read(limit + 1) if stream is not None else b""
            if len(body) > limit:
                raise PayloadTooLarge()
            stream = io.BytesIO(body)
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the body is nested too deeply.") from None
