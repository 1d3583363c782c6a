"""`/ws/v2/`: the device socket (issue 15, docs/protocol.md). One protocol-2 socket per
device carries every conversation of its user: sends (to a user id, acknowledged after
commit), edits, deletions, read marks, typing, presence, and a resume that replays
what the device missed without a gap or a duplicate.

Resume: the socket holds its live events from the moment it registers (before accept),
replays from the database what the device asked for (queries.replay_page and friends,
page by page, waiting for its outbox to drain between pages), says `sync.done`, then
lets the held events out, skipping the messages it just replayed. A `sync` frame later
does the same from that frame on.

Presence and typing: realtime/presence.py (DevicePresence), through presence_opened /
presence_closed / handle_typing / handle_presence_query.
"""

import asyncio
import functools
import logging
import time
from datetime import datetime, timezone
from urllib.parse import parse_qs

from channels.db import database_sync_to_async

from .. import actions, queries, sends, wire
from ..conf import chat_setting
from ..errors import ChatError, InvalidInput
from ..metrics import RATE_LIMITED, RATE_LIMITED_FRAMES
from ..ratelimit import TokenBucket, allow_send
from .batcher import batcher
from .consumers import SERVER_ERROR, SLOW_CONSUMER, ChatSocket
from .presence import DevicePresence

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 25  # the client pings at least this often (hello frame)
# Live events held while a sync replays; past this the device is too far behind to
# catch up on this socket: it is closed as a slow consumer and resumes on a new one.
MAX_HELD_EVENTS = 10_000
MAX_CACHED_CONVERSATIONS = 1000  # `to` -> conversation id, per socket
# A message created this long before the socket opened is no longer travelling to it live.
REPLAY_IN_FLIGHT_SECONDS = 60
READS_PER_SECOND, READS_BURST = 1.0, 5  # sync and presence.query frames of one socket
RATE_LIMITED_READS = RATE_LIMITED.labels("frame", "device_reads")

_open_conversation = database_sync_to_async(actions.do_open_conversation)
_edit_message = database_sync_to_async(actions.do_edit_message)
_delete_message = database_sync_to_async(actions.do_delete_message)
_mark_read = database_sync_to_async(actions.do_mark_read)
_replay_page = database_sync_to_async(queries.replay_page)
_resume_overlap = database_sync_to_async(queries.resume_overlap)
_changes_since = database_sync_to_async(queries.changes_since)
_newest_visible_id = database_sync_to_async(queries.newest_visible_id)


def _now():
    return datetime.now(timezone.utc)


class DeviceConsumer(ChatSocket):
    kind = "device"
    legacy = False  # strict token expiry: device clients refresh their token and reconnect

    _held = None  # [(event, frames)] while a sync runs; None when live
    _sync_task = None
    _sync_requested = False  # the running sync is the client's (query or frame), not the plain one
    _queued_sync = None
    _in_flight = None
    _presence_open = False

    def speaks_protocol_2(self, query):
        return True

    async def connect(self):
        self._held = []  # before registering: no live event may pass the replay
        self._presence = DevicePresence(self)
        self._replayed_recently = {}  # message id -> monotonic time replayed (see _remember_replayed)
        self._conversations = {}
        self._read_budget = TokenBucket(READS_PER_SECOND, READS_BURST)
        self._unacked = {}  # client_id -> [sends in flight, their message.created frames]
        await super().connect()
        if not self._registered:
            return
        self.push(wire.dumps(wire.hello_frame(self.user_id, HEARTBEAT_SECONDS)))
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        try:
            request = sends.device_sync_query(query)
        except ChatError as error:
            self.send_error(error.code, error.message)
            request = None
        self._sync_requested = request is not None
        self._sync_task = asyncio.get_running_loop().create_task(self._sync(request))

    def _release(self):
        super()._release()
        if self._sync_task is not None:
            self._sync_task.cancel()
            self._sync_task = None
        if self._presence_open:
            self._presence_open = False
            self.presence_closed()

    # --- resume ------------------------------------------------------------------------

    async def _sync(self, request):
        """Replay (or, without a request, just report where the device stands), sync.done,
        then the held events; a sync frame that came during the plain sync on open runs
        right after it, before anything held is let out."""
        try:
            while True:
                if request is None:
                    started = _now()
                    done = wire.sync_done_frame(await _newest_visible_id(self.user_id), wire.sync_cursor(started), 0)
                else:
                    done = await self._replay(request)
                self.push(wire.dumps(done))
                await self._release_held()
                if self._queued_sync is None:
                    break
                request, self._queued_sync = self._queued_sync, None
            self._held = None
            self._sync_task, self._sync_requested = None, False
            if not self._presence_open and not self._closing:
                self._presence_open = True
                await self.presence_opened()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("syncing a device of user %s failed", self.user_id)
            self._close_soon(SERVER_ERROR, "server error")

    async def _replay(self, request):
        """Push the replay of `request`; its sync.done frame."""
        started = _now()
        user_id, after_id = self.user_id, request.after_id
        count = 0
        if after_id:
            count += await self._push_replayed(await _resume_overlap(user_id, after_id, request.recent))
        cursor = after_id
        while True:
            events = await _replay_page(user_id, cursor)
            count += await self._push_replayed(events)
            if events:
                cursor = events[-1]["message"]["id"]
            if len(events) < queries.REPLAY_PAGE:
                break
        if request.since is not None:
            await self._push_replayed(await _changes_since(user_id, after_id, request.since))
        return wire.sync_done_frame(cursor, wire.sync_cursor(started), count)

    async def _push_replayed(self, events):
        """Push replayed events page by page, each page once the one before it has left
        (the outbox stays small whatever the backlog); how many were messages."""
        messages = 0
        for start in range(0, len(events), queries.REPLAY_PAGE):
            for event in events[start : start + queries.REPLAY_PAGE]:
                if event["type"] == "message.created":
                    self._remember_replayed(event["message"])
                    messages += 1
                self.push(wire.dumps(wire.v2_frame(event, self.user_id, self._base_url, replay=True)))
            await self._outbox_drained()
        return messages

    async def _release_held(self):
        """Let out the events held during the sync, without the messages it replayed; live
        from the moment none is left (and no other sync is queued)."""
        while self._held and self._queued_sync is None:
            page, self._held = self._held[: queries.REPLAY_PAGE], self._held[queries.REPLAY_PAGE :]
            for event, frames in page:
                self._push_live(event, frames)
            await self._outbox_drained()

    async def _outbox_drained(self):
        while self._writer is not None and not self._closing:
            await asyncio.wait({self._writer})

    def on_event(self, event, frames):
        if self._held is None:
            if not self._presence.hold(event, frames):  # a presence event waits for a snapshot being built
                self._push_live(event, frames)
        elif len(self._held) < MAX_HELD_EVENTS:
            self._held.append((event, frames))
        else:
            self._close_soon(SLOW_CONSUMER, "too many events during a sync")

    def _remember_replayed(self, message):
        """A replayed message may still come live after the sync: lagging through the
        channel layer, or from gap repair once Redis is back. Only one created around this
        socket's opening or later can (gap repair skips sockets opened after a message was
        created), so only those are remembered, for as long as gap repair looks back."""
        if datetime.fromisoformat(message["created_at"]).timestamp() >= self.opened_at - REPLAY_IN_FLIGHT_SECONDS:
            self._replayed_recently[message["id"]] = time.monotonic()

    def _replayed_before(self, event):
        if event["type"] != "message.created" or not self._replayed_recently:
            return False
        forget_before = time.monotonic() - chat_setting("GAP_REPLAY_SECONDS")
        while self._replayed_recently:  # oldest first: drop what can no longer come live
            oldest = next(iter(self._replayed_recently))
            if self._replayed_recently[oldest] >= forget_before:
                break
            del self._replayed_recently[oldest]
        return event["message"]["id"] in self._replayed_recently

    def _push_live(self, event, frames):
        if self._replayed_before(event):
            return
        text = wire.v2_text(event, frames, self.user_id, self._base_url)
        unacked = self._unacked_send(event)
        if unacked is None:
            self.push(text)
        else:
            unacked[1].append(text)

    def _unacked_send(self, event):
        """[sends in flight, frames waiting] of this socket's send that `event` announces,
        if its ack has not been pushed yet: the commit's events reach the socket before the
        writer's result does, and the sender gets the ack first."""
        if event["type"] != "message.created" or event["message"]["sender"] != self.user_id:
            return None
        return self._unacked.get(event["message"]["client_id"])

    # --- frames from the client ------------------------------------------------------

    async def handle(self, payload):
        try:
            ref = sends.device_ref(payload)
        except ChatError as error:
            return self.send_error(error.code, error.message)
        try:
            await self._handlers[sends.device_frame_type(payload)](self, payload, ref)
        except ChatError as error:
            self.send_error(error.code, error.message, ref)
        except Exception:
            logger.exception("a frame from user %s failed", self.user_id)
            self.send_error("server_error", "The frame could not be handled; nothing was stored.", ref)

    def send_error(self, code, text, ref=None, client_id=None):
        self.push(wire.dumps(wire.v2_error(code, text, ref, client_id)))

    async def _handle_send(self, payload, ref):
        client_id = None
        try:
            client_id = sends.device_client_id(payload)
            to, content = sends.device_send(payload)
            if not allow_send(self.user_id):
                RATE_LIMITED_FRAMES.inc()
                raise InvalidInput("Too many messages; slow down.", code="rate_limited")
            conversation_id = await self._conversation_with(to)
        except ChatError as error:
            return self.send_error(error.code, error.message, ref, client_id)
        request = sends.SendRequest(self.user_id, to, conversation_id, content, client_id)
        # Pipelined as on room sockets: up to SENDS_IN_FLIGHT wait for their batch.
        if self._in_flight is None:
            self._in_flight = asyncio.Semaphore(chat_setting("SENDS_IN_FLIGHT"))
        await self._in_flight.acquire()
        self._unacked.setdefault(client_id, [0, []])[0] += 1
        batcher().enqueue(request).add_done_callback(functools.partial(self._stored, request, ref))

    async def _conversation_with(self, other_id):
        conversation_id = self._conversations.get(other_id)
        if conversation_id is None:
            conversation_id = await _open_conversation(self.user_id, other_id)
            if len(self._conversations) >= MAX_CACHED_CONVERSATIONS:
                self._conversations.clear()
            self._conversations[other_id] = conversation_id
        return conversation_id

    def _stored(self, request, ref, future):
        self._in_flight.release()
        unacked = self._unacked[request.client_id]
        unacked[0] -= 1
        if not unacked[0]:
            del self._unacked[request.client_id]
        if not future.cancelled():
            self._answer_send(request, ref, future)
        for text in unacked[1]:
            self.push(text)
        unacked[1].clear()

    def _answer_send(self, request, ref, future):
        error = future.exception()
        if error is None:
            result = future.result()
            self.push(wire.dumps(wire.v2_ack(request.client_id, result.message.id, result.created, ref)))
        elif isinstance(error, ChatError):
            self.send_error(error.code, error.message, ref, request.client_id)
        else:
            logger.error("storing a message from user %s failed", self.user_id, exc_info=error)
            self.send_error("store_failed", "The message could not be stored; send it again.", ref, request.client_id)

    async def _handle_edit(self, payload, ref):
        message_id, content = sends.device_edit(payload)
        await _edit_message(self.user_id, message_id, content)

    async def _handle_delete(self, payload, ref):
        await _delete_message(self.user_id, sends.device_message_id(payload))

    async def _handle_read(self, payload, ref):
        await _mark_read(self.user_id, sends.device_message_id(payload))

    async def _handle_ping(self, payload, ref):
        self.push(wire.dumps(wire.device_pong_frame(_now(), sends.device_ping(payload))))

    def _check_read_budget(self):
        """sync and presence.query read the database for a socket that already has its
        answer: a client looping on them would hold up every socket's queries."""
        if not self._read_budget.take():
            RATE_LIMITED_READS.inc()
            raise InvalidInput("Too many sync or presence.query frames; slow down.", code="rate_limited")

    async def _handle_sync(self, payload, ref):
        request = sends.device_sync(payload)
        self._check_read_budget()
        if self._sync_task is None:
            self._held, self._sync_requested = [], True
            self._sync_task = asyncio.get_running_loop().create_task(self._sync(request))
        elif not self._sync_requested and self._queued_sync is None:
            self._queued_sync, self._sync_requested = request, True
        else:
            raise InvalidInput("A sync is already running; wait for its sync.done.", code="sync_in_progress")

    async def _handle_typing(self, payload, ref):
        await self.handle_typing(payload)

    async def _handle_presence_query(self, payload, ref):
        self._check_read_budget()
        await self.handle_presence_query(payload)

    _handlers = {
        "send": _handle_send,
        "edit": _handle_edit,
        "delete": _handle_delete,
        "read": _handle_read,
        "ping": _handle_ping,
        "sync": _handle_sync,
        "typing": _handle_typing,
        "presence.query": _handle_presence_query,
    }

    # --- presence and typing (realtime/presence.py) ------------------------------------

    async def presence_opened(self):
        """After the first sync.done: this device counts for its user's presence; the
        presence snapshot of the user's contacts."""
        await self._presence.opened()

    def presence_closed(self):
        """The socket is gone (any way out)."""
        self._presence.closed()

    async def handle_typing(self, payload):
        """A typing frame; raises the ChatError to answer with."""
        await self._presence.typing(payload)

    async def handle_presence_query(self, payload):
        """A presence.query frame; raises the ChatError to answer with."""
        await self._presence.query(payload)
