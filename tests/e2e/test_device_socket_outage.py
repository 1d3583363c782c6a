"""/ws/v2/ through a Redis outage, from SPEC-v2: two server processes, Alice sending
steadily on A, Bob's device on B. Redis (a redis-server of the test's own) is down
for 4 s while Bob's device stays online on one connection, then while it reconnects
again and again: once Redis is back every message has reached him exactly once, in
order per connection (live delivery repaired by habitto_chat/realtime/gaps.py, resumes
replayed from the database)."""

import time
import uuid

import pytest

from tests.support.chat import provision, two_ready_servers, wait_for
from tests.support.device_socket import (
    Device,
    Sender,
    Users,
    V2Socket,
    created_ids,
    v2_database,  # noqa: F401  (the fixture)
    v2_url,
)
from tests.support.live import server_env

# channels_redis logs the lost connection with its traceback when Redis is stopped.
pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.slow,
              pytest.mark.server_tracebacks_expected("redis.exceptions.ConnectionError")]

SIGNING_KEY = "v2-e2e-outage-" + uuid.uuid4().hex
OUTAGE_SECONDS = 4
RATE = 40  # Alice's sends per second


@pytest.fixture
def pair(tmp_path, v2_database, own_redis):
    env = server_env(tmp_path, database_url=v2_database, redis_url=own_redis.url, JWT_SIGNING_KEY=SIGNING_KEY,
                     CHAT_SEND_RATE=100, CHAT_SEND_BURST=100)
    users = Users(provision(env, 4, "v2out" + uuid.uuid4().hex[:4]), SIGNING_KEY)
    with two_ready_servers(env, tmp_path) as (first, second):
        yield first, second, users


def run_outage(pair, own_redis, reconnect_every):
    """Alice sends on A for the whole outage; Bob's device on B reconnects every
    `reconnect_every` seconds (None: stays on one connection). Returns (device, sent ids)."""
    first, second, users = pair
    alice, bob = users.take(2)
    alice_sock = V2Socket(v2_url(first, alice["token"]))
    alice_sock.wait_type("sync.done")
    device = Device(bob)
    sock = device.connect(second)
    sock.wait_type("sync.done")
    sender = Sender(alice_sock, bob["id"], RATE, "alice").start()
    try:
        time.sleep(0.5)
        own_redis.kill()
        down = time.monotonic()
        while time.monotonic() - down < OUTAGE_SECONDS:
            time.sleep(reconnect_every or OUTAGE_SECONDS)
            if reconnect_every:
                sock.close()
                device.absorb(sock)
                sock = device.connect(second)
                sock.wait_type("sync.done")
        own_redis.start()
        time.sleep(1)
    finally:
        sender.stop()
    sent = sender.wait_all_acked()
    wait_for(lambda: set(sent) <= set(device.held) | set(created_ids(sock.frames)), 15, 0.1,
             what="every message at Bob's device once Redis is back")
    time.sleep(1)  # a late duplicate would show now
    sock.close()
    alice_sock.close()
    device.absorb(sock)
    assert set(device.held) == set(sent)
    return device, sent


def test_devices_through_redis_outages_get_every_message_once(pair, own_redis):
    """First outage: Bob's device stays online on one connection (live delivery is
    repaired in order). Second outage: another device of his reconnects every 0.5 s."""
    device, sent = run_outage(pair, own_redis, None)
    (replay, done, live), = device.sessions
    assert created_ids(live) == sent, "live, repaired in order, each once"
    device, _ = run_outage(pair, own_redis, 0.25)
    # Many resumes during the outage (each waits for its sync.done: fewer on a busy machine).
    assert len(device.sessions) >= 5
