"""Who is online, and who is typing: the ephemeral side of the device socket (/ws/v2/).

Online = at least one device socket of the user open on any process.
- With REDIS_URL: a sorted set per user (PRESENCE_KEY_PREFIX + id) of the device
  connections open anywhere, each scored by when it lapses. Each process renews its own
  connections every refresh (PRESENCE_REFRESH_SECONDS) for TTL_REFRESHES of them, so a
  crashed process's connections lapse by themselves. The change and the count are
  atomic: the connection that makes a user's set go from empty to one is their first
  device (`presence` online to their contacts), the removal that empties it their last
  (last seen stored, then `presence` offline with it); on two processes at once only one
  of them announces.
- Lapses are announced too: a second sorted set (PRESENCE_KEY_PREFIX + "online") holds
  every user with a connection in Redis, scored by the latest lapse time of any of them,
  changed in the same transaction as the user's own set. Each process with devices
  sweeps it every refresh: a user whose score is past is claimed by one process only
  (a script that takes the user out), which stores last seen (the last renewal: the
  score minus the TTL) and announces them offline as a last close does.
- Without Redis (one process): the same from this process's own counts.
- Redis failing never breaks a socket or the chat: every call has a timeout
  (REDIS_TIMEOUT), failures are logged, Redis is left alone for REDIS_RETRY_SECONDS
  after one, and presence falls back on what this process knows, as without Redis (its
  own devices: first and last device here are announced, snapshots show them online);
  the renewal re-adds this process's connections once Redis is back, announcing those
  users whose set had emptied.

Typing and presence go only to people who share a conversation with the user
(queries.contact_ids, contacts_among) and travel through the hub like the actions'
events (hub.publish_ephemeral: this process's sockets, the channel layer to the others),
but nothing is stored except last seen, and nothing is replayed.
"""

import asyncio
import logging
import math
import time
import uuid
from collections import defaultdict
from datetime import datetime, timezone

from channels.db import database_sync_to_async

from .. import sends, wire
from ..actions import do_record_last_seen
from ..conf import chat_setting
from ..errors import NotFound
from ..metrics import PRESENCE_REDIS_ERRORS, RATE_LIMITED
from ..queries import contact_ids, contacts_among, has_conversation, last_seen_of
from ..ratelimit import TokenBucket
from .hub import hub

logger = logging.getLogger(__name__)

TTL_REFRESHES = 3  # a connection lapses once its process missed this many renewals (crashed, cut off)
REDIS_RETRY_SECONDS = 5  # after a failure, presence skips Redis this long (no timeout per socket)
REFRESH_CHUNK = 500  # users per renewal transaction (keeps each MULTI short for Redis)
SWEEP_CHUNK = 500  # lapsed users claimed per round trip of a sweep
ONLINE_KEY = "online"  # after PRESENCE_KEY_PREFIX: users with a connection, by latest lapse (user keys are ids)
TYPING_RATE = 5.0  # typing frames per second a socket may send (as many at once); more are dropped
RATE_LIMITED_TYPING = RATE_LIMITED.labels("frame", "typing")

_contact_ids = database_sync_to_async(contact_ids)
_contacts_among = database_sync_to_async(contacts_among)
_has_conversation = database_sync_to_async(has_conversation)
_last_seen_of = database_sync_to_async(last_seen_of)
_record_last_seen = database_sync_to_async(do_record_last_seen)

# KEYS: the online set, the user's set; ARGV: user id, connection, now. The close's
# removal: the user leaves the online set with their last connection, or takes the
# latest lapse of those left. Returns the connections left.
REMOVE_SCRIPT = """
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])
local latest = redis.call('ZREVRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if latest[1] then
  redis.call('ZADD', KEYS[1], latest[2], ARGV[1])
else
  redis.call('ZREM', KEYS[1], ARGV[1])
end
return redis.call('ZCARD', KEYS[2])
"""

# Same keys; ARGV: user id, now. A lapsed user claimed by one sweeper. Returns their
# score (latest lapse) when their connections all lapsed and this caller is to announce
# it; nil when they were renewed or claimed meanwhile, or have connections left (their
# score follows those).
SWEEP_SCRIPT = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then
  return nil
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[2])
local latest = redis.call('ZREVRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if latest[1] then
  redis.call('ZADD', KEYS[1], latest[2], ARGV[1])
  return nil
end
redis.call('ZREM', KEYS[1], ARGV[1])
return score
"""


def refresh_seconds():
    return chat_setting("PRESENCE_REFRESH_SECONDS")


def ttl_seconds():
    return refresh_seconds() * TTL_REFRESHES


class Presence:
    """One per process: this process's device connections, and who is online anywhere."""

    def __init__(self):
        self._loop = None
        self._redis = None
        self._devices = defaultdict(set)  # user id -> connection ids open in this process
        self._refresher = None
        self._last_warning = 0.0
        self._skip_redis_until = 0.0
        self._closing = set()  # the closes and sweeps still being stored and announced
        self._sweeping = None
        self._remove_script = self._sweep_script = None
        self.redis_failures = 0

    def _bind(self):
        """Follow the server's event loop (a test runs each in a loop of its own: the
        connections and the Redis client of an old loop are gone with it)."""
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        self._loop = loop
        self._devices = defaultdict(set)
        self._closing = set()
        self._refresher = None
        self._sweeping = None
        self._skip_redis_until = 0.0
        url = chat_setting("REDIS_URL")
        self._redis = _redis_client(url) if url else None
        if self._redis is not None:
            self._remove_script = self._redis.register_script(REMOVE_SCRIPT)
            self._sweep_script = self._redis.register_script(SWEEP_SCRIPT)

    # --- a device comes and goes ------------------------------------------------------

    async def device_opened(self, user_id, connection):
        """A device socket of the user is up: announced if it is their first anywhere."""
        self._bind()
        first_here = not self._devices[user_id]
        self._devices[user_id].add(connection)
        if self._redis is None:
            first = first_here
        else:
            if self._refresher is None:
                self._refresher = self._loop.create_task(self._refresh_forever())
            count = await self._redis_call(self._add, user_id, connection)
            # Redis away: unknown elsewhere; a first device here is certainly news.
            first = first_here if count is None else count == 1
        if first:
            await self._announce(user_id, True, None)

    def device_gone(self, user_id, connection):
        """A device socket closed (synchronous: it stops being renewed at once)."""
        connections = self._devices.get(user_id)
        if connections is None:
            return
        connections.discard(connection)
        if not connections:
            del self._devices[user_id]
            if not self._devices and self._refresher is not None:
                self._refresher.cancel()
                self._refresher = None

    def closing(self, task):
        """Track a device's close (or a sweep) until it is done (settled() waits for them)."""
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def settled(self):
        """Once every close so far is stored and announced (tests, before their database goes)."""
        while self._closing:
            await asyncio.wait(set(self._closing))

    async def device_closed(self, user_id, connection):
        """After device_gone: stored and announced if it was their last device anywhere."""
        last_here = user_id not in self._devices
        last = last_here
        if self._redis is not None:
            count = await self._redis_call(self._remove, user_id, connection)
            # Redis away: as without Redis, this process's count decides (the channel layer
            # is away too, so only this process's sockets hear it; the renewal corrects
            # it once Redis is back).
            if count is not None:
                last = count == 0 and last_here
        if last:
            await self._went_offline(user_id, _now())

    async def _went_offline(self, user_id, when):
        await self._store_last_seen(user_id, when)
        await self._announce(user_id, False, when)

    async def _store_last_seen(self, user_id, when):
        try:
            await _record_last_seen(user_id, when)
        except Exception:  # a database failure must not break the close; logged
            logger.exception("storing last seen of user %s failed", user_id)

    async def _announce(self, user_id, online, last_seen):
        try:
            contacts = await _contact_ids(user_id)
        except Exception:
            logger.exception("loading the contacts of user %s failed; presence not announced", user_id)
            return
        if contacts:
            hub.publish_ephemeral([wire.presence_event(user_id, contacts, online, last_seen)])

    # --- who is online ----------------------------------------------------------------

    async def snapshot(self, user_ids):
        """presence_item dicts of these users, in this order (last_seen null while online)."""
        self._bind()
        online = await self._online_among(user_ids)
        offline = [user_id for user_id in user_ids if user_id not in online]
        seen = await _last_seen_of(offline) if offline else {}
        return [
            wire.presence_item(user_id, user_id in online, None if user_id in online else seen.get(user_id))
            for user_id in user_ids
        ]

    async def _online_among(self, user_ids):
        here = {user_id for user_id in user_ids if user_id in self._devices}
        if self._redis is None or not user_ids:
            return here
        anywhere = await self._redis_call(self._online, user_ids)
        return here if anywhere is None else anywhere | here

    # --- Redis ------------------------------------------------------------------------

    def _key(self, user_id):
        return chat_setting("PRESENCE_KEY_PREFIX") + str(user_id)

    def _online_key(self):
        return chat_setting("PRESENCE_KEY_PREFIX") + ONLINE_KEY

    async def _redis_call(self, operation, *args):
        """The operation's result, or None when Redis failed or timed out (logged), or
        failed less than REDIS_RETRY_SECONDS ago (then it is not asked: a socket opening
        meanwhile does not wait for another timeout)."""
        if time.monotonic() < self._skip_redis_until:
            return None
        try:
            return await asyncio.wait_for(operation(*args), chat_setting("REDIS_TIMEOUT"))
        except Exception as exc:
            self.redis_failures += 1
            PRESENCE_REDIS_ERRORS.inc()
            now = time.monotonic()
            self._skip_redis_until = now + REDIS_RETRY_SECONDS
            if now - self._last_warning > 5:
                self._last_warning = now
                logger.warning(
                    "presence: Redis failed (%s); showing what this process knows (%d failures so far)",
                    f"{type(exc).__name__}: {exc}".rstrip(": "),
                    self.redis_failures,
                )
            return None

    async def _add(self, user_id, connection):
        now, key, ttl = time.time(), self._key(user_id), ttl_seconds()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(key, "-inf", now)
            pipe.zadd(key, {connection: now + ttl})
            pipe.zcard(key)
            pipe.pexpire(key, math.ceil(ttl * 1000))
            pipe.zadd(self._online_key(), {user_id: now + ttl}, gt=True)
            return (await pipe.execute())[2]

    async def _remove(self, user_id, connection):
        return await self._remove_script(keys=[self._online_key(), self._key(user_id)],
                                         args=[user_id, connection, time.time()])

    async def _online(self, user_ids):
        now = time.time()
        async with self._redis.pipeline(transaction=False) as pipe:
            for user_id in user_ids:
                pipe.zcount(self._key(user_id), f"({now}", "+inf")
            counts = await pipe.execute()
        return {user_id for user_id, count in zip(user_ids, counts) if count}

    async def _renew(self, devices):
        """Renew these {user id: connections}; the users whose set had emptied (lapsed,
        or lost while Redis was away): they are online again."""
        now, ttl, online_key = time.time(), ttl_seconds(), self._online_key()
        async with self._redis.pipeline(transaction=True) as pipe:
            for user_id, connections in devices.items():
                key = self._key(user_id)
                pipe.zcount(key, f"({now}", "+inf")
                pipe.zadd(key, dict.fromkeys(connections, now + ttl))
                pipe.pexpire(key, math.ceil(ttl * 1000))
                pipe.zadd(online_key, {user_id: now + ttl}, gt=True)
            results = await pipe.execute()
        return [user_id for user_id, count in zip(devices, results[::4]) if count == 0]

    async def _forget(self, devices):
        async with self._redis.pipeline(transaction=False) as pipe:
            for user_id, connections in devices.items():
                pipe.zrem(self._key(user_id), *connections)
            await pipe.execute()

    async def _claim_lapsed(self):
        """Lapsed users this process is to announce offline: {user id: latest lapse time}."""
        now, online_key = time.time(), self._online_key()
        users = await self._redis.zrangebyscore(online_key, "-inf", now, start=0, num=SWEEP_CHUNK)
        if not users:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for user in users:
                await self._sweep_script(keys=[online_key, self._key(int(user))], args=[int(user), now], client=pipe)
            scores = await pipe.execute()
        return {int(user): float(score) for user, score in zip(users, scores) if score is not None}

    async def _sweep(self):
        """Announce offline the users whose connections all lapsed (their process died or
        lost Redis), as their last close would have; last seen is their last renewal."""
        while True:
            lapsed = await self._redis_call(self._claim_lapsed)
            if not lapsed:
                return
            logger.info("presence: %d users lapsed (their process stopped renewing): announced offline", len(lapsed))
            for user_id, lapse in lapsed.items():
                # A device here: this process's renewals failed, the next one adds the
                # user back; they never went offline.
                if user_id not in self._devices:
                    await self._went_offline(user_id, datetime.fromtimestamp(lapse - ttl_seconds(), timezone.utc))

    async def _refresh_forever(self):
        while True:
            await asyncio.sleep(refresh_seconds())
            users = list(self._devices)
            for start in range(0, len(users), REFRESH_CHUNK):
                chunk = users[start : start + REFRESH_CHUNK]
                await self._refresh({u: list(self._devices[u]) for u in chunk if u in self._devices})
            # A task of its own: many lapsed users (a big process died) do not hold up the
            # renewals; not cancelled with the renewals, so a claimed user is announced.
            if self._sweeping is None or self._sweeping.done():
                self._sweeping = self._loop.create_task(self._sweep())
                self.closing(self._sweeping)

    async def _refresh(self, devices):
        if not devices:
            return
        back_online = await self._redis_call(self._renew, devices)
        if back_online is None:
            return
        # A device that closed while the renewal was on its way was added back: remove it.
        closed = {}
        for user_id, connections in devices.items():
            gone = [c for c in connections if c not in self._devices.get(user_id, ())]
            if gone:
                closed[user_id] = gone
        if closed:
            await self._redis_call(self._forget, closed)
        for user_id in back_online:
            if user_id in self._devices:
                await self._announce(user_id, True, None)


def _redis_client(url):
    import redis.asyncio as redis

    timeout = chat_setting("REDIS_TIMEOUT")
    return redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)


def _now():
    return datetime.now(timezone.utc)


presence = Presence()


class DevicePresence:
    """One device socket's presence and typing. `socket` is the device consumer: its
    user_id, push(text) and on_event(event, frames) are used.

    - opened()/closed(): the device counts for its user's presence until closed; closed()
      is synchronous (for the socket's release) and finishes in a task after opened().
    - Presence events wait while a snapshot for this socket is being built (hold), so a
      change that happens meanwhile reaches the client after the snapshot, not before it.
    - typing(): the contact check is cached per socket (conversations are not deleted),
      at most TYPING_RATE frames a second are passed on, the rest dropped silently."""

    def __init__(self, socket):
        self.socket = socket
        self.connection = uuid.uuid4().hex
        self._opening = None
        self._closed = False
        self._contacts = set()  # people this socket may send typing to (checked)
        self._typing_budget = TokenBucket(TYPING_RATE, TYPING_RATE)
        self._snapshots = 0  # snapshots being built for this socket
        self._held = []

    async def opened(self):
        """Count this device (announcing its user if first), then send the contacts'
        presence.snapshot. Presence is not worth a socket: failures are logged only."""
        if self._closed or self._opening is not None:
            return
        self._opening = asyncio.ensure_future(presence.device_opened(self.socket.user_id, self.connection))
        try:
            # A cancelled socket task leaves the opening to finish: closed() waits for it.
            await asyncio.shield(self._opening)
            if not self._closed:
                await self._send_snapshot(await _contact_ids(self.socket.user_id))
        except Exception:
            logger.exception("presence of user %s on open failed", self.socket.user_id)

    def closed(self):
        """The socket is released (any way out); safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        if self._opening is not None:
            presence.device_gone(self.socket.user_id, self.connection)
            presence.closing(asyncio.get_running_loop().create_task(self._finish_close()))

    async def _finish_close(self):
        try:
            await self._opening
        except Exception:  # logged by the socket that awaited it; the close still counts
            pass
        await presence.device_closed(self.socket.user_id, self.connection)

    async def query(self, payload):
        """presence.query: a snapshot of the asked users who share a conversation with the
        caller, the others silently left out (no oracle)."""
        asked = sends.device_presence_query(payload)
        known = await _contacts_among(self.socket.user_id, asked) if asked else set()
        await self._send_snapshot([user_id for user_id in asked if user_id in known])

    async def _send_snapshot(self, user_ids):
        self._snapshots += 1
        try:
            items = await presence.snapshot(user_ids)
            self.socket.push(wire.dumps(wire.presence_snapshot_frame(items)))
        finally:
            self._snapshots -= 1
            if not self._snapshots:
                held, self._held = self._held, []
                for event, frames in held:
                    self.socket.on_event(event, frames)

    def hold(self, event, frames):
        """True when a presence event must wait for the snapshot being built."""
        if self._snapshots and event["type"] == "presence":
            self._held.append((event, frames))
            return True
        return False

    async def typing(self, payload):
        """typing start/stop to someone the caller shares a conversation with; NotFound
        (no_conversation) otherwise, unknown users included."""
        to, state = sends.device_typing(payload)
        if not self._typing_budget.take():
            RATE_LIMITED_TYPING.inc()
            return
        if to not in self._contacts:
            if not await _has_conversation(self.socket.user_id, to):
                raise NotFound("You have no conversation with this user.", code="no_conversation")
            self._contacts.add(to)
        hub.publish_ephemeral([wire.typing_event(self.socket.user_id, to, state)])
