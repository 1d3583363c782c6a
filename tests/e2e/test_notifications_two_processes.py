"""Notifications across processes (docs/notifications.md): two server processes sharing
PostgreSQL and Redis, and the publish_notification command as a third process, as a
host backend's job would run it. Each notification reaches its recipient's notification
sockets on both servers, and no socket of anyone else."""

import json

import pytest

from habitto_client import ChatSocket
from tests.support.chat import drain, login, marker, recv_until, two_servers
from tests.support.live import http_json, manage

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture
def servers(tmp_path, postgres_database, redis_url):
    with two_servers(tmp_path, postgres_database, redis_url, "notif") as (env, first, second, users):
        yield env, first, second, users


def socket(server, audience, user, token):
    return ChatSocket.open(f"{server.ws_url()}/ws/{audience}-notifications/{user['id']}/?token={token}")


def publish(env, user, kind, message, data):
    out = manage(env, "publish_notification", "--user", str(user["id"]), "--kind", kind,
                 "--message", message, "--data", json.dumps(data))  # fmt: skip
    return json.loads(out)


def test_a_command_in_a_third_process_reaches_only_the_recipients_sockets_on_both_servers(servers):
    env, first, second, (a, b) = servers
    ta, tb = login(first.http_url(), a), login(second.http_url(), b)
    a_property = [socket(first, "property", a, ta), socket(second, "property", a, ta)]
    a_tenant = [socket(second, "tenant", a, ta)]
    b_property = [socket(first, "property", b, tb), socket(second, "property", b, tb)]
    b_tenant = [socket(first, "tenant", b, tb), socket(second, "tenant", b, tb)]
    sockets = a_property + a_tenant + b_property + b_tenant
    try:
        for sock in sockets:  # open and answering on both servers before anything is published
            sock.send_json({"type": "ping"})
            recv_until(sock, lambda frame: frame.get("type") == "pong", 5)

        title = marker("Casa")
        like = publish(env, a, "property_like", "b indicó interés",
                       {"property_id": 12, "property_title": title, "interested_user": {"id": b["id"]}})  # fmt: skip
        ours = lambda frame: frame.get("property_title") == title  # noqa: E731 (a shared Redis may carry others')
        for sock in a_property:
            frame = recv_until(sock, ours, 5)
            assert frame["type"] == "property_like" and frame["notification_id"] == like["id"]

        accepted_title = marker("Depto")
        accepted = publish(env, b, "match_accepted_by_owner", "te aceptaron", {
            "property_id": 13, "property_title": accepted_title, "property_address": "Calle 2",
            "owner_name": "A", "owner_contact": {}, "match_score": 96.0, "next_steps": [],
        })  # fmt: skip
        for sock in b_tenant:
            frame = recv_until(sock, lambda frame: frame.get("property_title") == accepted_title, 5)
            assert frame["type"] == "match_accepted_by_owner" and frame["notification_id"] == accepted["id"]

        mine = {title, accepted_title}
        for sock in sockets:  # exactly one frame per notification, on the recipient's right socket only
            assert [f for f in drain(sock, 0.5) if f.get("property_title") in mine] == []

        # Marked read on one server, the badge on the other agrees; the other user's is not theirs to mark.
        status, body = http_json("POST", f"{first.http_url()}/api/notifications/{like['id']}/mark_as_read/", {}, token=ta)
        assert status == 200 and body["data"]["is_read"] is True
        status, body = http_json("GET", f"{second.http_url()}/api/notifications/?is_read=false", token=ta)
        assert status == 200 and body["count"] == 0
        status, _ = http_json("POST", f"{second.http_url()}/api/notifications/{accepted['id']}/mark_as_read/", {}, token=ta)
        assert status == 404
    finally:
        for sock in sockets:
            sock.close()
