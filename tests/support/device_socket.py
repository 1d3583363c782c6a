"""A raw /ws/v2/ connection for the protocol tests (tests/e2e/test_device_socket*.py):
websocket-client directly, not habitto_client, so the tests check the wire as
SPEC-v2/docs/protocol.md define it. A thread reads every frame into `frames` in arrival
order, so a test can send at a steady rate while frames arrive."""

import json
import socket
import struct
import threading
import time
import urllib.parse
import uuid
from datetime import datetime

import jwt
import pytest
import websocket

MESSAGE_KEYS = {"id", "sender", "receiver", "content", "created_at", "edited_at", "is_read", "client_id"}
CARD_KEYS = {"id", "username", "full_name", "profile_picture"}


def v2_url(server, token=None, port=None, **query):
    """ws://…/ws/v2/ of a live server with ?token= and any resume query
    (after_id=, since=, recent=[ids] joined by commas)."""
    params = {}
    if token is not None:
        params["token"] = token
    for key, value in query.items():
        if value is None or value == []:
            continue
        params[key] = ",".join(map(str, value)) if isinstance(value, (list, tuple, set)) else value
    return f"{server.ws_url(port)}/ws/v2/" + ("?" + urllib.parse.urlencode(params) if params else "")


class V2Socket:
    """One /ws/v2/ connection. `frames`: every text frame parsed (arrival order);
    `close_code` once the server closed it."""

    def __init__(self, url, origin=None, headers=None, subprotocols=None, timeout=5):
        options = {"skip_utf8_validation": True, "enable_multithread": True}
        if origin is None:
            options["suppress_origin"] = True
        else:
            options["origin"] = origin
        if headers:
            options["header"] = [f"{k}: {v}" for k, v in headers.items()]
        if subprotocols:
            options["subprotocols"] = subprotocols
        self.url = url
        self.ws = websocket.create_connection(url, timeout=timeout, **options)
        self.ws.settimeout(None)
        self.frames = []
        self.close_code = None
        self.closed = threading.Event()
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def subprotocol(self):
        return self.ws.getsubprotocol()

    def _read(self):
        try:
            while True:
                opcode, frame = self.ws.recv_data_frame(True)
                if opcode == websocket.ABNF.OPCODE_TEXT:
                    data = frame.data.decode() if isinstance(frame.data, bytes) else frame.data
                    with self._changed:
                        self.frames.append(json.loads(data))
                        self._changed.notify_all()
                elif opcode == websocket.ABNF.OPCODE_CLOSE:
                    if len(frame.data) >= 2:
                        self.close_code = struct.unpack("!H", frame.data[:2])[0]
                    return
        except Exception:  # the connection ended (aborted by the test or the server)
            return
        finally:
            with self._changed:
                self.closed.set()
                self._changed.notify_all()

    # --- sending ----------------------------------------------------------------------
    def send(self, frame):
        self.ws.send(json.dumps(frame, separators=(",", ":")))

    def send_text(self, text):
        self.ws.send(text)

    def send_binary(self, data):
        self.ws.send(data, websocket.ABNF.OPCODE_BINARY)

    # --- waiting ------------------------------------------------------------------------
    def wait(self, predicate, timeout=5, start=0, what="a matching frame"):
        """The first frame at index >= start matching `predicate`; AssertionError at the deadline."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for frame in self.frames[start:]:
                    if predicate(frame):
                        return frame
                left = deadline - time.monotonic()
                if left <= 0 or (self.closed.is_set() and not self._pending(predicate, start)):
                    raise AssertionError(
                        f"{what}: not received within {timeout} s (closed {self.close_code}); "
                        f"last frames: {self.frames[-8:]}"
                    )
                self._changed.wait(min(left, 0.2))

    def _pending(self, predicate, start):
        return any(predicate(f) for f in self.frames[start:])

    def wait_type(self, kind, timeout=5, start=0, **fields):
        def matches(frame):
            return frame.get("type") == kind and all(frame.get(k) == v for k, v in fields.items())

        return self.wait(matches, timeout, start, what=f"{kind} {fields or ''}")

    def wait_closed(self, timeout=5):
        assert self.closed.wait(timeout), f"still open after {timeout} s: {self.frames[-5:]}"
        return self.close_code

    def quiet(self, seconds):
        """The frames that arrive in the next `seconds` seconds."""
        start = len(self.frames)
        time.sleep(seconds)
        return self.frames[start:]

    def request(self, frame, reply=None, timeout=5):
        """Send a frame with a fresh ref; its answer: the ack or error carrying that ref
        (SPEC-v2 copies refs into those only), or the first frame after it of type
        `reply` (pong, presence.snapshot, message.edited...)."""
        ref = uuid.uuid4().hex[:16]
        start = len(self.frames)
        self.send({**frame, "ref": ref})

        def answers(f):
            return f.get("ref") == ref or (reply is not None and f.get("type") == reply)

        return self.wait(answers, timeout, start, what=f"the answer to {frame}")

    # --- closing ------------------------------------------------------------------------
    def close(self):
        """A clean close handshake (the reader thread answers the server's close frame)."""
        if not self.closed.is_set():
            try:
                self.ws.send_close(websocket.STATUS_NORMAL)
            except Exception:
                pass
            self.closed.wait(3)
        self._shutdown()

    def abort(self):
        """Gone without a close handshake (a phone losing its network)."""
        try:
            self.ws.sock.shutdown(socket.SHUT_RDWR)
        except Exception:
            pass
        self.closed.wait(3)
        self._shutdown()

    def _shutdown(self):
        try:
            self.ws.shutdown()
        except Exception:
            pass
        self._reader.join(3)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def check_hello(frame, user_id):
    assert frame == {"type": "hello", "user_id": user_id, "protocol": "2", "heartbeat": 25}, frame


def check_sync_done(frame):
    assert frame["type"] == "sync.done", frame
    assert set(frame) == {"type", "after_id", "since", "replayed"}, frame
    assert isinstance(frame["after_id"], int) and isinstance(frame["replayed"], int)
    assert isinstance(frame["since"], str) and frame["since"], frame
    return frame


def check_created(frame, owner_id):
    """A message.created frame as SPEC-v2 shapes it, for the socket of user `owner_id`."""
    assert frame["type"] == "message.created", frame
    assert set(frame) - {"replay"} == {"type", "message", "counterpart", "pair"}, frame
    message = frame["message"]
    assert set(message) == MESSAGE_KEYS, frame
    assert owner_id in (message["sender"], message["receiver"]), frame
    other = message["receiver"] if message["sender"] == owner_id else message["sender"]
    assert set(frame["counterpart"]) == CARD_KEYS and frame["counterpart"]["id"] == other, frame
    assert frame["pair"] == sorted((message["sender"], message["receiver"])), frame
    assert frame.get("replay", False) in (True, False)
    if "replay" in frame:
        assert frame["replay"] is True, "replay is present only as true"
    return frame


def created_ids(frames):
    return [f["message"]["id"] for f in frames if f.get("type") == "message.created"]


def session_parts(frames, user_id):
    """Split one connection's frames as SPEC-v2 orders them: (hello, [frames before
    sync.done], sync.done, [frames after]). The first frame must be hello."""
    assert frames, "no frame at all"
    check_hello(frames[0], user_id)
    done_at = next((i for i, f in enumerate(frames) if f.get("type") == "sync.done"), None)
    assert done_at is not None, f"no sync.done in {frames[:10]}"
    return frames[0], frames[1:done_at], check_sync_done(frames[done_at]), frames[done_at + 1:]


class Sender:
    """Sends `send` frames on a V2Socket at a steady rate in a thread of its own, until
    stopped; `client_ids` in sending order, `acked()` maps client_id -> message_id."""

    def __init__(self, sock, to, rate, label):
        self.sock, self.to, self.interval, self.label = sock, to, 1 / rate, label
        self.client_ids = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def _run(self):
        n = 0
        next_at = time.monotonic()
        while not self._stop.is_set():
            client_id = f"{self.label}-{n}-{uuid.uuid4().hex[:8]}"
            self.sock.send({"type": "send", "to": self.to, "content": f"{self.label} #{n}", "client_id": client_id})
            self.client_ids.append(client_id)
            n += 1
            next_at += self.interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def stop(self):
        self._stop.set()
        self._thread.join(5)

    def acked(self):
        return {f["client_id"]: f["message_id"] for f in self.sock.frames if f.get("type") == "ack"}

    def wait_all_acked(self, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            acked = self.acked()
            if all(c in acked for c in self.client_ids):
                return [acked[c] for c in self.client_ids]
            time.sleep(0.05)
        errors = [f for f in self.sock.frames if f.get("type") == "error"]
        missing = [c for c in self.client_ids if c not in self.acked()]
        raise AssertionError(f"{self.label}: {len(missing)} sends never acked (errors: {errors[:5]})")


def mint_token(signing_key, user_id, seconds):
    """An access token like simplejwt's (what /api/login/ returns), expiring in `seconds`;
    the servers of these tests run with JWT_SIGNING_KEY=signing_key."""
    now = int(time.time())
    claims = {"token_type": "access", "exp": now + seconds, "iat": now, "jti": uuid.uuid4().hex,
              "user_id": str(user_id)}
    return jwt.encode(claims, signing_key, algorithm="HS256")


class Users:
    """Users provisioned once per module, handed out a few at a time so that every test
    has people of its own (no conversation, presence or rate budget shared by accident)."""

    def __init__(self, users, signing_key):
        self._left = list(users)
        self.signing_key = signing_key

    def take(self, count):
        assert len(self._left) >= count, "provision more users for this module"
        taken, self._left = self._left[:count], self._left[count:]
        for user in taken:
            user["token"] = mint_token(self.signing_key, user["id"], 3600)
        return taken


def moment(iso_text):
    """A frame's "…Z" timestamp as an aware datetime."""
    return datetime.fromisoformat(iso_text.replace("Z", "+00:00"))


class Device:
    """What a /ws/v2/ client keeps between its connections (SPEC-v2 "Resume"): the
    messages it holds and the cursor of its last sync.done. Each connection's frames are
    checked against the contract when it ends (absorb): the order on open, replay
    flags, sync.done's counts, and every message exactly once over all connections."""

    RECENT_WINDOW = 10  # seconds: SPEC-v2's `recent` = ids within 10 s of the newest held

    def __init__(self, user):
        self.user = user
        self.held = {}  # message id -> message object
        self.since = None
        self.sessions = []  # per connection: (replayed frames, sync.done, live frames)

    @property
    def after_id(self):
        return max(self.held, default=0)

    def recent(self):
        if not self.held:
            return []
        newest = moment(self.held[self.after_id]["created_at"])
        return sorted(i for i, m in self.held.items()
                      if (newest - moment(m["created_at"])).total_seconds() <= self.RECENT_WINDOW)

    def resume_query(self):
        return {"after_id": self.after_id, "since": self.since, "recent": self.recent()}

    def connect(self, server):
        """A new connection resuming from what the device holds (after_id=0: everything)."""
        return V2Socket(v2_url(server, self.user["token"], **self.resume_query()))

    def absorb(self, sock, expect_replay_only_created=True):
        """Take in a finished (or still open) connection's frames; returns (replay, done, live)."""
        frames = list(sock.frames)
        _, before, done, after = session_parts(frames, self.user["id"])
        replay = [f for f in before if f.get("type") != "presence.snapshot"]
        for frame in replay:
            assert frame.get("replay") is True, f"a frame before sync.done without replay: true: {frame}"
            if expect_replay_only_created:
                assert frame["type"] == "message.created", frame
        live = [f for f in after if f.get("type") == "message.created"]
        for frame in live:
            assert "replay" not in frame, f"a live frame flagged replay: {frame}"
        replayed = [f for f in replay if f["type"] == "message.created"]
        assert done["replayed"] == len(replayed), (done, created_ids(replayed))
        previous = set(self.held)
        expected_after_id = max(previous | set(created_ids(replayed)), default=0)
        assert done["after_id"] == expected_after_id, f"sync.done {done}, highest id held {expected_after_id}"
        for frame in replayed + live:
            check_created(frame, self.user["id"])
            message = frame["message"]
            assert message["id"] not in self.held, (
                f"message {message['id']} delivered twice to user {self.user['id']}: "
                + (f"held from an earlier connection, now again {'replayed' if frame.get('replay') else 'live'}"
                   if message["id"] in previous else
                   f"frames {[i for i, f in enumerate(frames) if f.get('message', {}).get('id') == message['id']]} "
                   f"of this connection (sync.done is frame {frames.index(done)}, replayed "
                   f"{done['replayed']}, after_id {done['after_id']})"))
            self.held[message["id"]] = message
        check_order_per_pair(replayed + live)
        self.since = done["since"]
        self.sessions.append((replay, done, live))
        return replay, done, live


def check_order_per_pair(frames):
    """Within one connection, each conversation's messages come in increasing id order
    (replay, then live: the replay/live boundary has no duplicate and no step back)."""
    last = {}
    for frame in frames:
        pair, message_id = tuple(frame["pair"]), frame["message"]["id"]
        assert message_id > last.get(pair, 0), (
            f"conversation {pair}: id {message_id} came after {last[pair]} "
            f"({'replay' if frame.get('replay') else 'live'})")
        last[pair] = message_id


@pytest.fixture(scope="session")
def v2_database(postgres_admin_url, tmp_path_factory):
    """One migrated PostgreSQL database for every /ws/v2/ test module (each module
    provisions users of its own); dropped at the end of the session."""
    from tests.support import services
    from tests.support.live import manage, server_env

    url, drop = services.create_postgres_database(postgres_admin_url)
    manage(server_env(tmp_path_factory.mktemp("v2-migrate"), database_url=url), "migrate", "--noinput")
    yield url
    drop()


def own_redis_prefixes():
    """Settings that keep a module's servers to themselves on a shared Redis: pub/sub
    ignores the database number, and user ids repeat across test databases, so another
    run's events would otherwise reach these users' sockets."""
    run = uuid.uuid4().hex[:10]
    return {"REDIS_CHANNEL_PREFIX": f"v2-e2e-{run}", "REDIS_PRESENCE_PREFIX": f"v2-e2e-{run}:presence:",
            "REDIS_CACHE_PREFIX": f"v2-e2e-{run}"}
