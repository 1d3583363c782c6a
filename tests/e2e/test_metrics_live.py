"""/metrics of a live server process under traffic (docs/metrics.md): the counters move
with what the clients did (messages stored equals messages acknowledged), both ports of
the process serve the one registry, and a request relayed by a proxy is refused."""

import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from habitto_client import ChatSocket, HandshakeRejected, SocketClosed, inbox_url, room_url
from tests.support.chat import drain, login, marker, provision, recv_until
from tests.support.live import LiveServer, free_port, http_json, manage, server_env

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def scrape(base_url, headers=None):
    """{(name, sorted label items): value} of every sample /metrics exposes."""
    request = urllib.request.Request(f"{base_url}/metrics", headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_of_a_live_backend_follow_its_traffic(tmp_path):
    # A small send burst, so a flood of frames is refused for rate and counted.
    env = server_env(tmp_path, CHAT_SEND_BURST=40, CHAT_SEND_RATE=20)
    manage(env, "migrate", "--noinput")
    a, b = provision(env, 2, "metrics")
    server = LiveServer(env, [free_port(), free_port()], tmp_path / "server.log")
    with server:
        http_a, http_b = server.http_url(server.ports[0]), server.http_url(server.ports[1])
        before = scrape(http_a)
        ta, tb = login(http_a, a), login(http_a, b)
        room_a = ChatSocket.open(room_url(server.ws_url(), a["id"], b["id"], ta))
        room_b = ChatSocket.open(room_url(server.ws_url(server.ports[1]), a["id"], b["id"], tb))
        inbox_b = ChatSocket.open(inbox_url(server.ws_url(), b["id"], tb))
        refused = ChatSocket.open(room_url(server.ws_url(), a["id"], b["id"], "not-a-token"))
        try:
            with pytest.raises((SocketClosed, HandshakeRejected)):
                refused.recv_json(5)
            assert refused.close_code == 4401

            acknowledged = 0
            for n in range(20):  # paced: one at a time, each echoed
                text = marker(f"paced {n}")
                room_a.send_json({"sender": a["id"], "receiver": b["id"], "content": text})
                recv_until(room_a, lambda f: f.get("content") == text, 10)
                acknowledged += 1
            for n in range(5):
                status, body = http_json("POST", f"{http_b}/api/messages/",
                                         {"receiver": a["id"], "content": f"rest {n}"}, token=tb)
                assert status in (200, 201), body
                acknowledged += 1
            # A flood past the burst: some frames are refused for rate, the rest stored.
            texts = [marker(f"flood {n}") for n in range(120)]
            for text in texts:
                room_b.send_json({"sender": b["id"], "receiver": a["id"], "content": text})
            frames = drain(room_b, quiet=1.0, limit=20)
            flood_stored = sum(1 for f in frames if f.get("content") in texts)
            rate_limited = sum(1 for f in frames if f.get("code") == "rate_limited")
            assert flood_stored + rate_limited == len(texts) and rate_limited > 0, (flood_stored, rate_limited)
            acknowledged += flood_stored

            during = scrape(http_b)  # the other port: the same process, the same registry
            assert value(during, "habitto_chat_sockets_open", kind="room", protocol="legacy") == 2
            assert value(during, "habitto_chat_sockets_open", kind="inbox", protocol="legacy") == 1
        finally:
            for sock in (room_a, room_b, inbox_b, refused):
                sock.close()

        after = scrape(http_a)
        moved = {name: value(after, name, **labels) - value(before, name, **labels)
                 for name, labels in [
                     ("habitto_chat_messages_stored_total", {}),
                     ("habitto_chat_batch_size_messages_sum", {}),
                     ("habitto_chat_batch_size_messages_count", {}),
                     ("habitto_chat_batch_commit_seconds_count", {}),
                     ("habitto_chat_delivery_seconds_count", {"path": "local"}),
                     ("habitto_chat_handshakes_refused_total", {"code": "4401"}),
                     ("habitto_chat_rate_limited_total", {"kind": "frame", "scope": "chat_send"}),
                     ("habitto_http_responses_total", {"route": "api/login/", "status": "200"}),
                 ]}
        assert moved["habitto_chat_messages_stored_total"] == acknowledged, moved
        # Socket sends went through the group commit: every one in some batch.
        assert moved["habitto_chat_batch_size_messages_sum"] == acknowledged - 5, moved
        assert 1 <= moved["habitto_chat_batch_size_messages_count"] == moved["habitto_chat_batch_commit_seconds_count"]
        assert moved["habitto_chat_delivery_seconds_count"] >= moved["habitto_chat_batch_size_messages_count"]
        assert moved["habitto_chat_handshakes_refused_total"] == 1
        assert moved["habitto_chat_rate_limited_total"] == rate_limited
        assert moved["habitto_http_responses_total"] == 2
        assert value(after, "habitto_chat_sockets_open", kind="room", protocol="legacy") == 0
        posts = [labels for (name, labels), v in after.items()
                 if name == "habitto_http_responses_total" and dict(labels)["route"].startswith("api/messages/")]
        assert posts and all(str(a["id"]) not in dict(labels)["route"] for labels in posts), posts

        # Through a proxy (X-Forwarded-For) the same loopback peer is refused.
        with pytest.raises(urllib.error.HTTPError) as refusal:
            scrape(http_a, {"X-Forwarded-For": "127.0.0.1"})
        assert refusal.value.code == 404
