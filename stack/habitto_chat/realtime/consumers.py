"""The sockets: room and inbox, in the legacy protocol the shipped app speaks, or in
protocol 2 when the client asks for it with `?protocol=2` (docs/protocol.md); the
notification sockets, legacy only (docs/notifications.md).

Consumers parse, authorize and call: a room send is validated by `sends` and goes to
the group-commit batcher and from there through actions.do_send_messages; opening a
room is actions.do_open_conversation. Consumers never write. Every event a socket
receives comes from the hub after commit, and the socket renders its frame through
`wire` (serialized once per event, shared with the other sockets it goes to). Each socket writes through its own small outbox, so one slow
client never holds up delivery to the others.

Whatever a client sends, the socket answers with an error frame or closes with a code
(docs/protocol.md): no frame can raise out of the consumer, and a socket leaves the hub
on every way out (a clean close, an exception, a cancelled task), so no hostile client
can lock its user out with leftover registrations.
"""

import asyncio
import functools
import logging
import time
from collections import deque
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs

from channels.db import database_sync_to_async

from .. import parsing, sends, wire
from ..actions import do_open_conversation
from ..conf import chat_setting
from ..errors import ChatError, NotFound
from ..metrics import HANDSHAKES_REFUSED, RATE_LIMITED_FRAMES, SOCKETS_OPEN
from ..ratelimit import allow_send
from ..tokens import expiry_leeway, socket_token_grace
from .auth import origin_allowed
from .batcher import batcher
from .direct import DirectWebsocketConsumer
from .hub import hub

logger = logging.getLogger(__name__)

# Close codes (docs/protocol.md).
UNAUTHENTICATED = 4401
FORBIDDEN = 4403
NOT_FOUND = 4404
SLOW_CONSUMER = 4408
TOO_MANY_SOCKETS = 4429
SERVER_ERROR = 1011  # an unexpected failure opening the socket or delivering to it (logged)


class Refused(Exception):
    def __init__(self, code, reason):
        super().__init__(reason)
        self.code = code
        self.reason = reason


class ChatSocket(DirectWebsocketConsumer):
    """What room and inbox sockets share: auth, origin, registration, outbox, expiry.

    A socket lives until its token's deadline (`_token_deadline`: legacy sockets get
    the grace of tokens.socket_token_grace), a logout revoking that token, or its user's
    deactivation; each closes it with 4401."""

    # Events come from the hub, not from a channel-layer channel per socket.
    channel_layer_alias = None
    kind = "socket"  # the metrics' label for this kind of socket

    opened_at = 0.0  # wall clock of the handshake: gap repair replays only later messages

    user_id = None
    v2 = False
    offers_protocol_2 = True  # False: `?protocol=2` is ignored, the socket stays legacy
    _registered = False
    _accepted = False
    _closing = False
    _writer = None
    _expiry = None

    async def __call__(self, scope, receive, send):
        # Channels runs disconnect() only when the client's disconnect message is handled;
        # an exception or a cancelled task skips it, so the release is here too.
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()

    def _release(self):
        self._closing = True
        if self._registered:
            hub.unregister(self)
            self._open_sockets.dec()
            self._registered = False
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    async def websocket_connect(self, message):
        try:
            await super().websocket_connect(message)
        except Exception:
            logger.exception("opening a socket for user %s failed", self.scope.get("user_id"))
            self._release()
            if not self._accepted:
                await self._quietly(self.accept(self.scope.get("chat_subprotocol")))
            await self._quietly(self.close(code=SERVER_ERROR, reason="server error"))

    async def websocket_receive(self, message):
        try:
            await super().websocket_receive(message)
        except Exception:
            logger.exception("a frame from user %s failed", self.user_id)
            self.send_error("server_error", "The frame could not be handled; nothing was stored.")

    async def connect(self):
        # Register before accepting: once the client sees the handshake complete, it
        # misses no frame (frames pushed meanwhile wait in the outbox until accept).
        # Refuse after accepting: a refusal before accept is a bare HTTP 403, and the
        # client would never see which close code applies.
        self._outbox = deque()
        self._base_url = base_url(self.scope)
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        self.v2 = self.speaks_protocol_2(query)
        self.opened_at = time.time()
        try:
            if self.scope.get("auth_failure"):
                raise Refused(UNAUTHENTICATED, self.scope["auth_failure"])
            if time.time() >= self._token_deadline():
                raise Refused(UNAUTHENTICATED, "token expired")
            if not origin_allowed(self.scope, chat_setting("ALLOWED_ORIGINS")):
                raise Refused(FORBIDDEN, "origin not allowed")
            self.user_id = self.scope["user_id"]
            await self.authorize()
            if not hub.register(self):
                raise Refused(TOO_MANY_SOCKETS, "too many sockets for this user")
        except Refused as refusal:
            self.user_id = None
            HANDSHAKES_REFUSED.labels(str(refusal.code)).inc()
            await self.accept(self.scope.get("chat_subprotocol"))
            await self.close(code=refusal.code, reason=refusal.reason)
            return
        self._registered = True
        self._open_sockets = SOCKETS_OPEN.labels(self.kind, "2" if self.v2 else "legacy")
        self._open_sockets.inc()
        await self.accept(self.scope.get("chat_subprotocol"))
        self._accepted = True
        if self._outbox and self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._drain())
        remaining = self._token_deadline() - time.time()
        self._expiry = asyncio.get_running_loop().call_later(max(remaining, 0), self._token_expired)

    def speaks_protocol_2(self, query):
        """Legacy sockets must carry nothing but what the shipped app reads; everything
        else (acks, edits, reads, typed errors) is for clients that ask for protocol 2."""
        return self.offers_protocol_2 and query.get("protocol") == [wire.PROTOCOL_2]

    @property
    def legacy(self):
        """Whether this socket gets the token grace: every socket the shipped app opens
        does (it never refreshes a socket's token); protocol 2 does not (its clients
        refresh and reconnect). A consumer may declare it with a class attribute."""
        return not self.v2

    def _token_deadline(self):
        """When this socket's token stops being honoured (epoch seconds): its expiry
        plus simplejwt's leeway, plus the grace for a legacy socket."""
        allowed = expiry_leeway() + (socket_token_grace() if self.legacy else timedelta(0))
        return self.scope["token_exp"] + allowed.total_seconds()

    async def authorize(self):
        """Raise Refused unless this user may open this socket."""

    async def disconnect(self, code):
        self._release()

    async def receive(self, text_data=None, bytes_data=None):
        if not self._registered or self._closing:
            return
        if text_data is None:
            return self.send_error("binary_frame", "Only text frames are accepted.")
        if len(text_data) > chat_setting("MAX_FRAME_BYTES"):
            return self.send_error("frame_too_large", "The frame is too large.")
        try:
            payload = parsing.loads_json(text_data)
        except parsing.JSONTooDeep:
            return self.send_error("json_too_deep", f"The frame nests deeper than {parsing.MAX_JSON_DEPTH} levels.")
        except ValueError:  # also a number of more than 4,300 digits
            return self.send_error("invalid_json", "The frame is not valid JSON.")
        await self.handle(payload)

    async def handle(self, payload):
        self.send_error("not_accepted", "This socket does not accept frames.")

    # --- outbound ----------------------------------------------------------------

    def deliver(self, event, frames):
        """Called by the hub, in the event loop, for events naming this socket's user;
        `frames` is the event's cache of serialized frames (wire.*_text)."""
        if event["type"] in wire.SESSION_EVENTS:
            if event["type"] == "user.deactivated" or event["jti"] == self.scope.get("token_jti"):
                self._close_soon(UNAUTHENTICATED, "session ended")
            return
        try:
            self.on_event(event, frames)
        except Exception:  # the hub goes on to the other sockets
            logger.exception("delivering %s to user %s failed", event["type"], self.user_id)
            self._close_soon(SERVER_ERROR, "server error")

    def on_event(self, event, frames):
        """What this kind of socket sends for a chat event."""

    def push(self, text):
        if self._closing:
            return
        if len(self._outbox) >= chat_setting("OUTBOX_FRAMES"):
            self._close_soon(SLOW_CONSUMER, "too slow reading frames")
            return
        self._outbox.append(text)
        if self._writer is None and self._accepted:
            self._writer = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self):
        try:
            while self._outbox and not self._closing:
                await self.send(text_data=self._outbox.popleft())
        except Exception:  # the client went away mid-send; disconnect() follows
            self._outbox.clear()
        finally:
            self._writer = None

    def send_error(self, code, text):
        frame = wire.v2_error(code, text) if self.v2 else wire.error_frame(code, text)
        self.push(wire.dumps(frame))

    def _token_expired(self):
        self._close_soon(UNAUTHENTICATED, "token expired")

    def _close_soon(self, code, reason):
        if not self._closing:
            self._closing = True
            asyncio.get_running_loop().create_task(self._quietly(self.close(code=code, reason=reason)))

    @staticmethod
    async def _quietly(sending):
        try:
            await sending
        except Exception:  # the client is already gone: nothing left to tell it
            pass


def base_url(scope):
    """Where this client reached us, for absolute picture URLs."""
    host = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"host"), None)
    if host is None:
        server = scope.get("server") or ("localhost", None)
        host = f"{server[0]}:{server[1]}" if server[1] else server[0]
    scheme = "https" if scope.get("scheme") == "wss" else "http"
    return f"{scheme}://{host}"


_open_conversation = database_sync_to_async(do_open_conversation)


class RoomConsumer(ChatSocket):
    """`/ws/chat/<low>-<high>/`: the two participants' live thread."""

    kind = "room"

    _in_flight = None

    async def authorize(self):
        kwargs = self.scope["url_route"]["kwargs"]
        low, high = sorted((int(kwargs["low"]), int(kwargs["high"])))
        if low == high:
            raise Refused(NOT_FOUND, "a room needs two different users")
        if self.user_id not in (low, high):
            raise Refused(FORBIDDEN, "not a participant of this room")
        self.pair = [low, high]
        self.other_id = high if self.user_id == low else low
        try:
            self.conversation_id = await _open_conversation(self.user_id, self.other_id)
        except NotFound:
            raise Refused(NOT_FOUND, "unknown user") from None

    async def handle(self, payload):
        parse = sends.v2_room_send if self.v2 else sends.legacy_room_send
        try:
            request = parse(payload, self.user_id, self.other_id, self.conversation_id)
        except ChatError as error:
            return self.send_error(error.code, error.message)
        if not allow_send(self.user_id):
            RATE_LIMITED_FRAMES.inc()
            return self.send_error("rate_limited", "Too many messages; slow down.")
        # Pipelined: the socket reads its next frame while this one waits for its batch
        # (one message in flight per socket capped throughput, docs/benchmarks.md), up to
        # SENDS_IN_FLIGHT; enqueue() keeps the frames' order.
        if self._in_flight is None:
            self._in_flight = asyncio.Semaphore(chat_setting("SENDS_IN_FLIGHT"))
        await self._in_flight.acquire()
        batcher().enqueue(request).add_done_callback(functools.partial(self._stored, request))

    def _stored(self, request, future):
        self._in_flight.release()
        if future.cancelled():
            return
        error = future.exception()
        if error is None:
            # Legacy: the echo from the hub, after commit, is the acknowledgement.
            if self.v2:
                result = future.result()
                self.push(wire.dumps(wire.v2_ack(request.client_id, result.message.id, result.created)))
        elif isinstance(error, ChatError):
            self.send_error(error.code, error.message)
        else:
            logger.error("storing a message from user %s failed", self.user_id, exc_info=error)
            self.send_error("store_failed", "The message could not be stored; send it again.")

    def on_event(self, event, frames):
        if event["pair"] != self.pair or event["type"] in wire.DEVICE_EVENTS:
            return
        if self.v2:
            self.push(wire.v2_text(event, frames, self.user_id, self._base_url))
        elif event["type"] == "message.created":
            self.push(wire.room_text(event, frames))


class InboxConsumer(ChatSocket):
    """`/ws/chat/inbox/<id>/` and `/ws/notifications/<id>/`: the owner's conversation feed."""

    kind = "inbox"

    async def authorize(self):
        if int(self.scope["url_route"]["kwargs"]["user_id"]) != self.user_id:
            raise Refused(FORBIDDEN, "not your inbox")

    def on_event(self, event, frames):
        if event["type"] in wire.DEVICE_EVENTS:
            return
        if self.v2:
            self.push(wire.v2_text(event, frames, self.user_id, self._base_url))
        elif event["type"] == "message.created":
            self.push(wire.inbox_text(event, frames, self.user_id, self._base_url))


class NotificationConsumer(ChatSocket):
    """`/ws/property-notifications/<id>/` and `/ws/tenant-notifications/<id>/`: the owner's
    notifications of that audience, in the old backend's frames. Like the old consumers:
    a welcome frame on connect, `{"type": "ping"}` answered with a pong, other JSON
    ignored, a frame that is not JSON answered with an error frame."""

    audience = None  # wire.PROPERTY_AUDIENCE or wire.TENANT_AUDIENCE
    offers_protocol_2 = False  # protocol-2 clients get notifications on their inbox

    async def authorize(self):
        if int(self.scope["url_route"]["kwargs"]["user_id"]) != self.user_id:
            raise Refused(FORBIDDEN, "not your notifications")

    async def connect(self):
        await super().connect()
        if self._registered:
            self.push(wire.dumps(wire.notification_welcome_frame(self.audience, _now())))

    async def handle(self, payload):
        if isinstance(payload, dict) and payload.get("type") == "ping":
            self.push(wire.dumps(wire.pong_frame(_now())))

    def send_error(self, code, text):
        self.push(wire.dumps(wire.notification_error_frame(code, text)))

    def on_event(self, event, frames):
        if event["type"] == "notification.created":
            text = wire.notification_text(event, frames, self.audience)
            if text is not None:
                self.push(text)


class PropertyNotificationConsumer(NotificationConsumer):
    kind = "property_notifications"
    audience = wire.PROPERTY_AUDIENCE


class TenantNotificationConsumer(NotificationConsumer):
    kind = "tenant_notifications"
    audience = wire.TENANT_AUDIENCE


def _now():
    return datetime.now(timezone.utc)


class UnknownPathConsumer(DirectWebsocketConsumer):
    channel_layer_alias = None

    async def connect(self):
        HANDSHAKES_REFUSED.labels(str(NOT_FOUND)).inc()
        await self.accept()
        await self.close(code=NOT_FOUND, reason="no such socket")
