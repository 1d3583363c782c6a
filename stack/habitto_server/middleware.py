"""Every /api/ answer is JSON in the envelope, whatever produced it: Django's own 404 for
an unknown path (an HTML debug page with DEBUG on; handler404 only applies with DEBUG
off), a debug 500 page, a plain view's 405. The app shows a body it cannot parse as
text. DRF views already answer in the envelope and pass through untouched."""

from asgiref.sync import iscoroutinefunction
from django.http import JsonResponse
from django.utils.decorators import sync_and_async_middleware

API_PREFIX = "/api/"
MESSAGES = {
    400: "Bad request.",
    403: "Forbidden.",
    404: "Not found.",
    405: "Method not allowed.",
    500: "Server error.",
}
KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate")


def _enveloped(request, response):
    if (
        response.status_code < 400
        or not request.path.startswith(API_PREFIX)
        or response.get("Content-Type", "").startswith("application/json")
    ):
        return response
    # Imported here: envelope imports DRF's views, which load the renderer from
    # envelope; at middleware loading time that import would be circular.
    from habitto_chat.api.envelope import envelope

    message = MESSAGES.get(response.status_code, f"{response.reason_phrase}.")
    replacement = JsonResponse(envelope(False, message, None), status=response.status_code)
    for header in KEPT_HEADERS:
        if header in response:
            replacement[header] = response[header]
    return replacement


@sync_and_async_middleware
def api_errors_as_json(get_response):
    # Both flavours, so the ASGI server does not pay a thread hop per request.
    if iscoroutinefunction(get_response):

        async def middleware(request):
            return _enveloped(request, await get_response(request))

    else:

        def middleware(request):
            return _enveloped(request, get_response(request))

    return middleware
