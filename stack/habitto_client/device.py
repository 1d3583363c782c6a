"""The device socket /ws/v2/: one protocol-2 socket per device carrying every conversation
of the user (docs/protocol.md), and the resume state a client keeps across reconnects.

    cursor = DeviceCursor()                      # survives reconnects
    sock = DeviceSocket.connect(ws_base, session.access, cursor, timeout=5)
    sock.hello                                   # {"type": "hello", "user_id", "protocol", "heartbeat"}
    sock.replayed                                # the frames replayed before sync.done
    sock.send_message(7, "hi", client_id="c-1")
    ack = sock.expect("ack", client_id="c-1")    # an error frame on the way raises ServerRejected
    frame = sock.recv_event(timeout=5)           # message.created duplicates are dropped
    ...                                          # the socket drops; later:
    sock = DeviceSocket.connect(ws_base, session.access, cursor)   # resumes: after_id, since, recent
"""

import time
from datetime import datetime, timedelta

from .errors import ProtocolError, Timeout
from .frames import (
    ServerRejected,
    v2_delete_frame,
    v2_edit_frame,
    v2_ping_frame,
    v2_presence_query_frame,
    v2_read_frame,
    v2_send_frame,
    v2_sync_frame,
    v2_typing_frame,
)
from .sockets import DEFAULT_TIMEOUT, ChatSocket, device_url

RECENT_WINDOW = timedelta(seconds=10)  # `recent`: ids created within 10 s of the newest held
MAX_RECENT = 1000  # the server accepts at most this many `recent` ids


def _created_at(text):
    try:
        return datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None


def _left(deadline, timeout):
    """Seconds left before `deadline`; Timeout once it passed (a zero timeout would make
    the socket non-blocking)."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise Timeout(f"no frame within {timeout:g} s")
    return left


class DeviceCursor:
    """What a device holds, to resume without gaps: after_id (the highest message id held),
    since (the cursor of the last sync.done) and the recent ids (which keep the server's
    overlap replay from sending them again). Dedupes message.created by id."""

    def __init__(self):
        self.after_id = 0
        self.since = None
        self.held = set()  # every message id seen: duplicates are dropped whatever their cause
        self._recent = {}  # id -> created_at, within RECENT_WINDOW of the newest
        self._newest_at = None

    def resume(self):
        """{"after_id", "since", "recent"} for device_url or v2_sync_frame; None before the
        first sync.done (a new device has nothing to resume from)."""
        if self.since is None and not self.after_id:
            return None
        return {"after_id": self.after_id, "since": self.since, "recent": self.recent()}

    def recent(self):
        return sorted(self._recent)[-MAX_RECENT:]

    def observe(self, frame):
        """Account one server frame; False for a message.created already held."""
        kind = frame.get("type")
        if kind == "message.created":
            message = frame.get("message")
            if not isinstance(message, dict) or not isinstance(message.get("id"), int):
                raise ProtocolError(f"message.created without a message id: {frame!r}"[:300])
            message_id = message["id"]
            if message_id in self.held:
                return False
            self.held.add(message_id)
            self.after_id = max(self.after_id, message_id)
            self._remember(message_id, _created_at(message.get("created_at")))
        elif kind == "sync.done":
            self.after_id = max(self.after_id, int(frame.get("after_id") or 0))
            self.since = frame.get("since") or self.since
        return True

    def _remember(self, message_id, created_at):
        if created_at is None:
            return
        if self._newest_at is None or created_at > self._newest_at:
            self._newest_at = created_at
            floor = created_at - RECENT_WINDOW
            self._recent = {i: at for i, at in self._recent.items() if at >= floor}
        if created_at >= self._newest_at - RECENT_WINDOW:
            self._recent[message_id] = created_at


class DeviceSocket(ChatSocket):
    """An open /ws/v2/ socket whose server frames go through its DeviceCursor."""

    def __init__(self, ws, url, timeout):
        super().__init__(ws, url, timeout)
        self.cursor = DeviceCursor()
        self.hello = None
        self.replayed = []
        self.replayed_duplicates = []  # replayed message.created frames held already (dropped from `replayed`)
        self.duplicates = 0  # message.created frames recv_event dropped
        self.skipped = []  # frames expect() read past

    @classmethod
    def connect(cls, ws_base, token, cursor=None, timeout=DEFAULT_TIMEOUT, **open_options):
        """Open /ws/v2/ (resuming from `cursor` when it holds anything), read hello and
        everything up to sync.done. Raises what ChatSocket.open raises, SocketClosed (4401...)
        and ProtocolError."""
        cursor = cursor or DeviceCursor()
        sock = cls.open(device_url(ws_base, token, **(cursor.resume() or {})), timeout=timeout, **open_options)
        sock.cursor = cursor
        try:
            sock.hello = sock.recv_json(timeout)
            if sock.hello.get("type") != "hello":
                raise ProtocolError(f"expected hello, got {sock.hello!r}"[:300])
            sock.replayed = sock._until_synced(timeout)
        except BaseException:
            sock.close(timeout=0.2)
            raise
        return sock

    @property
    def heartbeat(self):
        """Seconds between the client's pings (hello's `heartbeat`)."""
        return (self.hello or {}).get("heartbeat") or 25

    def sync(self, timeout=None):
        """Send a sync frame from the cursor and read until sync.done; the frames before it."""
        self.send_json(v2_sync_frame(**(self.cursor.resume() or {"after_id": 0})))
        return self._until_synced(timeout)

    def _until_synced(self, timeout):
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        frames = []
        while True:
            frame = self.recv_json(_left(deadline, timeout))
            fresh = self.cursor.observe(frame)
            if frame.get("type") == "sync.done":
                return frames
            if fresh:
                frames.append(frame)
            else:
                self.replayed_duplicates.append(frame)

    # -- client frames ------------------------------------------------------------------------
    def send_message(self, to, content, client_id, ref=None):
        """A send (v2_send_frame); the ack comes after commit."""
        self.send_json(v2_send_frame(to, content, client_id, ref))

    def edit(self, message_id, content, ref=None):
        self.send_json(v2_edit_frame(message_id, content, ref))

    def delete(self, message_id, ref=None):
        self.send_json(v2_delete_frame(message_id, ref))

    def read(self, message_id, ref=None):
        self.send_json(v2_read_frame(message_id, ref))

    def typing(self, to, state="start", ref=None):
        self.send_json(v2_typing_frame(to, state, ref))

    def ping(self, nonce=None, ref=None):
        self.send_json(v2_ping_frame(nonce, ref))

    def presence_query(self, users, ref=None):
        self.send_json(v2_presence_query_frame(users, ref))

    # -- server frames ------------------------------------------------------------------------
    def recv_event(self, timeout=None):
        """The next server frame, message.created frames already held dropped (counted in
        `duplicates`)."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            frame = self.recv_json(_left(deadline, timeout))
            if self.cursor.observe(frame):
                return frame
            self.duplicates += 1

    def expect(self, kind, timeout=None, **match):
        """The first frame of type `kind` whose keys equal `match` (e.g. client_id=...),
        looked for first among the frames an earlier expect() read past (`skipped`: frames
        of different kinds may come in either order), then read from the socket. An error
        frame raises ServerRejected unless `kind` is "error"."""

        def wanted(frame):
            return frame.get("type") == kind and all(frame.get(k) == v for k, v in match.items())

        for index, frame in enumerate(self.skipped):
            if wanted(frame):
                return self.skipped.pop(index)
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            frame = self.recv_event(_left(deadline, timeout))
            if frame.get("type") == "error" and kind != "error":
                raise ServerRejected(frame.get("code"), frame.get("message"))
            if wanted(frame):
                return frame
            self.skipped.append(frame)
