"""Redis stopped under traffic, then started again, beneath two server processes: sends
are still stored and echoed (local delivery), readiness reports Redis down, live
cross-process delivery resumes by itself, and nothing acknowledged is lost."""

import time

import pytest

from habitto_client import ChatSocket, Timeout, room_url
from tests.support.chat import login, marker, provision, readiness, recv_until, thread_ids, two_servers, wait_for
from tests.support.live import LiveServer, free_port, manage, server_env

# channels_redis logs the lost connection with its traceback when Redis is stopped.
pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.slow,
              pytest.mark.server_tracebacks_expected("redis.exceptions.ConnectionError")]


class Conversation:
    """Alice's room socket on one process, Bob's on the other; every echo is recorded."""

    def __init__(self, a, b, sock_a, sock_b):
        self.ids = {a["id"]: a, b["id"]: b}
        self.sock = {a["id"]: sock_a, b["id"]: sock_b}
        self.seen = {a["id"]: set(), b["id"]: set()}  # contents each side's socket received
        self.acked = {}  # message id -> content, for every echo the sender got

    def collect(self, user_id, seconds, until=None):
        """Read what arrives on this user's socket for up to `seconds` (or until `until` arrives)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0 and (until is None or until not in self.seen[user_id]):
            try:
                frame = self.sock[user_id].recv_json(left)
            except Timeout:
                return
            assert "error" not in frame, frame
            self.seen[user_id].add(frame["content"])

    def send(self, sender_id, label, ack_timeout=5):
        """Send one message and wait for its echo (the acknowledgement); returns its text."""
        receiver_id = next(i for i in self.ids if i != sender_id)
        text = marker(label)
        self.sock[sender_id].send_json({"sender": sender_id, "receiver": receiver_id, "content": text})
        echo = recv_until(self.sock[sender_id], lambda f: f.get("content") == text or "error" in f, ack_timeout)
        assert "error" not in echo, echo
        assert (echo["sender"], echo["receiver"]) == (sender_id, receiver_id)
        self.acked[echo["id"]] = text
        self.seen[sender_id].add(text)
        return text

    def crosses(self, sender_id, label, within=1.0):
        """Send, then True if the other process's socket receives it within `within` s."""
        receiver_id = next(i for i in self.ids if i != sender_id)
        text = self.send(sender_id, label)
        self.collect(receiver_id, within, until=text)
        return text in self.seen[receiver_id]


def test_redis_outage_loses_nothing_acknowledged_and_delivery_resumes(tmp_path, own_redis, postgres_database):
    """Redis killed under traffic: echoes go on, /readyz 503, delivery resumes after restart, nothing acked lost."""
    with two_servers(tmp_path, postgres_database, own_redis.url, "outage") as (env, first, second, (a, b)):
        ta, tb = login(first.http_url(), a), login(second.http_url(), b)
        sock_a = ChatSocket.open(room_url(first.ws_url(), a["id"], b["id"], ta))
        sock_b = ChatSocket.open(room_url(second.ws_url(), a["id"], b["id"], tb))
        chat = Conversation(a, b, sock_a, sock_b)
        try:
            # Healthy: every message crosses between the processes.
            for n in range(3):
                assert chat.crosses(a["id"], f"healthy a{n}", within=3)
                assert chat.crosses(b["id"], f"healthy b{n}", within=3)

            # Redis dies under traffic; every send is still echoed (stored, delivered locally).
            for n in range(5):
                chat.send(a["id"], f"before kill a{n}")
                chat.send(b["id"], f"before kill b{n}")
            own_redis.kill()
            killed = time.monotonic()
            reported = {}
            n = 0
            while time.monotonic() - killed < 8 or len(reported) < 2:
                assert time.monotonic() - killed < 20, f"readiness never reported Redis down: {reported}"
                chat.send(a["id"], f"outage a{n}")
                chat.send(b["id"], f"outage b{n}")
                chat.collect(a["id"], 0.05)
                chat.collect(b["id"], 0.05)
                n += 1
                for name, server in (("first", first), ("second", second)):
                    if name not in reported:
                        status, redis_check = readiness(server)
                        if status == 503:
                            assert redis_check["ok"] is False and redis_check["error"], redis_check
                            reported[name] = time.monotonic() - killed
            assert max(reported.values()) < 6, f"/readyz took too long to report Redis down: {reported}"

            # Redis comes back on the same port: delivery resumes without a restart.
            own_redis.start()
            restarted = time.monotonic()
            wait_for(lambda: chat.crosses(a["id"], "after restart a"), 15, interval=0.1,
                     what="live delivery from process 1 to process 2 after Redis returned")
            wait_for(lambda: chat.crosses(b["id"], "after restart b"), 15, interval=0.1,
                     what="live delivery from process 2 to process 1 after Redis returned")
            for server in (first, second):
                wait_for(lambda: readiness(server)[0] == 200, 15, what="readiness after Redis returned")
            assert time.monotonic() - restarted < 20
            for n in range(3):  # and it stays resumed
                assert chat.crosses(a["id"], f"resumed a{n}", within=3)
                assert chat.crosses(b["id"], f"resumed b{n}", within=3)
        finally:
            sock_a.close()
            sock_b.close()

        # Nothing acknowledged is lost: every echoed message is in the thread, on both sides.
        assert len(chat.acked) > 30
        for server, token, other in ((first, ta, b), (second, tb, a)):
            stored = set(thread_ids(server.http_url(), token, other["id"]))
            missing = {i: t for i, t in chat.acked.items() if i not in stored}
            assert not missing, f"acknowledged but not stored: {missing}"


def test_processes_started_without_redis_serve_and_join_when_it_comes(tmp_path, own_redis, postgres_database):
    """Processes started without Redis serve locally, report 503, and join the fan-out once it starts."""
    env = server_env(tmp_path, database_url=postgres_database, redis_url=own_redis.url)
    manage(env, "migrate", "--noinput")
    a, b = provision(env, 2, "late")
    own_redis.kill()
    first = LiveServer(env, [free_port()], tmp_path / "first.log")
    second = LiveServer(env, [free_port()], tmp_path / "second.log")
    with first, second:
        for server in (first, second):
            status, redis_check = readiness(server)
            assert status == 503 and redis_check["ok"] is False, redis_check
        ta, tb = login(first.http_url(), a), login(second.http_url(), b)
        sock_a = ChatSocket.open(room_url(first.ws_url(), a["id"], b["id"], ta))
        sock_b = ChatSocket.open(room_url(second.ws_url(), a["id"], b["id"], tb))
        chat = Conversation(a, b, sock_a, sock_b)
        try:
            for n in range(3):
                chat.send(a["id"], f"no redis a{n}")
                chat.send(b["id"], f"no redis b{n}")
            time.sleep(3)  # let the hubs' resubscription back off a few times

            own_redis.start()
            wait_for(lambda: chat.crosses(a["id"], "redis up a"), 20, interval=0.1,
                     what="live delivery from process 1 to process 2 once Redis started")
            wait_for(lambda: chat.crosses(b["id"], "redis up b"), 20, interval=0.1,
                     what="live delivery from process 2 to process 1 once Redis started")
            for server in (first, second):
                wait_for(lambda: readiness(server)[0] == 200, 20, what="readiness once Redis started")
        finally:
            sock_a.close()
            sock_b.close()
        stored = set(thread_ids(first.http_url(), ta, b["id"]))
        assert set(chat.acked) <= stored
