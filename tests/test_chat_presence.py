"""realtime/presence.py: who is online (in-process counts, or Redis sorted sets shared by
processes), last seen, snapshots, typing; only ever to people who share a conversation.

Device sockets here are stand-ins registered in the real hub (what /ws/v2/ sockets do),
so these tests cover presence without the device socket; the socket itself and two live
server processes: tests/test_chat_device_presence.py and tests/e2e/test_presence_live.py.
"""

import asyncio
import json
import time
import uuid

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from habitto_chat import actions, queries, wire
from habitto_chat.errors import ChatError
from habitto_chat.models import LastSeen
from habitto_chat.realtime import presence as presence_module
from habitto_chat.realtime.hub import hub
from habitto_chat.realtime.presence import DevicePresence, Presence, presence
from tests.support.live import free_port

pytestmark = pytest.mark.django_db(transaction=True)


class Device:
    """A device socket's stand-in: registered in the hub, renders device events as a
    /ws/v2/ socket does, and keeps the frames it got."""

    def __init__(self, user):
        self.user_id = user.pk
        self.frames = []
        self.presence = DevicePresence(self)
        hub.bind(asyncio.get_running_loop())
        assert hub.register(self)

    def deliver(self, event, frames):
        self.on_event(event, frames)

    def on_event(self, event, frames):
        if self.presence.hold(event, frames):
            return
        self.push(wire.v2_text(event, frames, self.user_id, "http://chat.example.test"))

    def push(self, text):
        self.frames.append(json.loads(text))

    async def open(self):
        await self.presence.opened()
        return self

    def close(self):
        hub.unregister(self)
        self.presence.closed()

    def take(self, kind):
        taken = [f for f in self.frames if f["type"] == kind]
        self.frames = [f for f in self.frames if f["type"] != kind]
        return taken


async def eventually(check, timeout=3):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def quiet():
    """Let scheduled tasks (closes, announcements) run."""
    await asyncio.sleep(0.2)


async def close(*devices):
    """Close devices and wait for their closes to be stored and announced (before the
    test's database goes)."""
    for device in devices:
        device.close()
    await asyncio.wait_for(presence.settled(), 5)


@pytest.fixture
def people(make_user):
    """Alice and Bob share a conversation; Eve shares none with either."""
    alice, bob, eve = make_user("alice"), make_user("bob"), make_user("eve")
    actions.do_send_message(alice.pk, bob.pk, "hi")
    return alice, bob, eve


@pytest.fixture
def with_redis(settings, redis_url):
    """Presence in Redis (TEST_REDIS_URL), under a key prefix of this test's own."""
    prefix = f"habitto-test:{uuid.uuid4().hex}:presence:"
    settings.HABITTO_CHAT = {**settings.HABITTO_CHAT, "REDIS_URL": redis_url, "PRESENCE_KEY_PREFIX": prefix}
    return prefix


@pytest.fixture
def redis_down(settings):
    """REDIS_URL names a port where nothing listens."""
    settings.HABITTO_CHAT = {
        **settings.HABITTO_CHAT, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "REDIS_TIMEOUT": 0.5,
    }


async def check_online_offline_with_two_devices(people):
    alice, bob, eve = people
    watcher, stranger = await Device(bob).open(), await Device(eve).open()
    phone = await Device(alice).open()
    await eventually(lambda: watcher.frames and watcher.frames[-1]["type"] == "presence")
    assert watcher.take("presence") == [{"type": "presence", "user": alice.pk, "online": True, "last_seen": None}]
    laptop = await Device(alice).open()
    phone.close()
    await quiet()
    assert watcher.take("presence") == []  # the laptop is still up

    before = time.time()
    laptop.close()
    await eventually(lambda: _offline(watcher))
    seen = await LastSeen.objects.aget(user_id=alice.pk)
    assert before - 1 <= seen.seen_at.timestamp() <= time.time()
    assert watcher.take("presence") == [
        {"type": "presence", "user": alice.pk, "online": False, "last_seen": wire.iso(seen.seen_at)}
    ]
    assert all(f["type"] != "presence" for f in stranger.frames)
    await close(watcher, stranger)


async def test_online_until_the_last_device_closes_in_process(people):
    """Without Redis: online with the first device, offline (last seen stored) after the last; strangers learn nothing."""
    await check_online_offline_with_two_devices(people)


async def redis_keys(prefix):
    import redis.asyncio as redis

    client = redis.Redis.from_url(presence_module.chat_setting("REDIS_URL"))
    try:
        return await client.keys(prefix + "*")
    finally:
        await client.aclose()


async def test_online_until_the_last_device_closes_with_redis(people, with_redis):
    """With Redis: the same, through the sorted set; the set is gone once the last device closed."""
    failures = presence.redis_failures
    await check_online_offline_with_two_devices(people)
    assert await redis_keys(with_redis) == []
    assert presence.redis_failures == failures


def _offline(device):
    return any(f["type"] == "presence" and not f["online"] for f in device.frames)


async def test_snapshot_on_open_lists_contacts_with_last_seen(people, make_user):
    """The snapshot on open lists the contacts only: online ones with null last_seen, offline ones with theirs."""
    alice, bob, eve = people
    carol = await sync_to_async(make_user)("carol")
    await sync_to_async(actions.do_send_message)(carol.pk, alice.pk, "hello alice")
    moment = timezone.now()
    await sync_to_async(actions.do_record_last_seen)(carol.pk, moment)
    bob_device = await Device(bob).open()
    eve_device = await Device(eve).open()

    alice_device = await Device(alice).open()
    [snapshot] = alice_device.take("presence.snapshot")
    assert snapshot == {
        "type": "presence.snapshot",
        "users": [
            {"user": carol.pk, "online": False, "last_seen": wire.iso(moment)},  # most recent conversation first
            {"user": bob.pk, "online": True, "last_seen": None},
        ],
    }
    assert eve_device.take("presence.snapshot") == [{"type": "presence.snapshot", "users": []}]
    await close(alice_device, bob_device, eve_device)


async def test_query_leaves_strangers_out(people):
    """presence.query answers for contacts only; strangers and unknown ids are left out silently."""
    alice, bob, eve = people
    device = await Device(alice).open()
    device.take("presence.snapshot")
    await device.presence.query({"type": "presence.query", "users": [eve.pk, bob.pk, 987654321, alice.pk, bob.pk]})
    assert device.take("presence.snapshot") == [
        {"type": "presence.snapshot", "users": [{"user": bob.pk, "online": False, "last_seen": None}]}
    ]
    await device.presence.query({"type": "presence.query", "users": []})
    assert device.take("presence.snapshot") == [{"type": "presence.snapshot", "users": []}]
    for bad in ({"type": "presence.query"}, {"type": "presence.query", "users": list(range(1, 102))},
                {"type": "presence.query", "users": ["1"]}, {"type": "presence.query", "users": [True]}):
        with pytest.raises(ChatError) as refused:
            await device.presence.query(bad)
        assert refused.value.code == "invalid_frame"
    await close(device)


async def test_typing_reaches_the_other_persons_devices_only(people):
    """Typing goes to every device of the other person, not to the typist's own other device nor a stranger."""
    alice, bob, eve = people
    alice_phone, alice_laptop = await Device(alice).open(), await Device(alice).open()
    bob_phone, bob_laptop = await Device(bob).open(), await Device(bob).open()
    stranger = await Device(eve).open()
    await alice_phone.presence.typing({"type": "typing", "to": bob.pk, "state": "start"})
    await alice_phone.presence.typing({"type": "typing", "to": bob.pk, "state": "stop"})
    expected = [
        {"type": "typing", "user": alice.pk, "state": state, "pair": sorted((alice.pk, bob.pk))}
        for state in ("start", "stop")
    ]
    assert bob_phone.take("typing") == expected and bob_laptop.take("typing") == expected
    assert alice_laptop.take("typing") == [] and alice_phone.take("typing") == []
    assert stranger.take("typing") == []
    await close(alice_phone, alice_laptop, bob_phone, bob_laptop, stranger)


async def test_typing_without_a_conversation_is_refused(people):
    """Typing to a stranger, an unknown user or oneself: no_conversation, and nothing reaches anyone."""
    alice, bob, eve = people
    typist, stranger = await Device(alice).open(), await Device(eve).open()
    for to in (eve.pk, 987654321, alice.pk):
        with pytest.raises(ChatError) as refused:
            await typist.presence.typing({"type": "typing", "to": to, "state": "start"})
        assert refused.value.code == "no_conversation"
    for bad in ({"type": "typing", "to": bob.pk}, {"type": "typing", "to": "2", "state": "start"},
                {"type": "typing", "to": bob.pk, "state": "typing"}):
        with pytest.raises(ChatError) as refused:
            await typist.presence.typing(bad)
        assert refused.value.code == "invalid_frame"
    assert stranger.take("typing") == []
    await close(typist, stranger)


async def test_typing_beyond_five_a_second_is_dropped(people):
    """A burst of typing frames: five pass, the rest are dropped silently; later ones pass again."""
    alice, bob, _ = people
    typist, watcher = await Device(alice).open(), await Device(bob).open()
    for _ in range(20):
        await typist.presence.typing({"type": "typing", "to": bob.pk, "state": "start"})
    assert len(watcher.take("typing")) == 5
    await asyncio.sleep(0.25)
    await typist.presence.typing({"type": "typing", "to": bob.pk, "state": "stop"})
    assert [f["state"] for f in watcher.take("typing")] == ["stop"]
    await close(typist, watcher)


async def test_contact_check_is_cached_per_socket(people, monkeypatch):
    """Only the first typing frame to someone checks the conversation on that socket; a refusal is not cached."""
    alice, bob, eve = people
    checks = []
    check = presence_module._has_conversation

    async def counted(user_id, other_id):
        checks.append(other_id)
        return await check(user_id, other_id)

    monkeypatch.setattr(presence_module, "_has_conversation", counted)
    typist = await Device(alice).open()
    for state in ("start", "stop", "start"):
        await typist.presence.typing({"type": "typing", "to": bob.pk, "state": state})
    for _ in range(2):
        with pytest.raises(ChatError):
            await typist.presence.typing({"type": "typing", "to": eve.pk, "state": "start"})
    assert checks == [bob.pk, eve.pk, eve.pk]
    await close(typist)


async def test_presence_event_waits_for_the_snapshot_being_built(people):
    """A presence change while a snapshot is being built reaches the socket after the snapshot."""
    alice, bob, _ = people
    watcher = Device(bob)
    watcher.presence._snapshots = 1  # a snapshot is on its way
    await Device(alice).open()
    assert watcher.frames == []
    watcher.presence._snapshots = 0
    await watcher.presence._send_snapshot([alice.pk])
    assert [f["type"] for f in watcher.frames] == ["presence.snapshot", "presence"]
    await close(watcher)


async def test_two_processes_share_presence_through_redis(people, with_redis):
    """Two trackers on one Redis (two processes): only the first device anywhere announces
    online, only the last anywhere offline; each sees the other's devices."""
    alice, bob, _ = people
    watcher = await Device(bob).open()
    first, second = Presence(), Presence()
    await first.device_opened(alice.pk, "phone")
    await second.device_opened(alice.pk, "laptop")
    assert [f["online"] for f in watcher.take("presence")] == [True]
    assert await second.snapshot([alice.pk]) == [{"user": alice.pk, "online": True, "last_seen": None}]

    first.device_gone(alice.pk, "phone")
    await first.device_closed(alice.pk, "phone")
    assert watcher.take("presence") == []
    assert (await first.snapshot([alice.pk]))[0]["online"] is True  # the laptop, on the other process
    second.device_gone(alice.pk, "laptop")
    await second.device_closed(alice.pk, "laptop")
    assert [f["online"] for f in watcher.take("presence")] == [False]
    assert (await first.snapshot([alice.pk]))[0]["online"] is False
    await close(watcher)


@pytest.fixture
def quick_renewals(settings):
    """Renewals every 0.2 s: connections lapse after 0.6 s without one."""
    settings.HABITTO_CHAT = {**settings.HABITTO_CHAT, "PRESENCE_REFRESH_SECONDS": 0.2}


async def crash(tracker):
    """The process is gone: nobody renews its connections, nobody removes them."""
    tracker._refresher.cancel()
    await asyncio.sleep(0)


@pytest.mark.usefixtures("quick_renewals")
async def test_a_crashed_process_entries_lapse(people, with_redis):
    """A process that dies without closing its devices stops counting once its TTL passes."""
    alice, _, _ = people
    crashed = Presence()
    await crashed.device_opened(alice.pk, "phone")
    await crash(crashed)
    assert crashed.redis_failures == 0
    assert (await Presence().snapshot([alice.pk]))[0]["online"] is True
    await asyncio.sleep(0.8)
    assert (await Presence().snapshot([alice.pk]))[0]["online"] is False
    assert await redis_keys(with_redis + "[0-9]") == []  # the set expired with its last member


@pytest.mark.usefixtures("quick_renewals")
async def test_a_crashed_process_users_are_announced_offline_once(people, with_redis):
    """Alice's only device is on a process that crashes: once it lapsed, one of the live
    processes (two sweep here) stores her last seen, the time of the crashed process's
    last renewal, and Bob hears her go offline exactly once."""
    alice, bob, _ = people
    watcher = await Device(bob).open()  # on `presence`, the process that sweeps
    other = Presence()  # another live process, sweeping too
    await other.device_opened(bob.pk, "bob-laptop")
    crashed = Presence()
    await crashed.device_opened(alice.pk, "phone")
    await eventually(lambda: watcher.take("presence"))
    await asyncio.sleep(0.3)  # the crashed process renews once more: its last sign of life
    renewed = time.time()
    await crash(crashed)

    await eventually(lambda: _offline(watcher), timeout=5)
    await asyncio.sleep(0.5)  # more sweeps, by both processes
    seen = await LastSeen.objects.aget(user_id=alice.pk)
    assert renewed - 0.5 <= seen.seen_at.timestamp() <= renewed
    assert watcher.take("presence") == [
        {"type": "presence", "user": alice.pk, "online": False, "last_seen": wire.iso(seen.seen_at)}
    ]
    assert await other.snapshot([alice.pk]) == [{"user": alice.pk, "online": False, "last_seen": wire.iso(seen.seen_at)}]
    assert crashed.redis_failures == other.redis_failures == 0
    other.device_gone(bob.pk, "bob-laptop")
    await other.device_closed(bob.pk, "bob-laptop")
    await close(watcher)
    assert await redis_keys(with_redis) == []  # nobody left in the online set either


@pytest.mark.usefixtures("quick_renewals")
async def test_a_lapse_with_a_device_left_elsewhere_is_no_offline(people, with_redis):
    """Alice has a device on a process that crashes and one on a live process: the lapse
    announces nothing; closing the live one later announces her offline, once."""
    alice, bob, _ = people
    watcher = await Device(bob).open()
    crashed = Presence()
    await crashed.device_opened(alice.pk, "phone")
    laptop = await Device(alice).open()
    await crash(crashed)
    await asyncio.sleep(1.5)  # the phone lapsed, sweeps ran
    assert [f["online"] for f in watcher.take("presence")] == [True]
    assert (await Presence().snapshot([alice.pk]))[0]["online"] is True
    await close(laptop)
    await asyncio.sleep(1.0)  # sweeps ran again
    assert [f["online"] for f in watcher.take("presence")] == [False]
    await close(watcher)


async def test_renewal_announces_users_whose_entries_were_lost(people, with_redis):
    """After Redis lost a process's entries (restart, outage), the renewal adds them back and announces the user online."""
    alice, bob, _ = people
    watcher = await Device(bob).open()
    device = await Device(alice).open()
    watcher.take("presence")
    import redis.asyncio as redis

    client = redis.Redis.from_url(presence_module.chat_setting("REDIS_URL"))
    await client.delete(with_redis + str(alice.pk))
    await client.aclose()
    assert (await presence.snapshot([alice.pk]))[0]["online"] is True  # this process knows its own device
    await presence._refresh({alice.pk: [device.presence.connection]})
    assert [f["online"] for f in watcher.take("presence")] == [True]
    assert (await Presence().snapshot([alice.pk]))[0]["online"] is True
    await close(device, watcher)


@pytest.mark.usefixtures("redis_down")
async def test_redis_down_presence_falls_back_on_this_process(people):
    """Redis unreachable: opening and closing devices still work, online and offline
    announced from this process's own counts, last seen stored; typing still goes through."""
    alice, bob, _ = people
    failures = presence.redis_failures
    watcher = await Device(bob).open()
    assert watcher.take("presence.snapshot") == [
        {"type": "presence.snapshot", "users": [{"user": alice.pk, "online": False, "last_seen": None}]}
    ]
    device = await Device(alice).open()
    assert [f["online"] for f in watcher.take("presence")] == [True]
    assert device.take("presence.snapshot")[0]["users"] == [{"user": bob.pk, "online": True, "last_seen": None}]
    await device.presence.typing({"type": "typing", "to": bob.pk, "state": "start"})
    assert len(watcher.take("typing")) == 1
    await close(device)
    seen = await LastSeen.objects.aget(user_id=alice.pk)
    assert watcher.take("presence") == [
        {"type": "presence", "user": alice.pk, "online": False, "last_seen": wire.iso(seen.seen_at)}
    ]
    assert presence.redis_failures == failures + 1  # then Redis is left alone for a while: no timeout per socket
    await close(watcher)


def test_contacts_are_the_500_most_recent_conversations(make_user):
    """contact_ids: people sharing a conversation with a message, most recent first, capped;
    an opened but empty conversation (a room socket) makes nobody a contact."""
    alice, bob, carol, eve = (make_user(n) for n in ("alice", "bob", "carol", "eve"))
    actions.do_send_message(alice.pk, bob.pk, "1")
    actions.do_send_message(carol.pk, alice.pk, "2")
    actions.do_open_conversation(alice.pk, eve.pk)  # no message: not a contact
    assert queries.contact_ids(alice.pk) == [carol.pk, bob.pk]
    assert queries.contact_ids(alice.pk, limit=1) == [carol.pk]
    assert queries.contacts_among(bob.pk, [alice.pk, carol.pk, eve.pk, bob.pk]) == {alice.pk}
    assert queries.contacts_among(alice.pk, [eve.pk]) == set()
    assert not queries.has_conversation(eve.pk, alice.pk)


def test_record_last_seen_upserts(make_user):
    """do_record_last_seen keeps one row per user, with the latest time written."""
    alice = make_user("alice")
    first = timezone.now()
    actions.do_record_last_seen(alice.pk, first)
    later = timezone.now()
    actions.do_record_last_seen(alice.pk, later)
    assert list(LastSeen.objects.values_list("user_id", "seen_at")) == [(alice.pk, later)]
    assert queries.last_seen_of([alice.pk, alice.pk + 1]) == {alice.pk: later}
    actions.do_record_last_seen(alice.pk, first)  # an older report (a late sweep) is ignored
    assert queries.last_seen_of([alice.pk]) == {alice.pk: later}
