"""Request parsing: JSON bodies bounded in size and nesting.

Django applies DATA_UPLOAD_MAX_MEMORY_SIZE only when `request.body` is read; DRF's
JSONParser reads the stream instead, so without this a client could make the server
parse a body of any size. (The standalone server also refuses any body over its limit
before reading it: habitto_server/bodylimit.py.) Nesting is bounded like a socket
frame's (habitto_chat.parsing.MAX_JSON_DEPTH): a body nested deeper is a 400, never a
RecursionError.
"""

import io

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import JSONParser

from ..parsing import MAX_JSON_DEPTH, JSONTooDeep, check_json_depth


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "payload_too_large"


class BoundedJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        body = b"" if stream is None else stream.read(-1 if limit is None else limit + 1)
        if limit is not None and len(body) > limit:
            raise PayloadTooLarge()
        try:
            value = super().parse(io.BytesIO(body), media_type, parser_context)
            check_json_depth(body, value)
        except (RecursionError, JSONTooDeep):
            raise ParseError(f"JSON parse error - nested too deeply (more than {MAX_JSON_DEPTH} levels).") from None
        return value
