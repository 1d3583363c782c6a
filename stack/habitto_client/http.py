"""The REST half of the client: standard-library HTTP with a timeout on every call."""

import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from .errors import AuthError, ChatError, ConnectError, HTTPStatusError, ProtocolError, Timeout
from .tokens import jwt_claims, jwt_user_id

DEFAULT_TIMEOUT = 5.0


@dataclass(frozen=True)
class Session:
    """Tokens of one logged-in user; `user_id` comes from the access token's claim."""

    access: str
    refresh: str
    user_id: int
    username: str = ""

    @property
    def expires_at(self):
        """The access token's `exp` (seconds since the epoch), or None."""
        return jwt_claims(self.access).get("exp")


@dataclass(frozen=True)
class Response:
    """One HTTP answer: status, parsed JSON body (or text), elapsed seconds."""

    status: int
    body: Any
    elapsed: float
    headers: dict = field(default_factory=dict, repr=False)

    @property
    def data(self):
        """The envelope's `data` when the body is enveloped, else the body itself."""
        if isinstance(self.body, dict) and "success" in self.body and "data" in self.body:
            return self.body["data"]
        return self.body

    @property
    def ok(self):
        return 200 <= self.status < 300


def route_name(path, params=None):
    """A call's bounded name: the path (template) and the names of its query parameters."""
    return path + ("?" + "&".join(params) if params else "")


def _parse(raw, content_type):
    if not raw:
        return None
    text = raw.decode("utf-8", errors="replace")
    if "json" in (content_type or "") or text[:1] in "{[":
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


class ChatHTTP:
    """REST calls against one server, e.g. ChatHTTP("http://127.0.0.1:8001", timeout=5).

    Proxies from the environment are ignored (the client talks to the server directly).
    `observer(method, route, response_or_None, elapsed_seconds, error_or_None)`, when given,
    hears every call once it answered or failed; `route` is the call's bounded name (its
    path template plus the names of its parameters, e.g. "/api/messages/thread/?other_user_id&page").
    """

    def __init__(self, base_url, timeout=DEFAULT_TIMEOUT, observer=None):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.observer = observer
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    # -- the generic call ------------------------------------------------------------
    def request(self, method, path, body=None, token=None, params=None, timeout=None, route=None):
        """One call; returns a Response for any HTTP status, raises Timeout/ConnectError."""
        started = time.monotonic()
        try:
            resp = self._exchange(method, path, body, token, params, timeout)
        except ChatError as exc:
            if self.observer:
                self.observer(method, route_name(route or path, params), None, time.monotonic() - started, exc)
            raise
        if self.observer:
            self.observer(method, route_name(route or path, params), resp, resp.elapsed, None)
        return resp

    def _exchange(self, method, path, body, token, params, timeout):
        url = self.base_url + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        timeout = self.timeout if timeout is None else timeout
        started = time.monotonic()
        try:
            with self._opener.open(req, timeout=timeout) as resp:
                raw = resp.read()
                status, headers = resp.status, dict(resp.headers)
        except urllib.error.HTTPError as exc:
            try:
                raw = exc.read()
            except (OSError, socket.timeout):
                raw = b""
            status, headers = exc.code, dict(exc.headers or {})
        except (socket.timeout, TimeoutError) as exc:
            raise Timeout(f"{method} {path}: no answer within {timeout:g} s") from exc
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, (socket.timeout, TimeoutError)):
                raise Timeout(f"{method} {path}: no answer within {timeout:g} s") from exc
            raise ConnectError(f"{method} {url}: {exc.reason}") from exc
        except (ConnectionError, OSError) as exc:
            raise ConnectError(f"{method} {url}: {exc}") from exc
        return Response(status, _parse(raw, headers.get("Content-Type")), time.monotonic() - started, headers)

    def call(self, method, path, body=None, session=None, params=None, expect=(200, 201, 204), route=None):
        """A call that must succeed: returns the envelope's data, raises HTTPStatusError/AuthError."""
        token = session.access if isinstance(session, Session) else session
        resp = self.request(method, path, body=body, token=token, params=params, route=route)
        if resp.status not in expect:
            cls = AuthError if resp.status in (401, 403) else HTTPStatusError
            raise cls(resp.status, resp.body)
        return resp.data

    # -- accounts ---------------------------------------------------------------------
    def login(self, username, password):
        """POST /api/login/ -> Session. Wrong credentials raise AuthError."""
        resp = self.request("POST", "/api/login/", {"username": username, "password": password})
        if resp.status in (400, 401, 403):
            raise AuthError(resp.status, resp.body)
        if not resp.ok:
            raise HTTPStatusError(resp.status, resp.body)
        return self._session(resp.data, username)

    def refresh(self, session):
        """POST /api/refresh/ -> a new Session (the old refresh token is blacklisted)."""
        resp = self.request("POST", "/api/refresh/", {"refresh": session.refresh, "refresh_token": session.refresh})
        if resp.status in (400, 401, 403):
            raise AuthError(resp.status, resp.body)
        if not resp.ok:
            raise HTTPStatusError(resp.status, resp.body)
        return self._session(resp.data, session.username, session.refresh)

    def logout(self, session):
        self.call("POST", "/api/logout/", {"refresh": session.refresh}, session)

    def register(self, username, password, email=None, first_name="", last_name="", **extra):
        """POST /api/users/ -> the created user's data (a dict with at least `id`)."""
        body = {
            "username": username,
            "password": password,
            "email": email or f"{username}@example.invalid",
            "first_name": first_name,
            "last_name": last_name,
            **extra,
        }
        return self.call("POST", "/api/users/", body, expect=(200, 201))

    def me(self, session):
        return self.call("GET", "/api/users/me/", session=session)

    def users(self, session, **params):
        """GET /api/users/ -> a page of users (the app's user list sends no parameters)."""
        return self.call("GET", "/api/users/", session=session, params=params or None)

    def my_profile(self, session):
        """GET /api/profiles/me/ -> the caller's profile."""
        return self.call("GET", "/api/profiles/me/", session=session)

    def profiles_of_user(self, session, user_id):
        """GET /api/profiles/?user_id=ID -> a page holding that user's profile."""
        return self.call("GET", "/api/profiles/", session=session, params={"user_id": int(user_id)})

    @staticmethod
    def _session(data, username, old_refresh=None):
        if not isinstance(data, dict) or "access" not in data:
            raise ProtocolError(f"login answered without an access token: {data!r}"[:300])
        access = data["access"]
        return Session(access, data.get("refresh") or old_refresh or "", jwt_user_id(access), username)

    # -- messages ---------------------------------------------------------------------
    def send_message(self, session, receiver, content, client_id=None):
        """POST /api/messages/ -> the stored message (dict)."""
        body = {"receiver": int(receiver), "content": content}
        if client_id is not None:
            body["client_id"] = client_id
        return self.call("POST", "/api/messages/", body, session, expect=(200, 201))

    def thread(self, session, other_user_id, **params):
        """GET /api/messages/thread/ -> a page {count, next, previous, results} (newest first)."""
        return self.call("GET", "/api/messages/thread/", session=session,
                         params={"other_user_id": int(other_user_id), **params})

    def conversations(self, session, **params):
        """GET /api/messages/conversations/ -> a page of {counterpart, last_message, unread_count}."""
        return self.call("GET", "/api/messages/conversations/", session=session, params=params or None)

    def mark_thread_read(self, session, other_user_id):
        return self.call("POST", "/api/messages/mark_thread_read/", {"other_user_id": int(other_user_id)}, session)

    def clear_conversation(self, session, other_user_id):
        """Hide everything so far in this conversation, for this user only."""
        return self.call("POST", "/api/messages/clear_conversation/", {"other_user_id": int(other_user_id)}, session)

    def thread_messages(self, session, other_user_id, page_size=100):
        """Every visible message of a thread, newest first, paged with the before_id cursor."""
        params = {"page_size": page_size}
        while True:
            results = self.thread(session, other_user_id, **params)["results"]
            yield from results
            if len(results) < page_size:
                return
            params["before_id"] = results[-1]["id"]

    # -- notifications ------------------------------------------------------------------
    def notifications(self, session, **params):
        """GET /api/notifications/ -> a page (the badge: is_read="false"; count at the top level too)."""
        return self.call("GET", "/api/notifications/", session=session, params=params or None)

    def mark_notification_read(self, session, notification_id):
        return self.call("POST", f"/api/notifications/{int(notification_id)}/mark_as_read/", {}, session,
                         route="/api/notifications/{id}/mark_as_read/")

    # -- health (not enveloped; never raises on 503) ----------------------------------------
    def healthz(self, timeout=None):
        """GET /healthz -> Response (status and parsed JSON)."""
        return self.request("GET", "/healthz", timeout=timeout)

    def readyz(self, timeout=None):
        """GET /readyz -> Response; 503 with the failing check when a dependency is down."""
        return self.request("GET", "/readyz", timeout=timeout)

    def metrics(self, token=None, timeout=None):
        """GET /metrics -> Response whose body is the Prometheus text; 404 unless the request
        comes from loopback or carries the server's METRICS_TOKEN (docs/metrics.md)."""
        return self.request("GET", "/metrics", token=token, timeout=timeout)


__all__ = ["ChatHTTP", "Response", "Session", "ChatError"]
