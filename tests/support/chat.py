"""Helpers of the tests that drive real servers (tests/e2e, tests/compose): accounts,
frame checks and bounded waits around habitto_client's ChatSocket."""

import json
import time
import uuid
from contextlib import contextmanager

from habitto_client import Timeout

from tests.support.live import LiveServer, free_port, http_json, manage, server_env

PASSWORD = "E2e-test-Passw0rd!"
MESSAGE_KEYS = {"id", "sender", "receiver", "content", "created_at", "edited_at", "is_read", "client_id"}
ROOM_KEYS = MESSAGE_KEYS | {"room_id", "roomId", "createdAt"}  # the old backend's room keys
INBOX_KEYS = {
    "message_id", "id", "sender", "receiver", "content", "created_at", "counterpart_id",
    "counterpart_username", "counterpart_full_name", "counterpart_profile_picture",
}


def recv_until(sock, predicate, timeout=5):
    """The first frame on a ChatSocket matching `predicate`, skipping others; Timeout at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Timeout(f"no matching frame within {timeout}s")
        frame = sock.recv_json(left)
        if predicate(frame):
            return frame


def drain(sock, quiet=0.2, limit=10):
    """Every frame until `quiet` seconds pass with none (at most `limit` seconds)."""
    frames, deadline = [], time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            frames.append(sock.recv_json(quiet))
        except Timeout:
            break
    return frames


def provision(env, count, prefix):
    """Users through the real management command: [{"id", "username", "password"}]."""
    return json.loads(manage(env, "create_loadtest_users", "--count", str(count), "--prefix", prefix,
                             "--password", PASSWORD))


def login(http_url, user):
    status, body = http_json("POST", f"{http_url}/api/login/", {"username": user["username"], "password": PASSWORD})
    assert status == 200, body
    return body["data"]["access"]


def marker(label=""):
    """Unique message text, so frames can be matched even on a shared Redis."""
    return f"{label} {uuid.uuid4().hex[:12]}".strip()


def check_room_frame(frame, sender, receiver, content=None):
    assert set(frame) == ROOM_KEYS, frame
    assert (frame["sender"], frame["receiver"]) == (sender, receiver), frame
    assert isinstance(frame["id"], int) and frame["created_at"].endswith("Z")
    assert frame["room_id"] == frame["roomId"] == "%d-%d" % tuple(sorted((sender, receiver)))
    assert frame["createdAt"] == frame["created_at"]
    if content is not None:
        assert frame["content"] == content
    return frame


def check_inbox_frame(frame, owner, sender, receiver, content=None):
    assert set(frame) == INBOX_KEYS, frame
    assert (frame["sender"], frame["receiver"]) == (sender, receiver), frame
    assert frame["id"] == frame["message_id"]
    assert frame["counterpart_id"] == (receiver if owner == sender else sender)
    if content is not None:
        assert frame["content"] == content
    return frame


def message_of(room_frame):
    """The message object inside a legacy room frame (what REST returns for it)."""
    return {key: room_frame[key] for key in MESSAGE_KEYS}


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


def readiness(server):
    """(status, the redis check) from /readyz."""
    status, body = http_json("GET", f"{server.http_url()}/readyz", timeout=10)
    return status, body["checks"].get("redis") if isinstance(body, dict) else body


def ready_with_redis(server):
    status, body = http_json("GET", f"{server.http_url()}/readyz", timeout=10)
    return status == 200 and body["checks"]["redis"]["ok"] and body["checks"]["channel_layer"]["ok"]


@contextmanager
def two_servers(folder, database_url, redis_url, prefix, **extra_env):
    """Two server processes on one database and one Redis, migrated, with two users,
    both ready: (env, first, second, users)."""
    env = server_env(folder, database_url=database_url, redis_url=redis_url, **extra_env)
    manage(env, "migrate", "--noinput")
    users = provision(env, 2, prefix)
    with two_ready_servers(env, folder) as (first, second):
        yield env, first, second, users


@contextmanager
def two_ready_servers(env, folder):
    """Two server processes with this environment (one database, one Redis), both ready
    with Redis: (first, second); their logs in `folder`."""
    first = LiveServer(env, [free_port()], folder / "first.log")
    second = LiveServer(env, [free_port()], folder / "second.log")
    with first, second:
        for server in (first, second):
            wait_for(lambda: ready_with_redis(server), 15, what="readiness with Redis")
        yield first, second
