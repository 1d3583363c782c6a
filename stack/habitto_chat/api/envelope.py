"""The response envelope every client reads: {"success", "message", "data"}.

Views return their payload; the renderer wraps it, the exception handler wraps errors,
and the Django-level handlers wrap 4xx/5xx that never reached DRF.
"""

from django.http import JsonResponse
from rest_framework import exceptions, status
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import exception_handler

from ..errors import ChatError

DEFAULT_MESSAGES = {"GET": "OK", "POST": "Created", "PATCH": "Updated", "PUT": "Updated", "DELETE": "Deleted"}


def envelope(success, message, data):
    return {"success": success, "message": message, "data": data}


def ok(data=None, message=None, status_code=status.HTTP_200_OK, top_level=None):
    """A success response; the renderer wraps `data`, using `message` when given.
    `top_level` adds keys beside success/message/data, for a client that reads them
    there (the app's notification badge reads `count` at the top)."""
    response = Response(data, status=status_code)
    response.envelope_message = message
    response.envelope_top_level = top_level
    return response


class EnvelopeJSONRenderer(JSONRenderer):
    def render(self, data, accepted_media_type=None, renderer_context=None):
        response = (renderer_context or {}).get("response")
        if response is not None and not getattr(response, "enveloped", False):
            success = response.status_code < 400
            message = getattr(response, "envelope_message", None)
            if message is None:
                request = renderer_context.get("request")
                method = getattr(request, "method", "GET")
                message = DEFAULT_MESSAGES.get(method, "OK") if success else "Error"
            data = envelope(success, message, data)
            data.update(getattr(response, "envelope_top_level", None) or {})
            response.enveloped = True
        return super().render(data, accepted_media_type, renderer_context)


def _first_message(detail):
    """A readable one-line message from DRF's error detail."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            text = _first_message(value)
            return text if key in {"detail", "non_field_errors"} else f"{key}: {text}"
        return "Invalid input."
    if isinstance(detail, list):
        return _first_message(detail[0]) if detail else "Invalid input."
    return str(detail)


def envelope_exception_handler(exc, context):
    if isinstance(exc, ChatError):
        response = Response(envelope(False, exc.message, {"code": exc.code}), status=exc.status)
        response.enveloped = True
        return response
    response = exception_handler(exc, context)
    if response is None:
        return None  # an unexpected error: Django's 500 handler answers (still enveloped)
    detail = response.data
    if isinstance(exc, exceptions.ValidationError):
        message = _first_message(detail)
    else:
        message = _first_message(detail)
        if isinstance(detail, dict) and set(detail) <= {"detail", "code", "messages"}:
            detail = {"code": getattr(getattr(exc, "detail", None), "code", None) or exc.default_code}
    response.data = envelope(False, message, detail)
    response.enveloped = True
    return response


def _django_handler(status_code, message):
    def handler(request, exception=None, *args, **kwargs):
        return JsonResponse(envelope(False, message, None), status=status_code)

    return handler


handler400 = _django_handler(400, "Bad request.")
handler403 = _django_handler(403, "Forbidden.")
handler404 = _django_handler(404, "Not found.")


def handler500(request, *args, **kwargs):
    return JsonResponse(envelope(False, "Server error.", None), status=500)
