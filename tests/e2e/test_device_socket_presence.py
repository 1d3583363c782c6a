"""Typing and presence on /ws/v2/ across two server processes sharing PostgreSQL and
Redis, from SPEC-v2: they reach the people who share a conversation with the user,
across processes and whichever of several devices is up, and never anyone else."""

import json
import time
import uuid

import pytest

from tests.support.chat import provision, ready_with_redis, two_ready_servers, wait_for
from tests.support.device_socket import (
    Users,
    V2Socket,
    own_redis_prefixes,
    v2_database,  # noqa: F401  (the fixture)
    v2_url,
)
from tests.support.live import manage, server_env

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]

SIGNING_KEY = "v2-e2e-presence-" + uuid.uuid4().hex
EPHEMERAL = ("typing", "presence")
NOBODY = 10**9


@pytest.fixture(scope="module")
def pair(tmp_path_factory, v2_database, redis_url):
    state = tmp_path_factory.mktemp("v2-presence")
    env = server_env(state, database_url=v2_database, redis_url=redis_url, JWT_SIGNING_KEY=SIGNING_KEY,
                     **own_redis_prefixes())
    users = Users(provision(env, 12, "v2pres"), SIGNING_KEY)
    with two_ready_servers(env, state) as (first, second):
        yield first, second, users


def opened(server, user):
    sock = V2Socket(v2_url(server, user["token"]))
    sock.wait_type("presence.snapshot")
    return sock


def send(sock, to, content):
    ack = sock.request({"type": "send", "to": to, "content": content, "client_id": uuid.uuid4().hex})
    assert ack["type"] == "ack", ack
    return ack["message_id"]


def snapshot_of(frame):
    assert frame["type"] == "presence.snapshot" and set(frame) == {"type", "users"}, frame
    for entry in frame["users"]:
        assert set(entry) == {"user", "online", "last_seen"}, frame
        assert isinstance(entry["online"], bool)
        assert entry["last_seen"] is None or entry["last_seen"].endswith("Z"), frame
    return {entry["user"]: entry for entry in frame["users"]}


def about(frames, user_ids, kinds=EPHEMERAL):
    """The typing/presence frames (and snapshot entries) in `frames` about any of `user_ids`."""
    found = []
    for frame in frames:
        if frame.get("type") in kinds and frame.get("user") in user_ids:
            found.append(frame)
        if frame.get("type") == "presence.snapshot":
            found += [entry for entry in frame["users"] if entry["user"] in user_ids]
    return found


def test_typing_and_presence_reach_contacts_across_processes_and_never_strangers(pair):
    first, second, users = pair
    alice, bob, mallory, dave = users.take(4)
    # Alice and Bob share a conversation; Mallory shares one with Dave only.
    setup_a, setup_m = opened(first, alice), opened(second, mallory)
    send(setup_a, bob["id"], "hi Bob")
    send(setup_m, dave["id"], "hi Dave")
    setup_a.close()
    setup_m.close()
    time.sleep(0.5)  # their last devices are down (presence settles)

    bob_b = opened(second, bob)
    snapshot = snapshot_of(bob_b.wait_type("presence.snapshot"))
    assert set(snapshot) == {alice["id"]}, "Bob's contacts only"
    assert snapshot[alice["id"]]["online"] is False
    mallory_a, mallory_b = opened(first, mallory), opened(second, mallory)  # a stranger with two devices
    assert about(mallory_a.frames + mallory_b.frames, {alice["id"], bob["id"]}) == []

    # Alice's first device (process A): Bob (process B) learns she is online; her snapshot has Bob online.
    alice_a = opened(first, alice)
    online = bob_b.wait_type("presence", user=alice["id"])
    assert online == {"type": "presence", "user": alice["id"], "online": True, "last_seen": online["last_seen"]}
    alice_snapshot = snapshot_of(alice_a.wait_type("presence.snapshot"))
    assert set(alice_snapshot) == {bob["id"]} and alice_snapshot[bob["id"]]["online"] is True
    # Her second device (process B) changes nothing for Bob.
    mark = len(bob_b.frames)
    alice_b = opened(second, alice)

    # Typing from A reaches Bob's device on B, start then stop, and no one else.
    alice_a.send({"type": "typing", "to": bob["id"], "state": "start"})
    typing = bob_b.wait_type("typing", start=mark)
    assert typing == {"type": "typing", "user": alice["id"], "state": "start",
                      "pair": sorted((alice["id"], bob["id"]))}, typing
    alice_a.send({"type": "typing", "to": bob["id"], "state": "stop"})
    assert bob_b.wait_type("typing", start=mark, state="stop")["user"] == alice["id"]
    # Bob types back from B: Alice's devices on both processes hear it.
    bob_b.send({"type": "typing", "to": alice["id"], "state": "start"})
    for sock in (alice_a, alice_b):
        assert sock.wait_type("typing", user=bob["id"])["state"] == "start"

    # Typing at a stranger (or at nobody) is refused alike, and reaches no one.
    for to in (mallory["id"], NOBODY):
        answer = alice_a.request({"type": "typing", "to": to, "state": "start"}, "typing")
        assert answer["type"] == "error" and answer["code"] == "no_conversation", answer
    answer = mallory_a.request({"type": "typing", "to": alice["id"], "state": "start"}, "typing")
    assert answer["type"] == "error" and answer["code"] == "no_conversation", answer

    # presence.query: about contacts only; nothing at all about strangers.
    answer = mallory_b.request({"type": "presence.query", "users": [alice["id"], bob["id"], dave["id"], NOBODY]}, "presence.snapshot")
    assert answer["type"] == "presence.snapshot" and set(snapshot_of(answer)) == {dave["id"]}, answer
    answer = bob_b.request({"type": "presence.query", "users": [alice["id"], mallory["id"]]}, "presence.snapshot")
    entries = snapshot_of(answer)
    assert set(entries) == {alice["id"]} and entries[alice["id"]]["online"] is True, answer

    # Alice's devices go down one by one: offline (with last_seen) only after the last.
    alice_a.close()
    time.sleep(0.5)
    flips = [f for f in bob_b.frames[mark:] if f.get("type") == "presence" and f["user"] == alice["id"]]
    assert flips == [], "a device of hers is still up"
    alice_b.abort()  # the last one just drops
    offline = bob_b.wait_type("presence", start=mark, user=alice["id"], online=False, timeout=10)
    assert offline["online"] is False and offline["last_seen"].endswith("Z"), offline

    # Last seen is persisted: a new connection of Bob's sees it in his snapshot.
    with V2Socket(v2_url(first, bob["token"])) as again:
        entry = snapshot_of(again.wait_type("presence.snapshot"))[alice["id"]]
        assert entry == {"user": alice["id"], "online": False, "last_seen": offline["last_seen"]}, entry

    time.sleep(0.3)
    strangers_heard = about(mallory_a.frames + mallory_b.frames, {alice["id"], bob["id"]})
    assert strangers_heard == [], f"a stranger heard about Alice or Bob: {strangers_heard}"
    for sock in (bob_b, mallory_a, mallory_b):
        sock.close()


def test_a_contact_learns_of_each_first_connection_on_either_process(pair):
    """Presence flips both ways on both processes: Bob on A sees Carol come and go on B,
    then on A; he gets exactly one online and one offline frame per round."""
    first, second, users = pair
    bob, carol = users.take(2)
    with V2Socket(v2_url(first, carol["token"])) as sock:
        sock.wait_type("sync.done")
        send(sock, bob["id"], "hi")
    bob_a = opened(first, bob)
    time.sleep(0.5)
    try:
        for server in (second, first):
            mark = len(bob_a.frames)
            carol_sock = opened(server, carol)
            bob_a.wait_type("presence", start=mark, user=carol["id"], online=True)
            carol_sock.close()
            bob_a.wait_type("presence", start=mark, user=carol["id"], online=False, timeout=10)
            time.sleep(0.3)
            flips = [(f["online"]) for f in bob_a.frames[mark:] if f.get("type") == "presence"]
            assert flips == [True, False], flips
    finally:
        bob_a.close()


def test_notifications_reach_every_device_of_their_recipient_only(pair):
    """A notification published by another process (the management command, through
    Redis) reaches both of Bob's devices, one on each process, as notification.created
    with `pair` null; his contact hears nothing of it."""
    first, second, users = pair
    bob, carol = users.take(2)
    with V2Socket(v2_url(first, carol["token"])) as sock:
        sock.wait_type("sync.done")
        send(sock, bob["id"], "hi")
    devices, contact = [opened(first, bob), opened(second, bob)], opened(second, carol)
    try:
        printed = manage(first.env, "publish_notification", "--user", str(bob["id"]), "--kind", "general",
                         "--message", "someone likes your flat", "--data", '{"property_id": 12}')
        stored = json.loads(printed)
        for sock in devices:
            frame = sock.wait_type("notification.created", timeout=10)
            assert frame == {"type": "notification.created", "notification": stored, "pair": None}, frame
        time.sleep(0.3)
        assert not [f for f in contact.frames if f.get("type") == "notification.created"]
    finally:
        for sock in [*devices, contact]:
            sock.close()


def test_a_restart_of_the_other_process_shows_as_offline_then_online(pair):
    """Bob's only device is on process B; B stops (its sockets close with 1012): Alice,
    on A, sees Bob go offline with his last seen; once B is back and Bob reconnects,
    online again."""
    first, second, users = pair
    alice, bob = users.take(2)
    alice_sock = opened(first, alice)
    send(alice_sock, bob["id"], "hi")
    bob_sock = opened(second, bob)
    alice_sock.wait_type("presence", user=bob["id"], online=True)
    mark = len(alice_sock.frames)
    second.stop()
    try:
        bob_sock.wait_closed(15)
        offline = alice_sock.wait_type("presence", start=mark, user=bob["id"], timeout=5)
        assert offline["online"] is False and offline["last_seen"].endswith("Z"), offline
    finally:
        second.start()
        wait_for(lambda: ready_with_redis(second), 15, what="readiness with Redis after the restart")
    bob_sock = opened(second, bob)
    alice_sock.wait_type("presence", start=mark, user=bob["id"], online=True)
    flips = [f["online"] for f in alice_sock.frames[mark:] if f.get("type") == "presence"]
    assert flips == [False, True], flips
    for sock in (alice_sock, bob_sock):
        sock.close()
