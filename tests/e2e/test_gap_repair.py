"""Cross-process delivery repairs its own gaps (habitto_chat/realtime/gaps.py): two server
processes, one conversation with each user's legacy room and inbox sockets on a different
process, Redis (a private redis-server) down for 5 s while both keep sending. Once Redis
is back, every message reaches the other side's sockets exactly once, in order, within a
few seconds, although Redis pub/sub dropped everything published meanwhile."""

import threading
import time

import pytest

from habitto_client import ChatSocket, SocketClosed, Timeout, inbox_url, room_url
from tests.support.chat import login, marker, two_servers, wait_for

# channels_redis logs the lost connection with its traceback when Redis is stopped.
pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.slow,
              pytest.mark.server_tracebacks_expected("redis.exceptions.ConnectionError")]

OUTAGE_SECONDS = 5
REPAIR_WITHIN = 5  # seconds after Redis is back for every message to have arrived


class Reader:
    """Every frame a socket receives, read by a thread of its own (frames in arrival order)."""

    def __init__(self, sock):
        self.sock = sock
        self.frames = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                self.frames.append(self.sock.recv_json(0.2))
            except Timeout:
                continue
            except SocketClosed:
                return

    def close(self):
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def ids_from(frames, sender_id, key):
    return [f[key] for f in frames if f.get("sender") == sender_id]


def test_messages_sent_during_a_redis_outage_reach_the_other_process_exactly_once_in_order(
    tmp_path, own_redis, postgres_database
):
    with two_servers(tmp_path, postgres_database, own_redis.url, "gap") as (env, first, second, (a, b)):
        ta, tb = login(first.http_url(), a), login(second.http_url(), b)
        readers = {
            ("a", "room"): Reader(ChatSocket.open(room_url(first.ws_url(), a["id"], b["id"], ta))),
            ("a", "inbox"): Reader(ChatSocket.open(inbox_url(first.ws_url(), a["id"], ta))),
            ("b", "room"): Reader(ChatSocket.open(room_url(second.ws_url(), a["id"], b["id"], tb))),
            ("b", "inbox"): Reader(ChatSocket.open(inbox_url(second.ws_url(), b["id"], tb))),
        }
        users = {"a": (a, b, readers["a", "room"]), "b": (b, a, readers["b", "room"])}
        sent = {"a": [], "b": []}

        def send_round(label):
            for name, (me, other, room) in users.items():
                text = marker(f"{label} {name}")
                room.sock.send_json({"sender": me["id"], "receiver": other["id"], "content": text})
                sent[name].append(text)

        try:
            for n in range(5):  # healthy
                send_round(f"before {n}")
                time.sleep(0.1)
            own_redis.kill()
            killed = time.monotonic()
            n = 0
            while time.monotonic() - killed < OUTAGE_SECONDS:  # both keep sending
                send_round(f"outage {n}")
                n += 1
                time.sleep(0.1)
            own_redis.start()
            back = time.monotonic()
            for n in range(5):  # and go on after it
                send_round(f"after {n}")
                time.sleep(0.1)

            def echoed(name):
                """Ids of this user's messages in the order their echoes came (all sent ones)."""
                me = users[name][0]
                frames = [f for f in readers[name, "room"].frames if f.get("sender") == me["id"]]
                return [f["id"] for f in frames] if [f["content"] for f in frames] == sent[name] else None

            acked = {name: wait_for(lambda: echoed(name), 10, 0.1, what=f"every echo of {name}") for name in users}
            assert len(acked["a"]) > 40 and len(acked["b"]) > 40

            def complete():
                for sender, receiver in (("a", "b"), ("b", "a")):
                    sender_id = users[sender][0]["id"]
                    room = ids_from(readers[receiver, "room"].frames, sender_id, "id")
                    inbox = ids_from(readers[receiver, "inbox"].frames, sender_id, "message_id")
                    if len(room) < len(acked[sender]) or len(inbox) < len(acked[sender]):
                        return False
                return True

            wait_for(complete, REPAIR_WITHIN + 10, 0.1, what="every message on the other process's sockets")
            repaired_after = time.monotonic() - back
            time.sleep(1)  # a late duplicate would show now
        finally:
            for reader in readers.values():
                reader.close()

        for sender, receiver in (("a", "b"), ("b", "a")):
            sender_id = users[sender][0]["id"]
            # Exactly once and in order: the other side's sockets saw the sender's messages
            # as the sender's echoes came (ids increase), nothing missing, nothing twice.
            assert ids_from(readers[receiver, "room"].frames, sender_id, "id") == acked[sender]
            assert ids_from(readers[receiver, "inbox"].frames, sender_id, "message_id") == acked[sender]
            assert acked[sender] == sorted(acked[sender])
            # The sender's own inbox had its messages once each, locally.
            assert ids_from(readers[sender, "inbox"].frames, sender_id, "message_id") == acked[sender]
        assert repaired_after < REPAIR_WITHIN, f"repaired {repaired_after:.1f} s after Redis came back"
        for log in (first.log(), second.log()):
            assert "channel layer gap repaired" in log
