"""Metrics (habitto_chat/metrics.py, habitto_server/metrics.py) and gap repair's database
side (queries.message_events_since, realtime/gaps.py) inside one test process."""

import asyncio
import time
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone
from prometheus_client import REGISTRY

from habitto_chat import actions
from habitto_chat.models import Message
from habitto_chat.queries import message_events_since
from habitto_chat.realtime.hub import Hub

pytestmark = pytest.mark.django_db


def sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


# --- who may read /metrics -------------------------------------------------------------


def test_metrics_answer_a_direct_loopback_request(client):
    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert b"habitto_chat_messages_stored_total" in response.content


@pytest.mark.parametrize("remote_addr", ["10.0.0.5", "192.168.1.20", "2001:db8::1", "not-an-address"])
def test_metrics_are_not_served_to_other_addresses(client, remote_addr):
    response = client.get("/metrics", REMOTE_ADDR=remote_addr)
    assert response.status_code == 404
    assert b"habitto_chat" not in response.content


def test_metrics_are_not_served_to_a_request_relayed_by_a_proxy(client):
    """A proxy on the same host connects from 127.0.0.1: its X-Forwarded-For marks the request as not local."""
    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="127.0.0.1")
    assert response.status_code == 404
    response = client.get("/metrics", REMOTE_ADDR="::1", HTTP_FORWARDED="for=127.0.0.1")
    assert response.status_code == 404


@override_settings(METRICS_TOKEN="m" * 40)
def test_metrics_token_lets_a_scraper_elsewhere_in_and_nobody_else(client):
    assert client.get("/metrics", REMOTE_ADDR="10.0.0.5", HTTP_AUTHORIZATION="Bearer " + "m" * 40).status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="10.0.0.5", HTTP_AUTHORIZATION="Bearer " + "x" * 40).status_code == 404
    assert client.get("/metrics", REMOTE_ADDR="10.0.0.5", HTTP_AUTHORIZATION="m" * 40).status_code == 404
    assert client.get("/metrics", REMOTE_ADDR="10.0.0.5").status_code == 404


# --- what is counted ----------------------------------------------------------------------


def test_http_responses_are_counted_by_url_pattern_not_raw_path(client, make_user, client_for):
    healthz = sample("habitto_http_responses_total", route="healthz", status="200")
    unmatched = sample("habitto_http_responses_total", route="<unmatched>", status="404")
    client.get("/healthz")
    client.get("/no/such/path/123")
    client.get("/no/such/path/456")
    assert sample("habitto_http_responses_total", route="healthz", status="200") == healthz + 1
    assert sample("habitto_http_responses_total", route="<unmatched>", status="404") == unmatched + 2

    alice, bob = make_user(), make_user()
    message = actions.do_send_message(alice.pk, bob.pk, "hello").message
    routes = {s.labels["route"] for s in REGISTRY.collect() for s in s.samples if s.name == "habitto_http_responses_total"}
    client_for(alice).get(f"/api/messages/{message.id}/")
    after = {s.labels["route"] for s in REGISTRY.collect() for s in s.samples if s.name == "habitto_http_responses_total"}
    new = after - routes
    assert all(str(message.id) not in route for route in after), after
    assert not new or all(route.startswith("api/messages/") for route in new), new


def test_messages_stored_counts_committed_messages_once(make_user, django_capture_on_commit_callbacks):
    alice, bob = make_user(), make_user()
    before = sample("habitto_chat_messages_stored_total")
    with django_capture_on_commit_callbacks(execute=True):  # counted after commit only
        actions.do_send_message(alice.pk, bob.pk, "one", client_id="c-1")
        actions.do_send_message(alice.pk, bob.pk, "one again", client_id="c-1")  # a retry: the same message
        actions.do_send_message(bob.pk, alice.pk, "two")
    assert sample("habitto_chat_messages_stored_total") == before + 2


def test_refused_requests_are_counted_by_throttle_scope(client, settings, make_user):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {
        **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "login": "2/m"}}
    make_user("carol")
    before = sample("habitto_chat_rate_limited_total", kind="request", scope="login")
    statuses = [client.post("/api/login/", {"username": "carol", "password": "wrong"},
                            content_type="application/json").status_code for _ in range(4)]
    assert statuses.count(429) == 2, statuses
    assert sample("habitto_chat_rate_limited_total", kind="request", scope="login") == before + 2


# --- gap repair: the replay query and the hub's side ---------------------------------------


def test_message_events_since_reads_the_window_in_id_order_for_the_given_users(make_user):
    alice, bob, carol, dave = (make_user() for _ in range(4))
    old = actions.do_send_message(alice.pk, bob.pk, "before the window").message
    Message.objects.filter(pk=old.id).update(created_at=timezone.now() - timedelta(minutes=5))
    start = timezone.now() - timedelta(seconds=1)
    first = actions.do_send_message(bob.pk, alice.pk, "in the window 1").message
    actions.do_send_message(carol.pk, dave.pk, "other users")
    second = actions.do_send_message(alice.pk, bob.pk, "in the window 2").message

    events, truncated = message_events_since(start, [alice.pk], limit=100)
    assert not truncated
    assert [event["message"]["id"] for event, _ in events] == [first.id, second.id]
    event, created_at = events[0]
    assert event["type"] == "message.created" and event["recipients"] == [bob.pk, alice.pk]
    assert event["message"]["content"] == "in the window 1" and created_at == first.created_at
    assert set(event["cards"]) == {str(alice.pk), str(bob.pk)}

    events, truncated = message_events_since(start, [alice.pk], limit=2)
    assert truncated and [event["message"]["id"] for event, _ in events] == [first.id]


class FakeSocket:
    def __init__(self, user_id, opened_at):
        self.user_id, self.opened_at, self.got = user_id, opened_at, []

    def deliver(self, event, frames):
        self.got.append(event["message"]["id"])


@pytest.mark.django_db(transaction=True)
async def test_replay_delivers_what_the_layer_dropped_once_in_order_to_sockets_open_before(make_user):
    from asgiref.sync import sync_to_async

    alice, bob = await sync_to_async(make_user)(), await sync_to_async(make_user)()
    hub = Hub()
    hub.bind(asyncio.get_running_loop())  # in-memory layer: not distributed, no listener
    early = FakeSocket(bob.pk, time.time() - 60)
    hub.register(early)
    since = time.time()
    send = sync_to_async(actions.do_send_message)
    seen_live = (await send(alice.pk, bob.pk, "delivered live")).message
    hub._deliver_now([_event(seen_live)], time.time(), _NoLatency())  # came through the layer
    lost = [(await send(alice.pk, bob.pk, f"lost {n}")).message for n in range(3)]
    late = FakeSocket(bob.pk, time.time() + 60)  # opened after them: loaded them as history
    hub.register(late)
    assert early.got == [seen_live.id]

    hub.gaps._since, hub.gaps._held = since, []  # what suspect() sets, without its layer probe
    held = {"type": "chat.events", "origin": "another process", "events": [_event(lost[1])]}
    hub._on_layer_message(held)  # arrives while the gap is pending: held, then dropped as seen
    assert early.got == [seen_live.id]
    hub.gaps._since = None
    await hub.gaps._replay(since)
    assert early.got == [seen_live.id] + [m.id for m in lost]
    assert late.got == []

    await hub.gaps._replay(since)  # a second repair of the same window adds nothing
    assert early.got == [seen_live.id] + [m.id for m in lost]


class _NoLatency:
    def observe(self, value):
        pass


def _event(message):
    from habitto_chat import wire

    (event,) = wire.message_created_events([message], {})
    return event
