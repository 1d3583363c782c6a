"""Presence and typing on /ws/v2/ across two live server processes sharing PostgreSQL and
Redis (a deployment's layout), and with Redis gone: Alice on process A, Bob on process B.
Bob sees Alice come online, type and go offline only once her last device on either
process closed; Eve, who shares no conversation, learns nothing; with Redis down the chat
and presence on one process go on."""

import uuid

import pytest

from habitto_client import ChatSocket
from tests.support.chat import drain, login, marker, provision, recv_until, two_servers
from tests.support.live import http_json

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


def isolated_env():
    """Channel and presence prefixes of this test's own: other servers on the same Redis
    (other tests, other checkouts) neither see our events nor we theirs."""
    run = uuid.uuid4().hex[:12]
    return {"REDIS_CHANNEL_PREFIX": f"presence-test-{run}", "REDIS_PRESENCE_PREFIX": f"presence-test-{run}:"}


def device(server, token):
    """A device socket past its opening frames: (socket, its presence.snapshot users)."""
    sock = ChatSocket.open(f"{server.ws_url()}/ws/v2/?token={token}")
    frames = [sock.recv_json(10) for _ in range(3)]
    assert [f["type"] for f in frames] == ["hello", "sync.done", "presence.snapshot"], frames
    return sock, frames[2]["users"]


def presence_of(user):
    return lambda frame: frame["type"] == "presence" and frame["user"] == user["id"]


def ephemeral(frames):
    return [f for f in frames if f["type"] in ("presence", "typing")]


@pytest.mark.redis
def test_presence_and_typing_cross_processes_and_never_reach_a_stranger(tmp_path, postgres_database, redis_url):
    """Bob on B sees Alice on A online and typing; offline (last seen) only after her devices on A and B
    closed, and when process A stops."""
    with two_servers(tmp_path, postgres_database, redis_url, "presence", **isolated_env()) as (env, a_proc, b_proc, users):
        alice, bob = users
        [eve] = provision(env, 1, "stranger")
        ta, tb, te = login(a_proc.http_url(), alice), login(b_proc.http_url(), bob), login(b_proc.http_url(), eve)
        status, body = http_json("POST", f"{a_proc.http_url()}/api/messages/",
                                 {"receiver": bob["id"], "content": marker("hello")}, token=ta)
        assert status == 201, body
        sockets = []
        try:
            bob_b, users_seen = device(b_proc, tb)
            eve_b, _ = device(b_proc, te)
            sockets += [bob_b, eve_b]
            assert users_seen == [{"user": alice["id"], "online": False, "last_seen": None}]

            alice_a, users_seen = device(a_proc, ta)
            sockets.append(alice_a)
            assert users_seen == [{"user": bob["id"], "online": True, "last_seen": None}]  # bob is on B
            online = recv_until(bob_b, presence_of(alice), 5)
            assert online == {"type": "presence", "user": alice["id"], "online": True, "last_seen": None}

            alice_a.send_json({"type": "typing", "to": bob["id"], "state": "start"})
            typing = recv_until(bob_b, lambda f: f["type"] == "typing", 5)
            assert typing == {"type": "typing", "user": alice["id"], "state": "start",
                              "pair": sorted((alice["id"], bob["id"]))}
            alice_a.send_json({"type": "typing", "to": eve["id"], "state": "start", "ref": "x"})
            error = recv_until(alice_a, lambda f: f["type"] == "error", 5)
            assert (error["code"], error["ref"]) == ("no_conversation", "x")

            # A second device of Alice's on B; then the one on A closes: she is still online.
            alice_b, _ = device(b_proc, ta)
            sockets.append(alice_b)
            alice_a.close()
            assert ephemeral(drain(bob_b, 1.0)) == []

            alice_b.close()
            offline = recv_until(bob_b, presence_of(alice), 5)
            assert offline["online"] is False and offline["last_seen"].endswith("Z")

            # Bob's new device on A sees the last seen stored on B.
            bob_a, users_seen = device(a_proc, tb)
            sockets.append(bob_a)
            assert users_seen == [{"user": alice["id"], "online": False, "last_seen": offline["last_seen"]}]

            # Process A stops (a deploy): Alice's device there closes, Bob on B hears her go offline.
            alice_a, _ = device(a_proc, ta)
            sockets.append(alice_a)
            assert recv_until(bob_b, presence_of(alice), 5)["online"] is True
            a_proc.stop()
            assert recv_until(bob_b, presence_of(alice), 10)["online"] is False
            assert ephemeral(drain(eve_b, 0.5)) == []  # the stranger learnt nothing at all
        finally:
            for sock in sockets:
                sock.close()


@pytest.mark.server_tracebacks_expected("redis.exceptions.ConnectionError")
def test_with_redis_down_the_chat_and_local_presence_go_on(tmp_path, postgres_database, own_redis):
    """Redis killed: device sockets still open (hello, sync.done, snapshot), sends are acknowledged and
    delivered, typing and presence work between devices of one process."""
    with two_servers(tmp_path, postgres_database, own_redis.url, "nored", **isolated_env()) as (env, a_proc, _, users):
        alice, bob = users
        ta, tb = login(a_proc.http_url(), alice), login(a_proc.http_url(), bob)
        status, body = http_json("POST", f"{a_proc.http_url()}/api/messages/",
                                 {"receiver": bob["id"], "content": marker("hello")}, token=ta)
        assert status == 201, body
        own_redis.kill()
        sockets = []
        try:
            bob_a, _ = device(a_proc, tb)
            alice_a, users_seen = device(a_proc, ta)
            sockets += [bob_a, alice_a]
            assert users_seen == [{"user": bob["id"], "online": True, "last_seen": None}]  # known to this process
            assert recv_until(bob_a, presence_of(alice), 10)["online"] is True

            text = marker("without redis")
            alice_a.send_json({"type": "send", "to": bob["id"], "content": text, "client_id": "c-1"})
            ack = recv_until(alice_a, lambda f: f["type"] == "ack", 10)
            assert ack["client_id"] == "c-1" and ack["duplicate"] is False
            created = recv_until(bob_a, lambda f: f["type"] == "message.created", 10)
            assert created["message"]["content"] == text and created["message"]["id"] == ack["message_id"]

            alice_a.send_json({"type": "typing", "to": bob["id"], "state": "start"})
            assert recv_until(bob_a, lambda f: f["type"] == "typing", 10)["user"] == alice["id"]
            alice_a.close()
            offline = recv_until(bob_a, presence_of(alice), 10)
            assert offline["online"] is False and offline["last_seen"].endswith("Z")
        finally:
            for sock in sockets:
                sock.close()
