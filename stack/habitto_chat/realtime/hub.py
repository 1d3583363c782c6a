"""The hub: one per process, the transport of committed events to the sockets they concern.

- Sockets of this process register here by user id; an event goes straight to the
  sockets of its `recipients` (no channel-layer round trip for local sockets).
- Other processes learn events through the channel layer: one group_send per
  published batch to one fan-out group that every process's hub listens on. With the
  in-memory layer there are no other processes, so nothing is sent.
- The hub knows no frame: each socket renders its own through `wire`. With an event it
  hands every socket the same empty per-event cache, so a frame is serialized once per
  event (and once per owner for inbox and protocol-2 frames), not once per socket.

Events come from the actions through events.publish_on_commit (the hub subscribes at
start-up, realtime/apps.py), from any thread; typing and presence, which nothing stores,
from realtime/presence.py in the event loop (publish_ephemeral). What the layer drops,
realtime/gaps.py replays from the database (messages only).
Cost per published batch and why this layout: docs/realtime.md.
"""

import asyncio
import logging
import time
import uuid
from collections import defaultdict

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer

from ..conf import chat_setting
from ..metrics import LAYER_PUBLISH_ERRORS, LAYER_RECEIVE_ERRORS, LOCAL_DELIVERY, REMOTE_DELIVERY
from .gaps import GapRepair

logger = logging.getLogger(__name__)

FANOUT_GROUP = "habitto_chat.fanout"


class Hub:
    def __init__(self):
        self.id = uuid.uuid4().hex
        self._sockets = defaultdict(set)  # user id -> sockets in this process
        self._loop = None
        self._layer = None
        self._listener = None
        self._channel = None  # this hub's channel on the layer, while subscribed
        self._subscribed = None  # asyncio.Event, set while self._channel is listening
        self._pings = {}
        self._last_remote_warning = 0.0
        self.remote_failures = 0
        self.gaps = GapRepair(self)

    # --- lifecycle ------------------------------------------------------------------

    def bind(self, loop):
        """Attach to the server's event loop (called on every socket handshake; cheap)."""
        if self._loop is loop:
            return
        self._loop = loop
        self._layer = get_channel_layer()
        self._listener = None
        self._channel = None
        self._subscribed = asyncio.Event()
        if self.is_distributed:
            self._listener = loop.create_task(self._listen())
            _watch_layer_receiver(self)

    @property
    def is_distributed(self):
        return self._layer is not None and not isinstance(self._layer, InMemoryChannelLayer)

    # --- sockets (event loop thread) ---------------------------------------------------

    def register(self, socket):
        """Add a socket; False when its user already has the maximum number here."""
        sockets = self._sockets[socket.user_id]
        if len(sockets) >= chat_setting("MAX_SOCKETS_PER_USER"):
            return False
        sockets.add(socket)
        return True

    def unregister(self, socket):
        sockets = self._sockets.get(socket.user_id)
        if sockets is not None:
            sockets.discard(socket)
            if not sockets:
                del self._sockets[socket.user_id]

    def local_user_ids(self):
        return list(self._sockets)

    def deliver_replayed(self, event, created_at):
        """A message from the database after a gap, to the sockets that were open when it
        was created (a later socket loaded it with the history); 1 if any got it."""
        frames, delivered = {}, 0
        for user_id in event["recipients"]:
            for socket in tuple(self._sockets.get(user_id, ())):
                if socket.opened_at <= created_at:
                    socket.deliver(event, frames)
                    delivered = 1
        return delivered

    # --- publishing (any thread) -------------------------------------------------------

    def publish(self, events):
        committed_at = time.time()  # called right after commit: the delivery metric's start
        loop = self._loop
        if loop is not None and not loop.is_closed() and loop.is_running():
            loop.call_soon_threadsafe(self._publish_in_loop, events, committed_at)
            return
        # No server loop in this process (a management command, a shell): only the
        # other processes have sockets, and only a distributed layer reaches them.
        self._layer = self._layer or get_channel_layer()
        if self.is_distributed:
            async_to_sync(self._send_remote)(events, committed_at)

    def publish_ephemeral(self, events):
        """Typing and presence, from the event loop thread: to this process's sockets now
        and through the channel layer to the others. Never stored, so never replayed: a
        lost one is not repaired (the next start, stop or presence change corrects it)."""
        self._deliver_now(events, None, None)
        if self.is_distributed:
            self._loop.create_task(self._send_ephemeral(events))

    async def _send_ephemeral(self, events):
        try:
            await asyncio.wait_for(
                self._layer.group_send(FANOUT_GROUP, {"type": "chat.ephemeral", "origin": self.id, "events": events}),
                chat_setting("LAYER_TIMEOUT"),
            )
        except Exception as exc:
            self.remote_failures += 1
            LAYER_PUBLISH_ERRORS.inc()
            self._warn_remote_failure(exc)

    def _publish_in_loop(self, events, committed_at):
        self._deliver(events, committed_at, LOCAL_DELIVERY)
        if self.is_distributed:
            self._loop.create_task(self._send_remote(events, committed_at))

    def _deliver(self, events, committed_at, latency):
        delay_ms = chat_setting("DELIVERY_DELAY_MS")
        if delay_ms:  # test-only slowdown, to prove the load tester sees it
            self._loop.call_later(delay_ms / 1000, self._deliver_now, events, committed_at, latency)
        else:
            self._deliver_now(events, committed_at, latency)

    def _deliver_now(self, events, committed_at, latency):
        now = time.time()
        for event in events:
            # A message replayed after a gap may come again through the layer: once only.
            if event["type"] == "message.created" and not self.gaps.first_delivery(event["message"]["id"], now):
                continue
            frames = {}  # filled by the sockets through wire.*_text
            for user_id in event["recipients"]:
                for socket in tuple(self._sockets.get(user_id, ())):
                    socket.deliver(event, frames)
        if latency is not None:  # ephemeral events have no commit to measure from
            latency.observe(max(time.time() - committed_at, 0.0))  # per batch, not per frame

    async def _send_remote(self, events, committed_at):
        message = {"type": "chat.events", "origin": self.id, "events": events, "committed_at": committed_at}
        try:
            await asyncio.wait_for(
                self._layer.group_send(FANOUT_GROUP, message), chat_setting("LAYER_TIMEOUT")
            )
        except Exception as exc:  # Redis away: stored messages stay stored; gaps.py repairs
            self.remote_failures += 1
            LAYER_PUBLISH_ERRORS.inc()
            if self._loop is not None and asyncio.get_running_loop() is self._loop:
                # The others missed these events: once the layer is back, they replay them.
                self.gaps.suspect(committed_at, notify=True)
            self._warn_remote_failure(exc)

    def _warn_remote_failure(self, exc):
        now = time.monotonic()
        if now - self._last_remote_warning > 5:
            self._last_remote_warning = now
            logger.warning("cross-process delivery failed (%s); %d failures so far", exc, self.remote_failures)

    # --- the other processes' events -------------------------------------------------

    async def _listen(self):
        delay = 0.5
        while True:
            try:
                channel = await self._layer.new_channel("hub.")
                await self._layer.group_add(FANOUT_GROUP, channel)
                self._channel, delay = channel, 0.5
                self._subscribed.set()
                logger.info("listening for other processes' events on %s", FANOUT_GROUP)
                while True:
                    self._on_layer_message(await self._layer.receive(channel))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._channel = None
                self._subscribed.clear()
                self.subscription_failed()
                logger.warning("channel layer unavailable (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)

    def subscription_failed(self):
        """Our subscription failed: other processes' events from now on may be lost."""
        LAYER_RECEIVE_ERRORS.inc()
        self.gaps.suspect(time.time())

    async def send_probe(self, nonce):
        await self._layer.group_send(FANOUT_GROUP, {"type": "chat.probe", "origin": self.id, "nonce": nonce})

    async def send_gap_notice(self, since):
        try:
            await asyncio.wait_for(
                self._layer.group_send(FANOUT_GROUP, {"type": "chat.gap", "origin": self.id, "since": since}),
                chat_setting("LAYER_TIMEOUT"),
            )
        except Exception:  # the layer failed again: that failure starts a repair of its own
            LAYER_PUBLISH_ERRORS.inc()

    def _on_layer_message(self, message):
        if not self.gaps.hold(message):
            self.on_layer_message(message)

    def on_layer_message(self, message):
        kind = message.get("type")
        origin = message.get("origin")
        if kind == "chat.events" and origin != self.id:
            self._deliver(message["events"], message.get("committed_at", time.time()), REMOTE_DELIVERY)
        elif kind == "chat.ephemeral" and origin != self.id:
            self._deliver_now(message["events"], None, None)
        elif kind == "chat.probe" and origin == self.id:
            self.gaps.probe_returned(message.get("nonce"))
        elif kind == "chat.gap" and origin != self.id:
            self.gaps.suspect(message["since"])
        elif kind == "chat.ping":
            future = self._pings.pop(message.get("nonce"), None)
            if future is not None and not future.done():
                future.set_result(True)

    async def check_channel_layer(self):
        """A message through the channel layer and back (readiness); raises on failure."""
        timeout = chat_setting("LAYER_TIMEOUT")
        self.bind(asyncio.get_running_loop())
        if not self.is_distributed:
            channel = await self._layer.new_channel("ready.")
            await self._layer.send(channel, {"type": "chat.ping"})
            await asyncio.wait_for(self._layer.receive(channel), timeout)
            return
        try:
            await asyncio.wait_for(self._subscribed.wait(), timeout)
        except asyncio.TimeoutError:
            raise ConnectionError("not subscribed to the channel layer") from None
        nonce = uuid.uuid4().hex
        future = self._pings[nonce] = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(self._layer.send(self._channel, {"type": "chat.ping", "nonce": nonce}), timeout)
            await asyncio.wait_for(future, timeout)
        finally:
            self._pings.pop(nonce, None)


hub = Hub()


class _ReceiverFailures(logging.Handler):
    """channels_redis's pub/sub receiver logs (and retries) when its connection fails
    instead of raising to us: that log record is our signal that events may be lost."""

    def __init__(self, hub):
        super().__init__(logging.ERROR)
        self.hub = hub

    def emit(self, record):
        loop = self.hub._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.hub.subscription_failed)


def _watch_layer_receiver(hub):
    receiver_log = logging.getLogger("channels_redis.pubsub")
    if not any(isinstance(h, _ReceiverFailures) and h.hub is hub for h in receiver_log.handlers):
        receiver_log.addHandler(_ReceiverFailures(hub))


async def lifespan(scope, receive, send):
    """ASGI lifespan: bind the hub at startup, so this process listens for the other
    processes' events before its first socket connects."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            hub.bind(asyncio.get_running_loop())
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
