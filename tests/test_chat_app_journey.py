"""The shipped Habitto app's whole journey, replayed in its order with its exact requests,
each answer checked against what the app's Dart code casts it to.

The specification is the app's source (repository marvinjoel2001/habitto, read at commit
49cde26): every row of JOURNEY names the Dart file the call and its reads come from.
Requests go through the project's ASGI application as the app's Dio client sends them
(`Content-Type: application/json`, `Accept: application/json`, the bearer token except on
login, register and refresh; uploads as Dio's FormData with no content type given for
the file, sent here as `application/octet-stream`), so the edge (body limits, the
envelope) is on the path too.
Sockets are the app's `?token=` sockets on the same application. Notifications are
published through the action, as the host backend does (docs/notifications.md).

Dart reads and their JSON types (`expect` in each row):
- `int`: `json['id']` assigned to an `int` field, or `as int`: an integer, never null
  (and not a bool: Python's bool is an int, JSON's true is not).
- `String`: `as String`, or passed where a `String` is required: a string, never null.
- `T?`: `as T?`, `?? default`, `?.toString()`: null (or missing) or a T.
- `DateTime`: `DateTime.parse(x)`: a string it parses; `DateTime?`: `DateTime.tryParse`
  (null tolerated). Both also must carry a zone: the app treats a naive time as local.
- `Map`, `List`, `List<int>`: `as Map` / `List<int>.from(...)`.
- `any`: read only through `.toString()` or string interpolation: present is enough.
A path `a.b[].c` checks key `c` of every item of list `b` (and requires one item at least).
"""

import base64
import io
import json
import os
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import pytest
from asgiref.testing import ApplicationCommunicator
from channels.db import database_sync_to_async
from PIL import Image
from rest_framework_simplejwt.tokens import AccessToken

from habitto_chat.actions import do_publish_notification
from habitto_server.asgi import application

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_writer")]

HOST = "testserver"
WAIT = 10  # seconds for an HTTP answer (pictures are re-encoded; PostgreSQL in CI)
ECHO_WAIT = 5  # the app marks its bubble failed when the echo takes longer
QUIET = 0.3
PASSWORD = "Casa-en-Equipetrol-2025"

# --- the app's Dart types -------------------------------------------------------------------


def zoned(value):
    return datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo is not None


DART = {
    "int": lambda v: type(v) is int,
    "String": lambda v: type(v) is str,
    "bool": lambda v: type(v) is bool,
    "Map": lambda v: type(v) is dict,
    "List": lambda v: type(v) is list,
    "List<int>": lambda v: type(v) is list and all(type(i) is int for i in v),
    "DateTime": lambda v: type(v) is str and zoned(v),
    "any": lambda v: v is not None,
}


def check_reads(body, expect, what):
    """Assert that every read of `expect` ({path: Dart type}) holds for `body`."""
    for path, dart in expect.items():
        for where, value in _walk(body, path.split("."), "", what):
            nullable = dart.endswith("?")
            if value is None:
                assert nullable, f"{what}: {where} is null or missing; the app reads it as {dart}"
            else:
                assert DART[dart.rstrip("?")](value), f"{what}: {where} = {value!r}; the app reads it as {dart}"


def _walk(node, keys, where, what):
    if not keys:
        yield where, node
        return
    key, rest = keys[0], keys[1:]
    if key.endswith("[]"):
        items = node.get(key[:-2]) if isinstance(node, dict) else None
        assert isinstance(items, list) and items, f"{what}: {where}{key} must be a non-empty list, got {items!r}"
        for i, item in enumerate(items):
            yield from _walk(item, rest, f"{where}{key[:-2]}[{i}].", what)
    else:
        value = node.get(key) if isinstance(node, dict) else None
        if rest and value is None:  # a missing parent reads as null: only fine if the leaf may be null
            yield f"{where}{key}", None
            return
        yield from _walk(value, rest, f"{where}{key}.", what) if rest else iter([(f"{where}{key}", value)])


ENVELOPE = {"success": "bool", "message": "String"}  # api_service.dart: _handleErrorResponse reads message
USER = {  # lib/features/auth/domain/entities/user.dart User.fromJson
    "id": "int",  # rawId is int ? rawId : int.tryParse(...) ?? 0 (an int keeps the id)
    "username": "String?", "email": "String?", "first_name": "String?", "last_name": "String?",  # (x ?? '').toString()
    "date_joined": "DateTime?",  # DateTime.tryParse(dj) ?? DateTime.now()
}  # fmt: skip
PROFILE = {  # lib/features/profile/domain/entities/profile.dart Profile.fromJson
    "id": "int",  # id: json['id'] (int field)
    "user": "Map",  # User.fromJson(json['user'])
    **{f"user.{key}": dart for key, dart in USER.items()},
    "user_type": "String?", "phone": "String?",  # (json[...] ?? '').toString()
    "is_verified": "bool?",  # json['is_verified'] ?? false (bool field)
    "created_at": "DateTime?", "updated_at": "DateTime?",  # DateTime.tryParse(...) ?? now
    "favorites": "List<int>?",  # List<int>.from(json['favorites'] ?? [])
    "profile_picture_url": "String?", "profile_picture": "String?",  # clean(v?.toString())
}  # fmt: skip
MESSAGE = {  # lib/features/chat/data/models/message_model.dart MessageModel.fromJson
    "id": "int", "sender": "int", "receiver": "int",  # int fields, no null check
    "content": "String",  # String field
    "created_at": "DateTime",  # DateTime.parse(json['created_at'])
    "is_read": "bool?",  # is bool ? as bool : (null ? false : toString() == 'true')
}  # fmt: skip


def prefixed(prefix, fields):
    return {f"{prefix}.{key}": dart for key, dart in fields.items()}


# --- the app's requests -----------------------------------------------------------------------


def picked_image(image_format):
    """What image_picker hands the app (maxWidth/maxHeight 800, imageQuality 85): a camera
    JPEG, or a PNG kept as PNG (imageQuality applies to JPEG only), up to ~1.9 MB of
    detailed 800x800 pixels: over MAX_BODY_BYTES, within MAX_UPLOAD_BYTES."""
    out = io.BytesIO()
    if image_format == "PNG":
        Image.frombytes("RGB", (800, 800), os.urandom(800 * 800 * 3)).save(out, "PNG")
    else:
        Image.frombytes("RGB", (64, 64), os.urandom(64 * 64 * 3)).save(out, "JPEG", quality=85)
    return out.getvalue()


class Picture:
    """A file part as Dio's MultipartFile.fromFile(path) sends it: the file's base name, and
    no content type chosen by the app (octet-stream here, the least the server may rely on)."""

    def __init__(self, content, name):
        self.content, self.name = content, name


def multipart(fields):
    boundary = "--dio-boundary-0123456789"
    parts = []
    for name, value in fields.items():
        if isinstance(value, Picture):
            head = (f'Content-Disposition: form-data; name="{name}"; filename="{value.name}"\r\n'
                    "Content-Type: application/octet-stream\r\n\r\n")  # fmt: skip
            parts.append(f"--{boundary}\r\n{head}".encode() + value.content + b"\r\n")
        else:
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


async def http(method, path, token=None, json_body=None, form=None):
    """One request through the ASGI application, headers as Dio's BaseOptions set them."""
    headers = [(b"host", HOST.encode()), (b"accept", b"application/json")]
    body = b""
    if form is not None:
        body, content_type = multipart(form)
        headers.append((b"content-type", content_type.encode()))
    else:
        headers.append((b"content-type", b"application/json"))
        if json_body is not None:
            body = json.dumps(json_body).encode()
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    headers.append((b"content-length", str(len(body)).encode()))
    url = urlsplit(path)
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": url.path, "raw_path": url.path.encode(), "query_string": url.query.encode(),
        "root_path": "", "headers": headers, "client": ("127.0.0.1", 51000), "server": (HOST, 80),
    }  # fmt: skip
    communicator = ApplicationCommunicator(application, scope)
    await communicator.send_input({"type": "http.request", "body": body, "more_body": False})
    start = await communicator.receive_output(WAIT)
    assert start["type"] == "http.response.start", start
    content = b""
    while True:
        chunk = await communicator.receive_output(WAIT)
        content += chunk.get("body", b"")
        if not chunk.get("more_body"):
            break
    await communicator.wait(WAIT)
    content_type = {name.lower(): value for name, value in start["headers"]}.get(b"content-type", b"")
    assert content_type.startswith(b"application/json"), (start["status"], content_type, content[:200])
    return start["status"], json.loads(content)


def jwt_claims(access):
    """token_storage.dart getCurrentUserId(): the payload decoded without verification."""
    payload = access.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def registration(username, user_type):
    """auth_service.dart register(): User.toCreateJson() + password, user_type, phone."""
    return {
        "username": username, "email": f"{username}@example.test", "first_name": username.title(),
        "last_name": "Quispe", "password": PASSWORD, "user_type": user_type, "phone": "+591 70000000",
    }  # fmt: skip


# --- the journey ------------------------------------------------------------------------------
# One row per call: (what the app does, Dart source, method, path, who calls, body, expected
# status, reads of the answer). Paths and bodies are templates over `journey` (ids, tokens).
# `who`: "me", the caller's stored access token the interceptor adds; None: no Authorization.
# The keys of the reads start at the whole JSON answer (what ApiService hands a service as
# response['data']); "data." is what most services unwrap from the envelope.

AUTH = "lib/features/auth/data/services/auth_service.dart"
PROFILE_SERVICE = "lib/features/profile/data/services/profile_service.dart"
MESSAGES = "lib/features/chat/data/services/message_service.dart"
NOTIFICATIONS = "lib/features/notifications/data/services/notification_service.dart"

JOURNEY = [
    # register_page.dart _register() -> auth_service.dart register(): POST /api/users/ (no token yet)
    ("register a tenant", AUTH, "POST", "/api/users/", None, {"json": registration("ana", "inquilino")}, 201,
     {**ENVELOPE, **prefixed("data", USER)}),
    ("register an owner", AUTH, "POST", "/api/users/", None, {"json": registration("olga", "propietario")}, 201,
     {**ENVELOPE, **prefixed("data", USER)}),
    ("register an agent", AUTH, "POST", "/api/users/", None, {"json": registration("abel", "agente")}, 201,
     {**ENVELOPE, **prefixed("data", USER)}),
    # register_page.dart: automatic login after registration -> auth_service.dart login()
    ("log in", AUTH, "POST", "/api/login/", None, {"json": {"username": "{me}", "password": PASSWORD}}, 200,
     {**ENVELOPE, "data.access": "String", "data.refresh": "String"}),  # data['access']?.substring(0, 20); saveTokens(String, String)
    # splash_page.dart / home_page.dart / profile_page.dart -> profile_service.dart getCurrentProfile()
    ("own profile", PROFILE_SERVICE, "GET", "/api/profiles/me/", "me", {}, 200, {**ENVELOPE, **prefixed("data", PROFILE)}),
    # auth_service.dart register(profileImage:) -> GET /api/profiles/me/, then PATCH /api/profiles/<id>/ multipart
    ("photo at sign-up", AUTH, "PATCH", "/api/profiles/{my_profile_id}/", "me", {"form": {"profile_picture": "JPEG"}}, 200,
     {**ENVELOPE, **prefixed("data", PROFILE), "data.profile_picture_url": "String"}),
    # profile_page.dart mode switch -> profile_service.dart updateCurrentProfile({'user_type': targetType})
    ("mode switch", PROFILE_SERVICE, "PATCH", "/api/profiles/update_me/", "me", {"json": {"user_type": "propietario"}}, 200,
     {**ENVELOPE, **prefixed("data", PROFILE)}),
    # edit_profile_page.dart _saveProfile(profileImage:) -> uploadCurrentProfilePicture(): POST multipart
    ("photo from edit profile", PROFILE_SERVICE, "POST", "/api/profiles/upload_profile_picture/", "me",
     {"form": {"profile_picture": "PNG"}}, 200, {**ENVELOPE, **prefixed("data", PROFILE), "data.profile_picture_url": "String"}),
    # edit_profile_page.dart _saveProfile() -> updateCurrentProfile({'phone', 'user_type'}): PATCH JSON
    ("edit profile", PROFILE_SERVICE, "PATCH", "/api/profiles/update_me/", "me",
     {"json": {"phone": "+591 71111111", "user_type": "inquilino"}}, 200, {**ENVELOPE, **prefixed("data", PROFILE)}),
    # user_list_page.dart _loadUsers() -> chat/data/services/user_service.dart getAllUsers(); the tile passes
    # user['id'] as ConversationPage(otherUserId: int?) and user['username'] as its String title
    ("user list", "lib/features/chat/data/services/user_service.dart", "GET", "/api/users/", "me", {}, 200,
     {**ENVELOPE, "data.results[].id": "int", "data.results[].username": "String",
      "data.results[].first_name": "any", "data.results[].last_name": "any"}),  # '$firstName $lastName'
    # conversation_page.dart _loadCounterpartAvatar() -> profile_service.dart getProfileByUserId(): results.first
    ("counterpart's profile", PROFILE_SERVICE, "GET", "/api/profiles/?user_id={other_id}", "me", {}, 200,
     {**ENVELOPE, **prefixed("data.results[]", PROFILE)}),
    # (the room socket opens here: conversation_page.dart _openWebSocket(), see the test)
    # conversation_page.dart _loadConversation() -> message_service.dart getThread(otherUserId, page: 1, pageSize: 50)
    ("thread", MESSAGES, "GET", "/api/messages/thread/?other_user_id={other_id}&page=1&page_size=50", "me", {}, 200,
     {**ENVELOPE, **prefixed("data.results[]", MESSAGE)}),
    # chat_page.dart _loadMessages() -> message_service.dart getConversations() / parseConversationsEnvelope()
    ("conversations", MESSAGES, "GET", "/api/messages/conversations/", "me", {}, 200,
     {**ENVELOPE, **prefixed("data.results[].last_message", MESSAGE),
      "data.results[].counterpart": "Map",  # Map<String, dynamic>.from(json['counterpart'] as Map)
      "data.results[].counterpart.id": "int",  # counterpart['id'] as int
      "data.results[].counterpart.username": "String?", "data.results[].counterpart.full_name": "String?",
      "data.results[].counterpart.profile_picture": "String?",  # as String?
      "data.results[].unread_count": "int?"}),  # unread is int ? unread : int.tryParse(...); chat_page: as int?
    # chat_page.dart _buildMessageTile onTap -> message_service.dart markThreadRead(otherId): any 2xx
    ("mark read", MESSAGES, "POST", "/api/messages/mark_thread_read/", "me", {"json": {"other_user_id": "{other_id}"}}, 200,
     ENVELOPE),
    # conversation_page.dart _confirmAndClearConversation() -> message_service.dart clearConversation(): any 2xx
    ("clear", MESSAGES, "POST", "/api/messages/clear_conversation/", "me", {"json": {"other_user_id": "{other_id}"}}, 200,
     ENVELOPE),
    # chat_page.dart _NotificationsPageState._load() -> notification_service.dart list(pageSize: 50)
    ("notifications page", NOTIFICATIONS, "GET", "/api/notifications/?page=1&page_size=50", "me", {}, 200,
     {**ENVELOPE, "data.results[].id": "int?",  # (n['id'] as int?) ?? 0, passed to markAsRead(int)
      "data.results[].title": "String?", "data.results[].message": "String?", "data.results[].content": "String?",
      "data.results[].is_read": "bool?", "data.results[].created_at": "DateTime?"}),  # as String?, shown
    # chat_page.dart _loadUnreadNotificationsCount() -> notification_service.dart unreadCount():
    # resp['data'] is the whole body; `d['count'] is int` else results.length else 0
    ("badge", NOTIFICATIONS, "GET", "/api/notifications/?is_read=false", "me", {}, 200, {**ENVELOPE, "count": "int"}),
    # chat_page.dart _NotificationsPageState._markRead(id) -> notification_service.dart markAsRead(id): post(..., {}); any 2xx
    ("mark a notification read", NOTIFICATIONS, "POST", "/api/notifications/{notification_id}/mark_as_read/", "me",
     {"json": {}}, 200, ENVELOPE),
    # api_service.dart onError 401 -> _refreshToken(): no Authorization, both keys; reads access (and a
    # rotated refresh) at the top level or under data, `is String`
    ("token refresh", "lib/core/services/api_service.dart", "POST", "/api/refresh/", None,
     {"json": {"refresh": "{refresh}", "refresh_token": "{refresh}"}}, 200,
     {**ENVELOPE, "data.access": "String", "data.refresh": "String?"}),
    # auth_service.dart isAuthenticated() -> getCurrentUser(): GET /api/users/me/, User.fromJson(data)
    ("current user after the refresh", AUTH, "GET", "/api/users/me/", "me", {}, 200, {**ENVELOPE, **prefixed("data", USER)}),
    # profile_page.dart (logout button) -> auth_service.dart logout(): post(logoutEndpoint, {}) with the bearer token
    ("logout", AUTH, "POST", "/api/logout/", "me", {"json": {}}, 200, ENVELOPE),
]  # fmt: skip
STEPS = {row[0]: row for row in JOURNEY}
assert len(STEPS) == len(JOURNEY)


def _fill(template, journey):
    if isinstance(template, str):
        if template == "JPEG":
            return Picture(picked_image("JPEG"), "image_picker_4F2A.jpg")
        if template == "PNG":
            return Picture(picked_image("PNG"), "image_picker_9C1B.png")
        if template.startswith("{") and template.endswith("}") and template[1:-1] in journey:
            return journey[template[1:-1]]  # a whole value keeps its type (ids stay ints)
        return template.format(**journey)
    if isinstance(template, dict):
        return {key: _fill(value, journey) for key, value in template.items()}
    return template


async def step(name, journey):
    """Make the row's call as the app does; check status and every read; return the body."""
    what, source, method, path, who, body, status, expect = STEPS[name]
    answered_status, answer = await http(
        method, _fill(path, journey), token=journey["access"] if who else None,
        json_body=_fill(body.get("json"), journey), form=_fill(body.get("form"), journey),
    )  # fmt: skip
    label = f"{what} ({method} {path}, {source})"
    assert answered_status == status, (label, answered_status, answer)
    assert answer["success"] is True, (label, answer)
    check_reads(answer, expect, label)
    return answer


async def socket(ws, path, access):
    """AppConfig.buildWsUri(path, token: access): the stored token as ?token=."""
    return await ws(path, access)


def check_room_frame(frame, me, other, text):
    """conversation_page.dart _openWebSocket() listener: every JSON object is a message."""
    check_reads(frame, {"sender": "int?", "receiver": "int?",  # data['sender'] as int?
                        "content": "String?", "created_at": "DateTime?"}, "room frame")  # fmt: skip
    # The echo is recognised by sender == me and the text (within 5 s, else "failed").
    assert (frame["sender"], frame["receiver"], frame["content"]) == (me, other, text), frame


def check_inbox_frame(frame, sender, receiver, text):
    """chat_page.dart _openInboxWebSocket() listener."""
    check_reads(frame, {
        "sender": "int?", "receiver": "int?", "content": "String?", "created_at": "DateTime?",
        "counterpart_full_name": "String?", "counterpart_username": "String?",
        "counterpart_profile_picture": "String?",  # all `as T?`
    }, "inbox frame")  # fmt: skip
    assert (frame["message_id"] or frame["id"]) is not None  # (data['message_id'] ?? data['id'])?.toString(): dedup key
    assert (frame["sender"], frame["receiver"], frame["content"]) == (sender, receiver, text), frame


async def test_the_shipped_apps_journey_in_order(ws, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    users = {}

    # Registration, one of each user_type, the body exactly as register() builds it.
    for name, user_type in (("register a tenant", "inquilino"), ("register an owner", "propietario"),
                            ("register an agent", "agente")):  # fmt: skip
        data = (await step(name, {}))["data"]
        users[data["username"]] = {"id": data["id"], "user_type": user_type}

    # Each logs in (register_page.dart logs in right after registering) and reads its id
    # from the token as the app does: int.tryParse(payload['user_id'].toString()).
    for username, user in users.items():
        data = (await step("log in", {"me": username}))["data"]
        assert int(str(jwt_claims(data["access"])["user_id"])) == user["id"]
        user.update(access=data["access"], refresh=data["refresh"])

    # Profiles: each sees its own user_type as stored (profile_page.dart switches on it).
    for username, user in users.items():
        profile = (await step("own profile", user))["data"]
        assert (profile["user_type"], profile["user"]["id"]) == (user["user_type"], user["id"])
        assert profile["phone"] == "+591 70000000"
        user["profile_id"] = profile["id"]

    ana, olga = users["ana"], users["olga"]
    me = dict(ana, my_profile_id=ana["profile_id"])
    signed_up = (await step("photo at sign-up", me))["data"]
    assert signed_up["id"] == ana["profile_id"] and signed_up["profile_picture_url"].startswith("http://testserver/media/")
    assert (await step("mode switch", me))["data"]["user_type"] == "propietario"
    uploaded = (await step("photo from edit profile", me))["data"]
    assert uploaded["profile_picture_url"] != signed_up["profile_picture_url"]  # a new file, a new random name
    edited = (await step("edit profile", me))["data"]
    assert (edited["user_type"], edited["phone"]) == ("inquilino", "+591 71111111")

    # Ana opens the user list and picks Olga: the counterpart's profile, the room socket
    # (before any other HTTP call of the chat screen), the thread.
    listed = (await step("user list", me))["data"]["results"]
    assert {u["username"] for u in listed} >= {"olga", "abel"}
    me["other_id"] = olga["id"]
    counterpart = (await step("counterpart's profile", me))["data"]["results"][0]
    assert counterpart["user"]["id"] == olga["id"] and counterpart["user_type"] == "propietario"
    assert counterpart["phone"] is None and counterpart["user"]["email"] is None  # not Ana's to read

    # chat_page.dart opens the inbox and property-notification sockets as soon as it has an
    # id; home_page.dart the tenant-notification socket.
    olga_inbox = await socket(ws, f"/ws/chat/inbox/{olga['id']}/", olga["access"])
    ana_inbox = await socket(ws, f"/ws/chat/inbox/{ana['id']}/", ana["access"])
    low, high = sorted((ana["id"], olga["id"]))
    room_path = f"/ws/chat/{low}-{high}/"  # conversation_page.dart _computeRoomId: numeric order
    ana_room = await socket(ws, room_path, ana["access"])
    olga_room = await socket(ws, room_path, olga["access"])

    # First message: the thread is empty, then Ana sends on the room socket.
    status, empty = await http("GET", _fill(STEPS["thread"][3], me), token=ana["access"])
    assert (status, empty["data"]["results"]) == (200, [])
    sent = {"sender": ana["id"], "receiver": olga["id"], "content": "Hola, ¿sigue disponible?"}  # _sendMessage()
    await ana_room.send_to(text_data=json.dumps(sent))
    echo = await ana_room.receive_json_from(ECHO_WAIT)
    check_room_frame(echo, ana["id"], olga["id"], sent["content"])
    check_room_frame(await olga_room.receive_json_from(ECHO_WAIT), ana["id"], olga["id"], sent["content"])
    # The inbox frame on both sides: the counterpart is the other person for each owner.
    to_olga = await olga_inbox.receive_json_from(ECHO_WAIT)
    check_inbox_frame(to_olga, ana["id"], olga["id"], sent["content"])
    assert to_olga["counterpart_username"] == "ana"
    # Absolute, on the socket's own host (the app opens HTTP and sockets on one origin).
    picture = urlsplit(to_olga["counterpart_profile_picture"])
    assert (picture.scheme, picture.path) == ("http", urlsplit(uploaded["profile_picture_url"]).path)
    to_ana = await ana_inbox.receive_json_from(ECHO_WAIT)
    check_inbox_frame(to_ana, ana["id"], olga["id"], sent["content"])
    assert to_ana["counterpart_username"] == "olga"
    reply = {"sender": olga["id"], "receiver": ana["id"], "content": "Sí, ¿cuándo quieres verla?"}
    await olga_room.send_to(text_data=json.dumps(reply))
    check_room_frame(await olga_room.receive_json_from(ECHO_WAIT), olga["id"], ana["id"], reply["content"])
    check_room_frame(await ana_room.receive_json_from(ECHO_WAIT), olga["id"], ana["id"], reply["content"])
    check_inbox_frame(await ana_inbox.receive_json_from(ECHO_WAIT), olga["id"], ana["id"], reply["content"])
    check_inbox_frame(await olga_inbox.receive_json_from(ECHO_WAIT), olga["id"], ana["id"], reply["content"])

    thread = (await step("thread", me))["data"]["results"]
    assert [m["content"] for m in thread] == [reply["content"], sent["content"]]  # newest first; the app re-sorts
    assert thread[1]["id"] == echo["id"]

    conversations = (await step("conversations", me))["data"]["results"]
    assert [(c["counterpart"]["id"], c["unread_count"], c["last_message"]["content"]) for c in conversations] == [
        (olga["id"], 1, reply["content"])
    ]
    await step("mark read", me)
    assert (await step("conversations", me))["data"]["results"][0]["unread_count"] == 0

    # Notifications: the host backend publishes a like for the owner and an accepted match
    # for the tenant; the app's sockets get the old frames, its badge and page the rows.
    olga_property = await socket(ws, f"/ws/property-notifications/{olga['id']}/", olga["access"])
    ana_tenant = await socket(ws, f"/ws/tenant-notifications/{ana['id']}/", ana["access"])
    for notification_socket in (olga_property, ana_tenant):
        welcome = await notification_socket.receive_json_from(ECHO_WAIT)
        assert welcome["type"] == "connection_established"  # the app ignores it: no property_like/match type
    publish = database_sync_to_async(do_publish_notification)
    like = await publish(olga["id"], "property_like", "ana indicó interés en tu propiedad", title="Nuevo interés",
                         data={"property_id": 12, "property_title": "Casa en Equipetrol", "pending_requests_count": 1,
                               "interested_user": {"id": ana["id"], "username": "ana"}})  # fmt: skip
    accepted = await publish(ana["id"], "match_accepted_by_owner", "Tu solicitud de match fue aceptada", data={
        "property_id": 12, "property_title": "Casa en Equipetrol", "property_address": "Calle 1", "owner_name": "Olga",
        "owner_contact": {"email": "olga@example.test"}, "match_score": 97.5, "next_steps": ["Contactar al propietario"],
    })  # fmt: skip
    # chat_page.dart _openPropertyNotificationsSocket(): (data['event'] ?? data['type']).toString()
    # contains 'property_like' -> reload requests; int.tryParse(pending_requests_count.toString())
    frame = await olga_property.receive_json_from(ECHO_WAIT)
    assert "property_like" in str(frame.get("event") or frame.get("type")) and frame["pending_requests_count"] == 1
    # home_page.dart _openTenantNotificationsSocket() / _handleTenantMatchAcceptedEvent(): the type,
    # (notification_id ?? id).toString(), property_id int (or parseable), property_title, timestamp
    frame = await ana_tenant.receive_json_from(ECHO_WAIT)
    assert str(frame.get("event") or frame.get("type")) == "match_accepted_by_owner"
    check_reads(frame, {"notification_id": "any", "property_id": "int", "property_title": "any",
                        "timestamp": "DateTime?"}, "tenant notification frame")  # fmt: skip
    assert frame["notification_id"] == accepted.id
    for chat_socket in (ana_room, olga_room, ana_inbox, olga_inbox):
        assert await chat_socket.receive_nothing(QUIET)  # a notification is no chat message

    olga_me = dict(olga)
    assert (await step("badge", olga_me))["count"] == 1
    page = (await step("notifications page", olga_me))["data"]["results"]
    assert [(n["id"], n["title"], n["message"], n["is_read"]) for n in page] == [
        (like.id, "Nuevo interés", "ana indicó interés en tu propiedad", False)
    ]
    olga_me["notification_id"] = page[0]["id"]
    await step("mark a notification read", olga_me)
    badge = await step("badge", olga_me)
    assert (badge["count"], badge["data"]["results"]) == (0, [])

    # Clear: gone from Ana's thread and list, still there for Olga.
    await step("clear", me)
    status, cleared = await http("GET", _fill(STEPS["thread"][3], me), token=ana["access"])
    assert (status, cleared["data"]["results"]) == (200, [])
    status, listing = await http("GET", "/api/messages/conversations/", token=ana["access"])
    assert (status, listing["data"]["results"]) == (200, [])
    status, theirs = await http("GET", f"/api/messages/thread/?other_user_id={ana['id']}&page=1&page_size=50",
                                token=olga["access"])  # fmt: skip
    assert (status, len(theirs["data"]["results"])) == (200, 2)

    # The phone slept: Ana's stored access token expired. The room socket still opens with
    # it (the chat screen opens it before any HTTP call and never reopens it); REST answers
    # 401 in the envelope, which makes the app refresh and retry.
    expired = AccessToken.for_user(await database_sync_to_async(_user)(ana["id"]))
    expired.set_exp(lifetime=timedelta(minutes=-1))
    expired = str(expired)
    woken_room = await socket(ws, room_path, expired)
    status, refused = await http("GET", "/api/messages/conversations/", token=expired)
    assert status == 401 and refused["success"] is False and isinstance(refused["message"], str)
    refreshed = (await step("token refresh", me))["data"]
    me["access"] = refreshed["access"]
    await step("current user after the refresh", me)
    again = {"sender": ana["id"], "receiver": olga["id"], "content": "¿Mañana a las 10?"}
    await woken_room.send_to(text_data=json.dumps(again))
    check_room_frame(await woken_room.receive_json_from(ECHO_WAIT), ana["id"], olga["id"], again["content"])
    check_room_frame(await olga_room.receive_json_from(ECHO_WAIT), ana["id"], olga["id"], again["content"])

    # Logout as the app sends it: {} and the bearer token; that token is then refused, and
    # a socket opened with it is closed.
    fresh_inbox = await socket(ws, f"/ws/chat/inbox/{ana['id']}/", me["access"])
    await step("logout", me)
    status, after = await http("GET", "/api/users/me/", token=me["access"])
    assert status == 401 and after["success"] is False
    closed = await fresh_inbox.receive_output(ECHO_WAIT)
    assert (closed["type"], closed.get("code")) == ("websocket.close", 4401), closed


def _user(user_id):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.get(pk=user_id)
