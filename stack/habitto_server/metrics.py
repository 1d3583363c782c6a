"""Prometheus metrics of the server process: `/metrics` and the HTTP response counter.

`/metrics` is not public. It answers a request that reached this process directly from
a loopback address (no X-Forwarded-For: a request relayed by a proxy is not local,
whatever address the proxy rewrote it to), or one carrying `Authorization: Bearer
<METRICS_TOKEN>` when that setting is set (a scraper in another container or host).
Anything else gets 404, as if there were no such path; the nginx configuration refuses
the path as well (deploy/nginx). Every port of a process serves the same registry.
Metrics and alerts: docs/metrics.md.
"""

import hmac
import ipaddress

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpResponse, HttpResponseNotFound
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from habitto_chat.metrics import HTTP_RESPONSES

UNMATCHED_ROUTE = "<unmatched>"  # 404s of unknown paths: one label value, not one per path


def metrics_allowed(request):
    token = settings.METRICS_TOKEN
    if token:
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
            return True
    if "X-Forwarded-For" in request.headers or "Forwarded" in request.headers:
        return False
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False


def metrics_view(request):
    if not metrics_allowed(request):
        return HttpResponseNotFound()
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)


class ResponseMetricsMiddleware:
    """Counts every response by its URL pattern and status. Sync and async capable, so it
    adds no thread hop under ASGI (docs/realtime.md, middleware)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self._acall(request)
        response = self.get_response(request)
        count_response(request, response)
        return response

    async def _acall(self, request):
        response = await self.get_response(request)
        count_response(request, response)
        return response


def count_response(request, response):
    match = getattr(request, "resolver_match", None)
    route = match.route if match is not None and match.route else UNMATCHED_ROUTE
    HTTP_RESPONSES.labels(route, str(response.status_code)).inc()
