"""Gap repair: what the channel layer dropped, this process delivers from the database.

Redis pub/sub is at-most-once: an event published while this process's subscription is
down, or whose publish failed, never arrives (channels_redis issue 256), and the shipped
app's room socket never reconnects to catch up. Every message is in the database, so:

- The hub remembers which messages it delivered to its sockets in the last
  KEEP_SECONDS (message id -> wall time), and drops an event it has already delivered.
- A failure that may have lost events *suspects* a gap from a moment on: this process's
  subscription failing (channels_redis logs it; the hub's own listener raising) or its
  publish failing. A failed publish means the others missed our events: once the layer
  works again we tell them (`chat.gap`), and they repair the same window.
- Repair: probe the fan-out group until our own probe comes back (the subscription is
  up again), hold the other processes' live events, read the messages created since the
  suspected moment (minus MARGIN_SECONDS) for this process's users from the database
  (queries.message_events_since), deliver those not yet delivered, in id order, to the
  sockets opened before the message was created, then release the held events (already
  delivered ones are dropped). Frames are rendered by the sockets as for a live event.

The guarantee and its limits are in docs/realtime.md ("Gap repair").
"""

import asyncio
import logging
import time
import uuid
from datetime import datetime, timezone

from channels.db import database_sync_to_async

from ..conf import chat_setting
from ..metrics import GAP_MESSAGES_REPLAYED, GAP_REPAIRS_TRUNCATED, LAYER_RECONNECTS
from ..queries import message_events_since

logger = logging.getLogger(__name__)

MARGIN_SECONDS = 5.0  # look back before the first failure: it is noticed after the fact
KEEP_SECONDS = 30.0  # how long a delivered id is remembered when no gap is pending
MAX_REMEMBERED = 200_000  # delivered ids kept at most (beyond: repair starts later, no duplicates)
PRUNE_EVERY = 1024  # deliveries between two prunings of the remembered ids
MAX_HELD = 10_000  # layer messages held back while a gap is pending (beyond: delivered at once)


class GapRepair:
    def __init__(self, hub):
        self._hub = hub
        self._delivered = {}  # message id -> wall time delivered here, oldest first
        self._deliveries = 0
        self._forgotten_until = 0.0  # ids delivered before this were forgotten early
        self._since = None  # wall time from which events may be missing; None: no gap
        self._notify = False  # tell the other processes once repaired (our publish failed)
        self._task = None
        self._probes = {}
        self._held = None  # the other processes' events held back while a gap is pending

    # --- the hub's hot path (event loop thread) -------------------------------------

    def first_delivery(self, message_id, now):
        """True the first time a message is delivered here; remembers it."""
        if message_id in self._delivered:
            return False
        self._delivered[message_id] = now
        self._deliveries += 1
        if self._deliveries % PRUNE_EVERY == 0:
            self._prune(now)
        return True

    def hold(self, message):
        """Keep the other processes' events back while a gap is pending (they would
        overtake the older messages the replay brings); False when none is."""
        if self._held is None or message.get("type") != "chat.events" or len(self._held) >= MAX_HELD:
            return False
        self._held.append(message)
        return True

    def _prune(self, now):
        keep_from = now - KEEP_SECONDS
        if self._since is not None:
            keep_from = min(keep_from, self._since - MARGIN_SECONDS)
        surplus = len(self._delivered) - MAX_REMEMBERED
        forget = []
        for message_id, delivered_at in self._delivered.items():
            if delivered_at >= keep_from and len(forget) >= surplus:
                break
            forget.append(message_id)
            if delivered_at >= keep_from:  # forgotten for room, not age: never replay before it
                self._forgotten_until = max(self._forgotten_until, delivered_at)
        for message_id in forget:
            del self._delivered[message_id]

    # --- failures (event loop thread) --------------------------------------------------

    def suspect(self, since, notify=False):
        """Events from `since` (wall time) on may be missing; repair once the layer works."""
        if self._since is None or since < self._since:
            self._since = since
        self._notify = self._notify or notify
        if self._held is None:
            self._held = []
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._repair())

    def probe_returned(self, nonce):
        future = self._probes.pop(nonce, None)
        if future is not None and not future.done():
            future.set_result(True)

    # --- repair ------------------------------------------------------------------------

    async def _repair(self):
        delay = 0.1
        while self._since is not None:
            if not await self._probe():
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            LAYER_RECONNECTS.inc()
            since, notify = self._since, self._notify
            self._since, self._notify = None, False
            try:
                await self._replay(since)
            except Exception:
                logger.exception("repairing the channel layer's gap since %s failed", since)
            if notify:
                await self._hub.send_gap_notice(since)

    async def _probe(self):
        """Our own probe through the fan-out group and back: the subscription is up."""
        hub, timeout = self._hub, chat_setting("LAYER_TIMEOUT")
        nonce = uuid.uuid4().hex
        future = self._probes[nonce] = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(hub.send_probe(nonce), timeout)
            await asyncio.wait_for(future, timeout)
            return True
        except Exception:
            return False
        finally:
            self._probes.pop(nonce, None)

    async def _replay(self, since):
        now = time.time()
        start = max(since - MARGIN_SECONDS, now - chat_setting("GAP_REPLAY_SECONDS"), self._forgotten_until)
        if start > since - MARGIN_SECONDS:
            GAP_REPAIRS_TRUNCATED.inc()
            logger.warning("gap since %.0f too old to replay in full; replaying from %.0f", since, start)
        try:
            user_ids = self._hub.local_user_ids()
            if not user_ids:
                return
            limit = chat_setting("GAP_REPLAY_MESSAGES")
            rows, truncated = await database_sync_to_async(message_events_since)(
                datetime.fromtimestamp(start, timezone.utc), user_ids, limit
            )
            if truncated:
                GAP_REPAIRS_TRUNCATED.inc()
                logger.warning("gap repair hit its bound of %d messages; clients refetch the rest", limit)
            replayed = 0
            delivered_at = time.time()
            for event, created_at in rows:
                if self.first_delivery(event["message"]["id"], delivered_at):
                    replayed += self._hub.deliver_replayed(event, created_at.timestamp())
            GAP_MESSAGES_REPLAYED.inc(replayed)
            logger.info("channel layer gap repaired: %d messages since %.3f replayed", replayed, start)
        finally:
            held, self._held = self._held or [], [] if self._since is not None else None
            for message in held:
                self._hub.on_layer_message(message)
