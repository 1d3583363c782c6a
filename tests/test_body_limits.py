"""Request bodies are bounded for every content type and refused with 413 before they are
read whole (habitto_server/bodylimit.py); a JSON body nested too deeply is a 400."""

import asyncio
import json
import socket
import time

import pytest

from habitto_server.asgi import application
from habitto_server.bodylimit import body_limit
from tests.support.live import LiveServer, free_port, server_env

LIMIT = 100_000
CHUNK = 16_384


class Feeder:
    """An ASGI receive callable serving `total` bytes in chunks; counts what was pulled."""

    def __init__(self, total):
        self.total = total
        self.pulled = 0

    async def __call__(self):
        if self.pulled >= self.total:  # the client waits for the answer
            await asyncio.Event().wait()
        size = min(CHUNK, self.total - self.pulled)
        self.pulled += size
        return {"type": "http.request", "body": b"a" * size, "more_body": self.pulled < self.total}


async def call(method, path, feeder, content_type, declare_length=True):
    headers = [(b"host", b"127.0.0.1"), (b"content-type", content_type.encode())]
    if declare_length:
        headers.append((b"content-length", str(feeder.total).encode()))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
             "headers": headers, "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}
    sent = []

    async def send(message):
        sent.append(message)

    await application(scope, feeder, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body


@pytest.fixture
def small_limits(settings):
    settings.MAX_BODY_BYTES = LIMIT
    settings.BODY_LIMITS = {"/api/profiles/me/picture/": 4 * LIMIT}


FORM = "application/x-www-form-urlencoded"


@pytest.mark.parametrize("method,path,content_type", [
    ("POST", "/api/messages/", FORM),
    ("POST", "/api/messages/", "multipart/form-data; boundary=x"),
    ("POST", "/api/messages/", "text/plain"),
    ("PATCH", "/api/users/me/", FORM),
    ("PATCH", "/api/users/me/", "application/json"),
])
async def test_a_declared_length_over_the_limit_is_refused_without_reading_the_body(
        small_limits, method, path, content_type):
    feeder = Feeder(30 * 1024 * 1024)
    status, headers, body = await call(method, path, feeder, content_type)
    assert status == 413
    assert feeder.pulled == 0
    assert headers[b"connection"] == b"close"
    payload = json.loads(body)
    assert payload["success"] is False and payload["data"]["code"] == "payload_too_large"


@pytest.mark.parametrize("content_type", [FORM, "application/json", "application/octet-stream"])
async def test_a_body_without_a_length_stops_being_read_at_the_limit(small_limits, content_type):
    feeder = Feeder(30 * 1024 * 1024)
    status, _, body = await call("POST", "/api/messages/", feeder, content_type, declare_length=False)
    assert status == 413, body
    assert LIMIT < feeder.pulled <= LIMIT + CHUNK
    assert json.loads(body)["data"]["code"] == "payload_too_large"


async def test_bodies_under_the_limit_reach_the_api(small_limits):
    feeder = Feeder(LIMIT)
    status, _, body = await call("POST", "/api/messages/", feeder, FORM, declare_length=False)
    assert status == 401, body  # Django read it whole and the API answered (no token)
    assert feeder.pulled == LIMIT


async def test_the_picture_upload_route_takes_an_upload_sized_body(small_limits):
    feeder = Feeder(3 * LIMIT)
    status, _, _ = await call("POST", "/api/profiles/me/picture/", feeder, "multipart/form-data; boundary=x")
    assert status == 401  # past the body limit: the API saw it
    feeder = Feeder(4 * LIMIT + 1)
    status, _, _ = await call("POST", "/api/profiles/me/picture/", feeder, "multipart/form-data; boundary=x")
    assert status == 413
    assert feeder.pulled == 0


@pytest.mark.parametrize("path", [
    "/api/users/",  # POST: registration with a picture
    "/api/profiles/me/picture/",
    "/api/profiles/upload_profile_picture/",  # POST: the app's edit-profile photo
    "/api/profiles/7/",  # PATCH: the app's photo at sign-up; PUT: updateProfile(profileImage:)
    "/api/profiles/update_me/",  # PATCH/PUT, multipart accepted
    "/api/profiles/me/",
])
def test_every_route_that_takes_a_picture_allows_an_upload_sized_body(settings, path):
    """The shipped app uploads through its own paths (a 800x800 PNG is up to ~1.9 MB):
    each takes the same MAX_UPLOAD_BYTES as /api/profiles/me/picture/, nothing else does."""
    assert body_limit(path) == settings.UPLOAD_BODY_BYTES > settings.MAX_BODY_BYTES
    for other in ("/api/profiles/", "/api/profiles/7/verify/", "/api/profiles/me/x/", "/api/messages/",
                  "/api/users/me/", "/api/profiles/upload_profile_picture/x/", "/api/users"):  # fmt: skip
        assert body_limit(other) == settings.MAX_BODY_BYTES, other


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/messages/", "/api/login/", "/api/users/"])
def test_a_deeply_nested_json_body_is_a_400(make_user, client_for, path):
    response = client_for(make_user()).post(path, "[" * 10_000, content_type="application/json")
    assert response.status_code == 400
    body = response.json()
    assert body["success"] is False and "nested too deeply" in body["message"]


@pytest.mark.django_db
def test_json_nested_within_the_limit_still_parses_to_a_validation_error(make_user, client_for):
    """At habitto_chat.parsing.MAX_JSON_DEPTH (32) levels the body parses."""
    response = client_for(make_user()).post("/api/messages/", "[" * 32 + "]" * 32, content_type="application/json")
    assert response.status_code == 400
    assert "nested" not in response.json()["message"]


# --- the same through a real server process and a raw socket ---------------------------

@pytest.fixture(scope="module")
def live(tmp_path_factory):
    state = tmp_path_factory.mktemp("bodylimit")
    with LiveServer(server_env(state, MAX_BODY_BYTES=LIMIT), [free_port()], state / "server.log") as server:
        yield server


def _request_head(method, path, headers):
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *headers, "", ""]
    return "\r\n".join(lines).encode()


def _read_response(sock, timeout=5):
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_a_30_mb_form_post_is_refused_after_a_few_kb_were_sent(live):
    """Only the headers and 4 KB are ever sent: a server that waited for the body would
    not answer before the timeout."""
    port = live.ports[0]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(_request_head("POST", "/api/messages/", [
            f"Content-Type: {FORM}", f"Content-Length: {30 * 1024 * 1024}"]))
        sock.sendall(b"content=" + b"a" * 4096)
        started = time.monotonic()
        response = _read_response(sock)
    assert response.startswith(b"HTTP/1.1 413"), response[:200]
    assert time.monotonic() - started < 5
    assert b'"payload_too_large"' in response or b"content-length" in response.lower()


def test_a_chunked_body_is_refused_once_past_the_limit(live):
    """The body never ends: the 413 comes once the server has read past the limit."""
    port = live.ports[0]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(_request_head("PATCH", "/api/users/me/", [
            f"Content-Type: {FORM}", "Transfer-Encoding: chunked"]))
        chunk = b"a" * CHUNK
        for _ in range(LIMIT // CHUNK + 2):
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        response = _read_response(sock)
    assert response.startswith(b"HTTP/1.1 413"), response[:200]
