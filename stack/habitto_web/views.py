"""The web client's three files, served straight from the package (no collectstatic, so
`make run` with DEBUG on and `make up` with DEBUG off serve the same bytes). Revalidated
on every load (ETag, `no-cache`): the file names carry no hash, and a stale app.js
talking to a newer server is worse than one conditional request."""

import hashlib
from functools import lru_cache
from pathlib import Path

from django.http import Http404, HttpResponse, HttpResponseNotModified
from django.views.decorators.http import require_safe

ASSET_DIR = Path(__file__).resolve().parent / "static" / "habitto_web"
CONTENT_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
# Scripts and styles only from these files (no inline code), sockets to this server,
# avatars from wherever profile pictures are hosted.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self' ws: wss:; "
    "img-src 'self' data: http: https:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


@lru_cache(maxsize=len(CONTENT_TYPES))
def _load(name, mtime_ns):
    body = (ASSET_DIR / name).read_bytes()
    return body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _asset_response(request, name):
    path = ASSET_DIR / name
    try:
        body, etag = _load(name, path.stat().st_mtime_ns)  # an edited file is read again
    except FileNotFoundError:
        raise Http404(name) from None
    if etag in [tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")]:
        response = HttpResponseNotModified()
    else:
        response = HttpResponse(body, content_type=CONTENT_TYPES[name])
    response["ETag"] = etag
    response["Cache-Control"] = "no-cache"
    response["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return response


@require_safe
def index(request):
    return _asset_response(request, "index.html")


@require_safe
def asset(request, name):
    if name not in CONTENT_TYPES or name == "index.html":
        raise Http404(name)
    return _asset_response(request, name)
