"""A real WebSocket client (websocket-client) and provisioning helpers for the
end-to-end tests: every wait is bounded."""

import json
import struct
import time
import uuid
from urllib.parse import quote

import websocket

from tests.support.live import http_json, manage

PASSWORD = "E2e-test-Passw0rd!"
ROOM_KEYS = {"id", "sender", "receiver", "content", "created_at", "edited_at", "is_read", "client_id"}
INBOX_KEYS = {
    "message_id", "sender", "receiver", "content", "created_at", "counterpart_id",
    "counterpart_username", "counterpart_full_name", "counterpart_profile_picture",
}


class Closed(Exception):
    """The server closed the socket; `code` is its close code (None when absent)."""

    def __init__(self, code):
        super().__init__(f"closed with {code}")
        self.code = code


class Socket:
    """One client socket; recv_json raises TimeoutError or Closed."""

    def __init__(self, url, timeout=5, **options):
        self.url = url
        self.ws = websocket.create_connection(url, timeout=timeout, **options)
        self.subprotocol = self.ws.getsubprotocol()
        self.close_code = None

    def send_json(self, payload):
        self.ws.send(json.dumps(payload))

    def send_text(self, text):
        self.ws.send(text)

    def recv_json(self, timeout=5):
        if self.close_code is not None:
            raise Closed(self.close_code)
        self.ws.settimeout(timeout)
        try:
            opcode, frame = self.ws.recv_data_frame(control_frame=False)
        except websocket.WebSocketTimeoutException:
            raise TimeoutError(f"nothing on {self.url} within {timeout}s") from None
        except (websocket.WebSocketConnectionClosedException, ConnectionError, OSError):
            self.close_code = self.close_code or 1006
            raise Closed(self.close_code) from None
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            data = frame.data or b""
            self.close_code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1005
            raise Closed(self.close_code)
        if opcode != websocket.ABNF.OPCODE_TEXT:
            raise AssertionError(f"unexpected opcode {opcode}")
        return json.loads(frame.data.decode())

    def recv_until(self, predicate, timeout=5):
        """The first frame matching `predicate`, skipping others; TimeoutError at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no matching frame on {self.url} within {timeout}s")
            frame = self.recv_json(left)
            if predicate(frame):
                return frame

    def drain(self, quiet=0.2, limit=10):
        """Every frame until `quiet` seconds pass with none (at most `limit` seconds)."""
        frames, deadline = [], time.monotonic() + limit
        while time.monotonic() < deadline:
            try:
                frames.append(self.recv_json(quiet))
            except TimeoutError:
                break
        return frames

    def wait_closed(self, timeout=5):
        """The close code, skipping any frames before it."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.recv_json(max(deadline - time.monotonic(), 0.01))
            except Closed as closed:
                return closed.code
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.url} still open after {timeout}s")

    def close(self):
        try:
            self.ws.close(timeout=1)
        except Exception:
            pass


def provision(env, count, prefix):
    """Users through the real management command: [{"id", "username", "password"}]."""
    return json.loads(manage(env, "create_loadtest_users", "--count", str(count), "--prefix", prefix,
                             "--password", PASSWORD))


def login(http_url, user):
    status, body = http_json("POST", f"{http_url}/api/login/", {"username": user["username"], "password": PASSWORD})
    assert status == 200, body
    return body["data"]["access"]


def room_path(a, b, token=None):
    low, high = sorted((a, b))
    return f"/ws/chat/{low}-{high}/" + (f"?token={quote(token)}" if token else "")


def inbox_path(user_id, token=None, alias=False):
    base = f"/ws/notifications/{user_id}/" if alias else f"/ws/chat/inbox/{user_id}/"
    return base + (f"?token={quote(token)}" if token else "")


def marker(label=""):
    """Unique message text, so frames can be matched even on a shared Redis."""
    return f"{label} {uuid.uuid4().hex[:12]}".strip()


def check_room_frame(frame, sender, receiver, content=None):
    assert set(frame) == ROOM_KEYS, frame
    assert (frame["sender"], frame["receiver"]) == (sender, receiver), frame
    assert isinstance(frame["id"], int) and frame["created_at"].endswith("Z")
    if content is not None:
        assert frame["content"] == content
    return frame


def check_inbox_frame(frame, owner, sender, receiver, content=None):
    assert set(frame) == INBOX_KEYS, frame
    assert (frame["sender"], frame["receiver"]) == (sender, receiver), frame
    assert frame["counterpart_id"] == (receiver if owner == sender else sender)
    if content is not None:
        assert frame["content"] == content
    return frame


def wait_for(check, timeout, interval=0.25, what="condition"):
    """Poll `check()` until it returns a truthy value; AssertionError at the deadline."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what} not reached within {timeout}s (last: {last!r})")


def thread_ids(http_url, token, other_id):
    """Every message id of the thread with `other_id`, over REST (all pages)."""
    ids, url = [], f"{http_url}/api/messages/thread/?other_user_id={other_id}&page_size=100"
    for _ in range(100):
        status, body = http_json("GET", url, token=token)
        assert status == 200, body
        ids += [m["id"] for m in body["data"]["results"]]
        url = body["data"]["next"]
        if not url:
            return ids
    raise AssertionError("thread pagination did not end")
