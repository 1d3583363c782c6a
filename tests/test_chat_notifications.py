"""Notifications (docs/notifications.md): the REST calls exactly as the shipped app makes
them (lib/features/notifications/data/services/notification_service.dart), scoped to the
caller; the publish action's validation and its after-commit delivery; the notification
sockets `/ws/property-notifications/<id>/` and `/ws/tenant-notifications/<id>/` with the
old backend's frames (habitto_bk message/notification_consumers.py); the management
command. Across processes with Redis: tests/e2e/test_notifications_two_processes.py."""

import json
from datetime import datetime

import pytest
from channels.db import database_sync_to_async
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from prometheus_client import REGISTRY

from habitto_chat.actions import do_mark_notification_read, do_publish_notification
from habitto_chat.errors import InvalidInput, NotFound
from habitto_chat.models import Notification

WAIT = 3
QUIET = 0.3

ITEM_KEYS = {"id", "kind", "title", "message", "data", "is_read", "created_at"}
PROPERTY_LIKE = {"property_id": 12, "property_title": "Casa en Equipetrol", "interested_user": {"id": 5, "username": "ana"}}
MATCH_ACCEPTED = {
    "property_id": 12, "property_title": "Casa en Equipetrol", "property_address": "Calle 1",
    "owner_contact": {"email": "o@example.test", "phone": ""}, "match_status": "accepted",
    "next_steps": ["Contactar al inquilino"],
}  # fmt: skip
MATCH_ACCEPTED_BY_OWNER = {
    "property_id": 12, "property_title": "Casa en Equipetrol", "property_address": "Calle 1",
    "owner_name": "Olga", "owner_contact": {"email": "o@example.test", "phone": ""}, "match_score": 97.5,
    "next_steps": ["Contactar al propietario"],
}  # fmt: skip
# The old consumers' frame keys per kind (besides the data's own extra keys).
FRAME_KEYS = {
    "property_like": {"type", "property_id", "property_title", "interested_user", "timestamp", "notification_id"},
    "match_accepted": {
        "type", "property_id", "property_title", "property_address", "owner_contact", "match_status",
        "next_steps", "timestamp", "notification_id",
    },
    "match_accepted_by_owner": {
        "type", "property_id", "property_title", "property_address", "owner_name", "owner_contact",
        "match_score", "next_steps", "timestamp", "notification_id",
    },
    "general": {"type", "message", "data", "timestamp", "notification_id"},
}  # fmt: skip


def publish(user, kind="general", message="Hola", **kwargs):
    return do_publish_notification(user.pk, kind, message, **kwargs)


def property_path(user, slash=True):
    return f"/ws/property-notifications/{user.pk}" + ("/" if slash else "")


def tenant_path(user, slash=True):
    return f"/ws/tenant-notifications/{user.pk}" + ("/" if slash else "")


def app_unread_count(body):
    """NotificationService.unreadCount(): `data` there is the whole response body."""
    if isinstance(body.get("count"), int):
        return body["count"]
    if isinstance(body.get("results"), list):
        return len(body["results"])
    return 0


def app_list_results(body):
    """NotificationService.list(): envelope['data']['results']."""
    return body["data"]["results"]


def check_item(item):
    """What the app's notifications page casts: id int, title/message String?, is_read bool?,
    created_at String? (with a zone: the app treats naive times as local)."""
    assert set(item) == ITEM_KEYS
    assert isinstance(item["id"], int) and not isinstance(item["id"], bool)
    assert item["title"] is None or isinstance(item["title"], str)
    assert isinstance(item["message"], str) and item["message"]
    assert isinstance(item["is_read"], bool)
    assert isinstance(item["created_at"], str) and item["created_at"].endswith("Z")
    assert isinstance(item["data"], dict) and isinstance(item["kind"], str)
    return item


# --- REST --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_list_is_the_callers_own_newest_first_in_the_apps_shape(make_user, client_for):
    alice, bob = make_user("alice"), make_user("bob")
    first = publish(alice, message="uno", title="Primera")
    publish(bob, message="de bob")
    second = publish(alice, "property_like", "ana indicó interés", data=PROPERTY_LIKE)

    response = client_for(alice).get("/api/notifications/", {"page": "1", "page_size": "50"})
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True and isinstance(body["message"], str)
    results = app_list_results(body)
    assert [check_item(item)["id"] for item in results] == [second.id, first.id]
    assert results[1]["title"] == "Primera" and results[0]["title"] is None  # null: the app's default title
    assert results[0]["data"] == PROPERTY_LIKE and results[0]["kind"] == "property_like"
    assert body["data"]["count"] == 2 and body["count"] == 2
    assert body["data"]["next"] is None and body["data"]["previous"] is None


@pytest.mark.django_db
def test_badge_counts_only_the_callers_unread(make_user, client_for):
    alice, bob = make_user("alice"), make_user("bob")
    read = publish(alice, message="leída")
    do_mark_notification_read(alice.pk, read.id)
    unread = [publish(alice, message=f"nueva {n}").id for n in range(3)]
    publish(bob, message="de bob")

    body = client_for(alice).get("/api/notifications/", {"is_read": "false"}).json()
    assert app_unread_count(body) == 3
    assert [item["id"] for item in body["data"]["results"]] == unread[::-1]
    read_page = client_for(alice).get("/api/notifications/", {"is_read": "true"}).json()
    assert [item["id"] for item in read_page["data"]["results"]] == [read.id] and read_page["count"] == 1
    assert app_unread_count(client_for(make_user("carol")).get("/api/notifications/", {"is_read": "false"}).json()) == 0


@pytest.mark.django_db
def test_pages_follow_each_other_without_gaps(make_user, client_for):
    alice = make_user("alice")
    ids = [publish(alice, message=f"n{n}").id for n in range(5)]
    client = client_for(alice)
    seen, url = [], "/api/notifications/?page=1&page_size=2"
    while url:
        data = client.get(url).json()["data"]
        assert data["count"] == 5
        seen += [item["id"] for item in data["results"]]
        url = data["next"]
    assert seen == ids[::-1]
    last = client.get("/api/notifications/", {"page": "3", "page_size": "2"}).json()["data"]
    assert last["previous"].endswith("page=2&page_size=2") and last["next"] is None
    beyond = client.get("/api/notifications/", {"page": "9", "page_size": "2"}).json()
    assert beyond["data"]["results"] == [] and beyond["count"] == 5


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query, code",
    [
        ({"is_read": "maybe"}, "invalid_is_read"),
        ({"is_read": "2"}, "invalid_is_read"),
        ({"page": "0"}, "invalid_page"),
        ({"page": "x"}, "invalid_page"),
        ({"page_size": "1000"}, "invalid_page_size"),
        ({"page_size": "-1"}, "invalid_page_size"),
    ],
)
def test_bad_parameters_are_a_400_in_the_envelope(make_user, client_for, query, code):
    alice = make_user("alice")
    for path in ("/api/notifications/", "/api/notifications/my/"):
        response = client_for(alice).get(path, query)
        assert response.status_code == 400, (path, query)
        body = response.json()
        assert body["success"] is False and body["data"]["code"] == code and body["message"]


@pytest.mark.django_db
def test_mark_as_read_own_only_others_are_404(make_user, client_for):
    alice, bob = make_user("alice"), make_user("bob")
    mine, theirs = publish(alice), publish(bob)

    response = client_for(alice).post(f"/api/notifications/{mine.id}/mark_as_read/", {}, format="json")
    assert response.status_code == 200 and response.json()["success"] is True
    assert check_item(response.json()["data"])["is_read"] is True and response.json()["data"]["id"] == mine.id
    again = client_for(alice).post(f"/api/notifications/{mine.id}/mark_as_read/", {}, format="json")
    assert again.status_code == 200 and again.json()["data"]["is_read"] is True  # idempotent

    for notification_id in (theirs.id, theirs.id + 1000):
        refused = client_for(alice).post(f"/api/notifications/{notification_id}/mark_as_read/", {}, format="json")
        assert refused.status_code == 404 and refused.json()["data"]["code"] == "unknown_notification"
    assert Notification.objects.get(pk=theirs.id).is_read is False
    bad = client_for(alice).post("/api/notifications/abc/mark_as_read/", {}, format="json")
    assert bad.status_code == 400 and bad.json()["data"]["code"] == "invalid_id"
    with pytest.raises(NotFound):
        do_mark_notification_read(alice.pk, theirs.id)


@pytest.mark.django_db
def test_my_adds_unread_totals_to_the_callers_page(make_user, client_for):
    alice, bob = make_user("alice"), make_user("bob")
    like = publish(alice, "property_like", "like", data=PROPERTY_LIKE)
    publish(alice, "property_like", "otro like", data=PROPERTY_LIKE)
    general = publish(alice, message="hola")
    do_mark_notification_read(alice.pk, like.id)
    publish(bob, "match_accepted", "de bob", data=MATCH_ACCEPTED)

    body = client_for(alice).get("/api/notifications/my/").json()
    assert body["success"] is True and body["count"] == 3
    data = body["data"]
    assert data["count"] == 3 and len(data["results"]) == 3 and data["results"][0]["id"] == general.id
    assert data["unread_count"] == 2 and data["unread_by_kind"] == {"general": 1, "property_like": 1}
    unread_only = client_for(alice).get("/api/notifications/my/", {"is_read": "false", "page_size": "1"}).json()["data"]
    assert unread_only["count"] == 2 and len(unread_only["results"]) == 1 and unread_only["unread_count"] == 2


@pytest.mark.django_db
def test_anonymous_callers_get_401(client_for):
    for method, path in (("get", "/api/notifications/"), ("get", "/api/notifications/my/"),
                         ("post", "/api/notifications/1/mark_as_read/")):  # fmt: skip
        response = getattr(client_for(None), method)(path)
        assert response.status_code == 401 and response.json()["success"] is False


@pytest.mark.django_db
def test_a_page_costs_the_same_queries_for_3_or_30_notifications(make_user, client_for):
    alice = make_user("alice")
    client = client_for(alice)

    def queries_for_page():
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/api/notifications/", {"page_size": "50"}).status_code == 200
        return len(captured)

    for n in range(3):
        publish(alice, message=f"n{n}")
    few = queries_for_page()
    for n in range(27):
        publish(alice, message=f"m{n}")
    assert queries_for_page() == few


# --- the publish action ----------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "kwargs, code",
    [
        ({"kind": "Property Like"}, "invalid_kind"),
        ({"kind": ""}, "invalid_kind"),
        ({"kind": "x" * 51}, "invalid_kind"),
        ({"kind": 3}, "invalid_kind"),
        ({"message": ""}, "invalid_message"),
        ({"message": "   "}, "invalid_message"),
        ({"message": "x" * 4001}, "invalid_message"),
        ({"title": "t" * 201}, "invalid_title"),
        ({"data": [1, 2]}, "invalid_data"),
        ({"data": {"n": float("nan")}}, "invalid_data"),
        ({"data": {"blob": "x" * 20000}}, "invalid_data"),
        ({"data": {"type": "forged"}}, "invalid_data"),
        ({"data": {"notification_id": 1}}, "invalid_data"),
        ({"kind": "property_like", "data": {"property_id": 1}}, "missing_data_fields"),
        ({"kind": "match_accepted_by_owner", "data": PROPERTY_LIKE}, "missing_data_fields"),
    ],
)
def test_invalid_notifications_are_refused_and_nothing_is_stored(make_user, kwargs, code):
    alice = make_user("alice")
    arguments = {"kind": "general", "message": "Hola", **kwargs}
    with pytest.raises(InvalidInput) as refused:
        do_publish_notification(alice.pk, arguments.pop("kind"), arguments.pop("message"), **arguments)
    assert refused.value.code == code
    assert not Notification.objects.exists()


@pytest.mark.django_db
def test_unknown_recipient_is_not_found(make_user):
    with pytest.raises(NotFound):
        do_publish_notification(10**9, "general", "Hola")
    with pytest.raises(InvalidInput):
        do_publish_notification(0, "general", "Hola")
    assert not Notification.objects.exists()


# --- sockets ---------------------------------------------------------------------------------

socket_tests = pytest.mark.django_db(transaction=True)


async def assert_closed(communicator, code):
    output = await communicator.receive_output(WAIT)
    assert output["type"] == "websocket.close" and output["code"] == code, output


async def opened(ws, path, token, welcome):
    """A notification socket, its welcome frame checked and consumed."""
    communicator = await ws(path, token)
    frame = await communicator.receive_json_from(WAIT)
    assert frame == {"type": "connection_established", "message": welcome, "timestamp": frame["timestamp"]}
    assert datetime.fromisoformat(frame["timestamp"]).tzinfo is not None
    return communicator


async def property_socket(ws, user, token, slash=True):
    return await opened(ws, property_path(user, slash), token, "Conectado a notificaciones de propiedades")


async def tenant_socket(ws, user, token, slash=True):
    return await opened(ws, tenant_path(user, slash), token, "Conectado a notificaciones de inquilino")


_publish = database_sync_to_async(do_publish_notification)


@socket_tests
async def test_sockets_refuse_missing_or_bad_tokens_4401_and_others_ids_4403(ws, make_user, token_for):
    alice, bob = await database_sync_to_async(make_user)("alice"), await database_sync_to_async(make_user)("bob")
    for path in (property_path(alice), tenant_path(alice)):
        await assert_closed(await ws(path), 4401)
        await assert_closed(await ws(path, "not-a-token"), 4401)
        await assert_closed(await ws(path, token_for(bob)), 4403)


@socket_tests
async def test_ping_gets_the_old_pong_other_frames_are_ignored_bad_json_the_old_error(ws, make_user, token_for):
    alice = await database_sync_to_async(make_user)("alice")
    for socket in (await property_socket(ws, alice, token_for(alice)),
                   await tenant_socket(ws, alice, token_for(alice), slash=False)):  # fmt: skip
        await socket.send_json_to({"type": "ping"})
        pong = await socket.receive_json_from(WAIT)
        assert set(pong) == {"type", "timestamp"} and pong["type"] == "pong"
        assert datetime.fromisoformat(pong["timestamp"]).tzinfo is not None
        for frame in ({"type": "mark_read", "notification_id": 1}, {"type": "other"}, {}, [1], "ping", 7, None):
            await socket.send_json_to(frame)
        assert await socket.receive_nothing(QUIET)
        await socket.send_to(text_data="{not json")
        assert await socket.receive_json_from(WAIT) == {"type": "error", "message": "JSON inválido"}
        await socket.send_json_to({"type": "ping"})  # still usable
        assert (await socket.receive_json_from(WAIT))["type"] == "pong"


@socket_tests
async def test_protocol_2_is_not_offered_on_notification_sockets(ws, make_user, token_for):
    """`?protocol=2` changes nothing: the frames stay the old ones (legacy socket)."""
    alice = await database_sync_to_async(make_user)("alice")
    socket = await opened(ws, property_path(alice), f"{token_for(alice)}&protocol=2",
                          "Conectado a notificaciones de propiedades")  # fmt: skip
    await socket.send_to(text_data="{not json")
    assert await socket.receive_json_from(WAIT) == {"type": "error", "message": "JSON inválido"}


@socket_tests
async def test_each_kind_reaches_its_socket_in_the_old_frame_shape(ws, make_user, token_for):
    alice = await database_sync_to_async(make_user)("alice")
    token = token_for(alice)
    owner_side, tenant_side = await property_socket(ws, alice, token), await tenant_socket(ws, alice, token)

    like = await _publish(alice.pk, "property_like", "ana indicó interés", data={**PROPERTY_LIKE, "pending_requests_count": 4})
    frame = await owner_side.receive_json_from(WAIT)
    assert set(frame) == FRAME_KEYS["property_like"] | {"pending_requests_count"}
    assert frame == {"type": "property_like", **PROPERTY_LIKE, "pending_requests_count": 4,
                     "timestamp": frame["timestamp"], "notification_id": like.id}  # fmt: skip
    assert frame["timestamp"].endswith("Z")

    accepted = await _publish(alice.pk, "match_accepted", "match aceptado", data=MATCH_ACCEPTED)
    frame = await owner_side.receive_json_from(WAIT)
    assert set(frame) == FRAME_KEYS["match_accepted"]
    assert frame == {"type": "match_accepted", **MATCH_ACCEPTED, "timestamp": frame["timestamp"], "notification_id": accepted.id}

    general = await _publish(alice.pk, "general", "Tu búsqueda fue publicada", data={"url": "/p/12"})
    reminder = await _publish(alice.pk, "visit_reminder", "Visita mañana")
    for notification, kind, message, data in ((general, "general", "Tu búsqueda fue publicada", {"url": "/p/12"}),
                                              (reminder, "visit_reminder", "Visita mañana", {})):  # fmt: skip
        frame = await owner_side.receive_json_from(WAIT)
        assert set(frame) == FRAME_KEYS["general"]
        assert frame == {"type": kind, "message": message, "data": data,
                         "timestamp": frame["timestamp"], "notification_id": notification.id}  # fmt: skip
    assert await tenant_side.receive_nothing(QUIET)  # none of those is a tenant kind

    by_owner = await _publish(alice.pk, "match_accepted_by_owner", "te aceptaron", data=MATCH_ACCEPTED_BY_OWNER)
    frame = await tenant_side.receive_json_from(WAIT)
    assert set(frame) == FRAME_KEYS["match_accepted_by_owner"]
    assert frame == {"type": "match_accepted_by_owner", **MATCH_ACCEPTED_BY_OWNER,
                     "timestamp": frame["timestamp"], "notification_id": by_owner.id}  # fmt: skip
    assert await owner_side.receive_nothing(QUIET)


@socket_tests
async def test_notifications_never_reach_another_user_nor_the_legacy_chat_sockets(ws, make_user, token_for):
    make = database_sync_to_async(make_user)
    alice, bob = await make("alice"), await make("bob")
    ta, tb = token_for(alice), token_for(bob)
    mine = [await property_socket(ws, alice, ta), await tenant_socket(ws, alice, ta)]
    others = [await property_socket(ws, bob, tb), await tenant_socket(ws, bob, tb), await ws(f"/ws/chat/inbox/{bob.pk}/", tb),
              await ws(f"/ws/notifications/{bob.pk}/", tb)]  # fmt: skip
    low, high = sorted((alice.pk, bob.pk))
    legacy_chat = [await ws(f"/ws/chat/inbox/{alice.pk}/", ta), await ws(f"/ws/chat/{low}-{high}/", ta),
                   await ws(f"/ws/notifications/{alice.pk}/", ta)]  # fmt: skip

    like = await _publish(alice.pk, "property_like", "like", data=PROPERTY_LIKE)
    by_owner = await _publish(alice.pk, "match_accepted_by_owner", "ok", data=MATCH_ACCEPTED_BY_OWNER)
    assert (await mine[0].receive_json_from(WAIT))["notification_id"] == like.id
    assert (await mine[1].receive_json_from(WAIT))["notification_id"] == by_owner.id
    for socket in others + legacy_chat:
        assert await socket.receive_nothing(QUIET)


@socket_tests
async def test_protocol_2_inbox_carries_the_notification(ws, make_user, token_for):
    alice = await database_sync_to_async(make_user)("alice")
    inbox = await ws(f"/ws/chat/inbox/{alice.pk}/", f"{token_for(alice)}&protocol=2")
    notification = await _publish(alice.pk, "general", "Hola", title="Aviso")
    frame = await inbox.receive_json_from(WAIT)
    assert frame["type"] == "notification.created" and frame["pair"] is None
    assert check_item(frame["notification"])["id"] == notification.id and frame["notification"]["title"] == "Aviso"


@socket_tests
async def test_nothing_is_delivered_or_stored_when_the_callers_transaction_rolls_back(ws, make_user, token_for):
    alice = await database_sync_to_async(make_user)("alice")
    socket = await property_socket(ws, alice, token_for(alice))

    @database_sync_to_async
    def publish_then_fail():
        with pytest.raises(RuntimeError), transaction.atomic():
            do_publish_notification(alice.pk, "general", "never")
            raise RuntimeError("the host's write failed")

    await publish_then_fail()
    assert await socket.receive_nothing(QUIET)
    assert not await database_sync_to_async(Notification.objects.exists)()


# --- the management command ------------------------------------------------------------------


@socket_tests
async def test_management_command_publishes_to_the_users_socket(ws, make_user, token_for, capsys):
    alice = await database_sync_to_async(make_user)("alice")
    socket = await property_socket(ws, alice, token_for(alice))
    await database_sync_to_async(call_command)(
        "publish_notification", "--user", str(alice.pk), "--kind", "property_like",
        "--message", "ana indicó interés", "--title", "Nuevo interés", "--data", json.dumps(PROPERTY_LIKE),
    )  # fmt: skip
    printed = json.loads(capsys.readouterr().out)
    assert check_item(printed)["title"] == "Nuevo interés" and printed["data"] == PROPERTY_LIKE
    frame = await socket.receive_json_from(WAIT)
    assert frame["type"] == "property_like" and frame["notification_id"] == printed["id"]
    stored = await database_sync_to_async(Notification.objects.get)(pk=printed["id"])
    assert (stored.recipient_id, stored.kind, stored.message) == (alice.pk, "property_like", "ana indicó interés")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "arguments, error",
    [
        (["--user", "abc", "--message", "x"], "recipient must be a positive integer"),
        (["--user", "999999999", "--message", "x"], "No such user"),
        (["--user", "{alice}", "--message", "x", "--data", "{not json"], "--data is not JSON"),
        (["--user", "{alice}", "--message", "x", "--data", "[1]"], "data must be a JSON object"),
        (["--user", "{alice}", "--message", "x", "--kind", "property_like"], "needs these data fields"),
    ],
)
def test_management_command_refuses_bad_input_clearly(make_user, arguments, error):
    alice = make_user("alice")
    arguments = [a.replace("{alice}", str(alice.pk)) for a in arguments]
    with pytest.raises(CommandError, match=error):
        call_command("publish_notification", *arguments)
    assert not Notification.objects.exists()


@socket_tests
async def test_binary_and_oversized_frames_get_the_old_error_shape(ws, settings, make_user, token_for):
    settings.HABITTO_CHAT = {**settings.HABITTO_CHAT, "MAX_FRAME_BYTES": 64}
    alice = await database_sync_to_async(make_user)("alice")
    socket = await tenant_socket(ws, alice, token_for(alice))
    await socket.send_to(bytes_data=b"\x00\x01")
    await socket.send_to(text_data=json.dumps({"type": "ping", "pad": "x" * 100}))
    for _ in range(2):
        frame = await socket.receive_json_from(WAIT)
        assert set(frame) == {"type", "message"} and frame["type"] == "error" and frame["message"]
    await socket.send_json_to({"type": "ping"})
    assert (await socket.receive_json_from(WAIT))["type"] == "pong"


@socket_tests
async def test_open_notification_sockets_are_counted_by_kind(ws, make_user, token_for):
    def open_count(kind):
        return REGISTRY.get_sample_value("habitto_chat_sockets_open", {"kind": kind, "protocol": "legacy"}) or 0.0

    alice = await database_sync_to_async(make_user)("alice")
    before = {kind: open_count(kind) for kind in ("property_notifications", "tenant_notifications")}
    owner_side = await property_socket(ws, alice, token_for(alice))
    await tenant_socket(ws, alice, token_for(alice))
    assert {kind: open_count(kind) - before[kind] for kind in before} == {"property_notifications": 1, "tenant_notifications": 1}
    await owner_side.disconnect()
    assert open_count("property_notifications") == before["property_notifications"]
