"""The chat REST API (docs/protocol.md, client-contract.md): who may call what, the exact
shapes the app reads, per-user clear, unread counts, edits and deletes, idempotent
sends, cursor and page pagination, and bad input that stores nothing."""

import json
import re
from datetime import datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from rest_framework_simplejwt.tokens import AccessToken

from habitto_accounts.models import Profile
from habitto_chat import actions
from habitto_chat.models import Conversation, Message, Participant
from habitto_chat.tokens import revoke_access_token

pytestmark = pytest.mark.django_db
User = get_user_model()

API = "/api/messages/"
CONVERSATIONS = API + "conversations/"
THREAD = API + "thread/"
MARK_THREAD_READ = API + "mark_thread_read/"
CLEAR = API + "clear_conversation/"
MESSAGE_KEYS = {"id", "sender", "receiver", "content", "created_at", "edited_at", "is_read", "client_id"}
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$")


# --- helpers -------------------------------------------------------------------------


def data_of(response, status):
    """Assert the status and the success envelope; return its payload."""
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"success", "message", "data"}
    assert body["success"] is True
    assert isinstance(body["message"], str) and body["message"]
    return body["data"]


def error_of(response, status):
    """Assert the status and the error envelope; return its detail."""
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"success", "message", "data"}
    assert body["success"] is False
    assert isinstance(body["message"], str) and body["message"].strip()
    return body["data"]


def send(sender, receiver, content="hi", client_id=None):
    """Store a message through the service layer (what REST and sockets call)."""
    return Message.objects.get(pk=actions.do_send_message(sender.pk, receiver.pk, content, client_id).message.id)


def thread_ids(client, other, **params):
    page = data_of(client.get(THREAD, {"other_user_id": other.pk, **params}), 200)
    return [m["id"] for m in page["results"]]


def conversations(client, **params):
    return data_of(client.get(CONVERSATIONS, params), 200)["results"]


def unread_of(client, other):
    """The unread count the conversation list shows for `other` (None: not listed)."""
    for item in conversations(client):
        if item["counterpart"]["id"] == other.pk:
            return item["unread_count"]
    return None


def side(user, other):
    return Participant.objects.get(user=user, other_user=other)


@pytest.fixture
def alice(make_user):
    return make_user("alice", first_name="Alice", last_name="Anderson")


@pytest.fixture
def bob(make_user):
    return make_user("bob", first_name="Bob", last_name="Brown")


@pytest.fixture
def carol(make_user):
    return make_user("carol")


@pytest.fixture
def as_alice(client_for, alice):
    return client_for(alice)


@pytest.fixture
def as_bob(client_for, bob):
    return client_for(bob)


@pytest.fixture
def as_carol(client_for, carol):
    return client_for(carol)


# --- authorization matrix ------------------------------------------------------------

# (method, path, body); {mid} is a message alice sent to bob, {bob} bob's id.
ENDPOINTS = [
    ("get", CONVERSATIONS, None),
    ("get", THREAD + "?other_user_id={bob}", None),
    ("get", API, None),
    ("post", API, {"receiver": "{bob}", "content": "hello"}),
    ("get", API + "{mid}/", None),
    ("patch", API + "{mid}/", {"content": "edited"}),
    ("put", API + "{mid}/", {"content": "edited"}),
    ("delete", API + "{mid}/", None),
    ("post", API + "{mid}/mark_read/", None),
    ("post", MARK_THREAD_READ, {"other_user_id": "{bob}"}),
    ("post", CLEAR, {"other_user_id": "{bob}"}),
    ("get", API + "unread/", None),
]


def _call(client, method, path, body, **ids):
    path = path.format(**ids)
    if body is not None:
        body = {k: (int(v.format(**ids)) if isinstance(v, str) and v.startswith("{") else v) for k, v in body.items()}
        return getattr(client, method)(path, body, format="json")
    return getattr(client, method)(path)


@pytest.mark.parametrize("method,path,body", ENDPOINTS, ids=[f"{m} {p}" for m, p, _ in ENDPOINTS])
def test_anonymous_gets_401_everywhere(client_for, alice, bob, method, path, body):
    """Without a token every chat endpoint answers 401 in the envelope and changes nothing."""
    message = send(alice, bob, "secret")
    detail = error_of(_call(client_for(None), method, path, body, mid=message.pk, bob=bob.pk), 401)
    assert detail == {"code": "not_authenticated"}
    assert list(Message.objects.values_list("content", flat=True)) == ["secret"]
    assert side(bob, alice).unread_count == 1


# What a stranger (carol) and a participant (alice, the sender) get from each endpoint.
STRANGER_STATUS = [200, 200, 200, 201, 404, 404, 404, 404, 404, 200, 200, 200]
PARTICIPANT_STATUS = [200, 200, 200, 201, 200, 200, 200, 200, 200, 200, 200, 200]


@pytest.mark.parametrize(
    "method,path,body,status", [(*e, s) for e, s in zip(ENDPOINTS, STRANGER_STATUS)], ids=[f"{m} {p}" for m, p, _ in ENDPOINTS]
)
def test_stranger_matrix(as_carol, alice, bob, method, path, body, status):
    """A stranger gets 404 for the message and empty/no-op answers elsewhere; alice and bob's data is untouched."""
    message = send(alice, bob, "secret")
    response = _call(as_carol, method, path, body, mid=message.pk, bob=bob.pk)
    assert response.status_code == status, response.content
    assert "secret" not in response.content.decode()
    stored = Message.objects.get(pk=message.pk)
    assert (stored.content, stored.edited_at) == ("secret", None)
    assert (side(bob, alice).unread_count, side(alice, bob).cleared_before_id) == (1, 0)


@pytest.mark.parametrize(
    "method,path,body,status", [(*e, s) for e, s in zip(ENDPOINTS, PARTICIPANT_STATUS)], ids=[f"{m} {p}" for m, p, _ in ENDPOINTS]
)
def test_participant_matrix(as_alice, alice, bob, method, path, body, status):
    """The sender gets a success envelope from every endpoint."""
    message = send(alice, bob, "mine")
    data_of(_call(as_alice, method, path, body, mid=message.pk, bob=bob.pk), status)


@pytest.mark.parametrize(
    "header",
    ["Bearer not-a-jwt", "Bearer ", "Token abc", "Bearer a.b.c"],
)
def test_malformed_token_gets_401(client_for, alice, header):
    """A malformed Authorization header is a 401, never anonymous access."""
    client = client_for(None)
    client.credentials(HTTP_AUTHORIZATION=header)
    error_of(client.get(CONVERSATIONS), 401)


def test_expired_token_gets_401(client_for, alice):
    """An expired access token is refused."""
    token = AccessToken.for_user(alice)
    token.set_exp(lifetime=-timedelta(seconds=1))
    client = client_for(None)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert error_of(client.get(CONVERSATIONS), 401)["code"] == "token_not_valid"


def test_revoked_access_token_gets_401(client_for, alice, bob):
    """After revoke_access_token (logout) the same access token is refused."""
    send(bob, alice)
    token = AccessToken.for_user(alice)
    client = client_for(None)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert data_of(client.get(CONVERSATIONS), 200)["count"] == 1
    revoke_access_token(token)
    response = client.get(CONVERSATIONS)
    assert error_of(response, 401) == {"code": "token_not_valid"}
    assert response.json()["message"] == "Token has been revoked."
    error_of(client.post(API, {"receiver": bob.pk, "content": "x"}, format="json"), 401)
    assert Message.objects.count() == 1


def test_inactive_user_token_gets_401(client_for, alice):
    """A deactivated user's still-valid token is refused."""
    client = client_for(alice)
    User.objects.filter(pk=alice.pk).update(is_active=False)
    error_of(client.get(CONVERSATIONS), 401)


def test_stranger_sees_empty_conversation_list(as_carol, alice, bob):
    """A user outside the conversation gets an empty list, not others' conversations."""
    send(alice, bob)
    assert data_of(as_carol.get(CONVERSATIONS), 200) == {"count": 0, "next": None, "previous": None, "results": []}


def test_stranger_sees_empty_thread_with_a_participant(as_carol, alice, bob):
    """carol asking for 'her thread with bob' never shows alice and bob's messages."""
    send(alice, bob)
    assert data_of(as_carol.get(THREAD, {"other_user_id": bob.pk}), 200)["results"] == []
    assert data_of(as_carol.get(API, {"other_user_id": alice.pk}), 200)["results"] == []


def test_stranger_message_list_is_empty(as_carol, alice, bob):
    """GET /api/messages/ lists only the caller's own messages."""
    send(alice, bob)
    assert data_of(as_carol.get(API), 200) == {"count": 0, "next": None, "previous": None, "results": []}


@pytest.mark.parametrize("method", ["get", "patch", "put", "delete"])
def test_stranger_gets_404_on_a_message(as_carol, alice, bob, method):
    """Someone else's message does not exist for a stranger, whatever the verb."""
    message = send(alice, bob, "private")
    detail = error_of(getattr(as_carol, method)(f"{API}{message.pk}/", {"content": "pwned"}, format="json"), 404)
    assert detail == {"code": "unknown_message"}
    assert Message.objects.get().content == "private"


def test_stranger_mark_read_is_404(as_carol, alice, bob):
    """A stranger cannot mark someone else's message read."""
    message = send(alice, bob)
    assert error_of(as_carol.post(f"{API}{message.pk}/mark_read/"), 404) == {"code": "unknown_message"}
    assert side(bob, alice).unread_count == 1
    assert side(bob, alice).last_read_id == 0


def test_stranger_mark_thread_read_touches_nothing(as_carol, alice, bob, carol):
    """mark_thread_read by a stranger only concerns the stranger's own (absent) thread."""
    send(alice, bob)
    data = data_of(as_carol.post(MARK_THREAD_READ, {"other_user_id": alice.pk}, format="json"), 200)
    assert data == {"other_user_id": alice.pk, "unread_total": 0}
    assert side(bob, alice).unread_count == 1
    assert not Participant.objects.filter(user=carol).exists()


def test_stranger_clear_touches_nothing(as_carol, as_alice, as_bob, alice, bob):
    """clear_conversation by a stranger clears nothing of alice and bob's."""
    message = send(alice, bob)
    data = data_of(as_carol.post(CLEAR, {"other_user_id": bob.pk}, format="json"), 200)
    assert data == {"other_user_id": bob.pk, "cleared_before_id": 0}
    assert thread_ids(as_alice, bob) == [message.pk]
    assert thread_ids(as_bob, alice) == [message.pk]


def test_participants_get_200_on_every_read(as_alice, as_bob, alice, bob):
    """Sender and receiver both read the conversation, thread, list and message."""
    message = send(alice, bob)
    for me, other in ((as_alice, bob), (as_bob, alice)):
        assert [c["last_message"]["id"] for c in conversations(me)] == [message.pk]
        assert thread_ids(me, other) == [message.pk]
        assert [m["id"] for m in data_of(me.get(API), 200)["results"]] == [message.pk]
        assert data_of(me.get(f"{API}{message.pk}/"), 200)["id"] == message.pk


def test_receiver_cannot_edit_or_delete(as_bob, alice, bob):
    """Only the sender edits or deletes: the receiver gets 404 and nothing changes."""
    message = send(alice, bob, "original")
    assert error_of(as_bob.patch(f"{API}{message.pk}/", {"content": "forged"}, format="json"), 404) == {
        "code": "unknown_message"
    }
    assert error_of(as_bob.delete(f"{API}{message.pk}/"), 404) == {"code": "unknown_message"}
    stored = Message.objects.get()
    assert (stored.content, stored.edited_at) == ("original", None)


def test_sender_edits_with_patch_and_put(as_alice, alice, bob):
    """The sender may edit their message (PATCH and PUT)."""
    message = send(alice, bob, "v1")
    assert data_of(as_alice.patch(f"{API}{message.pk}/", {"content": "v2"}, format="json"), 200)["content"] == "v2"
    assert data_of(as_alice.put(f"{API}{message.pk}/", {"content": "v3"}, format="json"), 200)["content"] == "v3"
    assert Message.objects.get().content == "v3"


def test_sender_deletes(as_alice, alice, bob):
    """The sender may delete their message; the response names it."""
    message = send(alice, bob)
    assert data_of(as_alice.delete(f"{API}{message.pk}/"), 200) == {"id": message.pk, "deleted": True}
    assert Message.objects.count() == 0


def test_sender_mark_read_of_own_message_is_a_no_op(as_alice, alice, bob):
    """The sender marking their own message read changes nobody's read state."""
    message = send(alice, bob)
    assert data_of(as_alice.post(f"{API}{message.pk}/mark_read/"), 200)["is_read"] is False
    assert side(bob, alice).unread_count == 1
    assert side(alice, bob).last_read_id == 0


# --- sender and flags are not client-writable ----------------------------------------


def test_forged_sender_is_refused(as_alice, alice, bob, carol):
    """POST with someone else as `sender` is a 403 and stores nothing."""
    response = as_alice.post(API, {"sender": bob.pk, "receiver": carol.pk, "content": "I am bob"}, format="json")
    error_of(response, 403)
    assert Message.objects.count() == 0


def test_own_sender_is_accepted(as_alice, alice, bob):
    """The app may send `sender` when it names the caller."""
    data = data_of(as_alice.post(API, {"sender": alice.pk, "receiver": bob.pk, "content": "hi"}, format="json"), 201)
    assert (data["sender"], data["receiver"]) == (alice.pk, bob.pk)


def test_client_flags_on_create_have_no_effect(as_alice, alice, bob):
    """is_read, id, created_at, edited_at and deleted_for_* sent by the client are ignored."""
    body = {
        "receiver": bob.pk,
        "content": "hi",
        "is_read": True,
        "id": 424242,
        "created_at": "2001-01-01T00:00:00Z",
        "edited_at": "2001-01-01T00:00:00Z",
        "deleted_for_sender": True,
        "deleted_for_receiver": True,
        "conversation": 999,
    }
    data = data_of(as_alice.post(API, body, format="json"), 201)
    stored = Message.objects.get()
    assert stored.pk != 424242 and data["id"] == stored.pk
    assert data["is_read"] is False and data["edited_at"] is None
    assert stored.created_at.year == datetime.now().year
    assert side(bob, alice).unread_count == 1
    assert side(bob, alice).last_read_id == 0


def test_client_fields_on_edit_have_no_effect(as_alice, alice, bob, carol):
    """PATCH changes the content only: receiver, sender and is_read stay as they were."""
    message = send(alice, bob, "v1")
    body = {"content": "v2", "receiver": carol.pk, "sender": carol.pk, "is_read": True, "created_at": "2001-01-01T00:00:00Z"}
    data = data_of(as_alice.patch(f"{API}{message.pk}/", body, format="json"), 200)
    assert (data["sender"], data["receiver"], data["is_read"], data["content"]) == (alice.pk, bob.pk, False, "v2")
    stored = Message.objects.get()
    assert (stored.sender_id, stored.receiver_id, stored.created_at) == (alice.pk, bob.pk, message.created_at)
    assert side(bob, alice).unread_count == 1


# --- contract shapes -----------------------------------------------------------------


def assert_message_shape(item):
    assert set(item) == MESSAGE_KEYS
    assert type(item["id"]) is int and type(item["sender"]) is int and type(item["receiver"]) is int
    assert type(item["content"]) is str
    assert type(item["is_read"]) is bool
    assert ISO_Z.match(item["created_at"]), item["created_at"]
    assert datetime.fromisoformat(item["created_at"].replace("Z", "+00:00")).tzinfo is not None
    assert item["edited_at"] is None or ISO_Z.match(item["edited_at"])


def test_post_returns_the_message_object_field_by_field(as_alice, alice, bob):
    """201 with exactly the message object of the protocol."""
    data = data_of(as_alice.post(API, {"receiver": bob.pk, "content": "Grüezi 👋"}, format="json"), 201)
    assert_message_shape(data)
    stored = Message.objects.get()
    assert data == {
        "id": stored.pk,
        "sender": alice.pk,
        "receiver": bob.pk,
        "content": "Grüezi 👋",
        "created_at": stored.created_at.isoformat().replace("+00:00", "Z"),
        "edited_at": None,
        "is_read": False,
        "client_id": None,
    }


def test_thread_page_shape(as_bob, alice, bob):
    """The thread is a paginated payload of message objects, newest first."""
    first, second = send(alice, bob, "one"), send(bob, alice, "two")
    data = data_of(as_bob.get(THREAD, {"other_user_id": alice.pk}), 200)
    assert set(data) == {"count", "next", "previous", "results"}
    assert (data["count"], data["next"], data["previous"]) == (2, None, None)
    for item in data["results"]:
        assert_message_shape(item)
    assert [(m["id"], m["sender"], m["receiver"], m["content"]) for m in data["results"]] == [
        (second.pk, bob.pk, alice.pk, "two"),
        (first.pk, alice.pk, bob.pk, "one"),
    ]


def test_conversation_item_shape(as_bob, alice, bob):
    """Each conversation: counterpart object, last_message object, int unread_count."""
    message = send(alice, bob, "hello bob")
    data = data_of(as_bob.get(CONVERSATIONS), 200)
    assert set(data) == {"count", "next", "previous", "results"}
    assert data["count"] == 1
    [item] = data["results"]
    assert set(item) == {"counterpart", "last_message", "unread_count"}
    assert item["counterpart"] == {
        "id": alice.pk,
        "username": "alice",
        "full_name": "Alice Anderson",
        "profile_picture": None,
    }
    assert_message_shape(item["last_message"])
    assert item["last_message"]["id"] == message.pk
    assert item["last_message"]["content"] == "hello bob"
    assert type(item["unread_count"]) is int and item["unread_count"] == 1


def test_counterpart_is_the_other_person_for_each_side(as_alice, as_bob, alice, bob):
    """The sender's list shows the receiver and the receiver's list the sender."""
    send(alice, bob)
    assert [c["counterpart"]["id"] for c in conversations(as_alice)] == [bob.pk]
    assert [c["counterpart"]["id"] for c in conversations(as_bob)] == [alice.pk]


def test_profile_picture_is_an_absolute_url(as_bob, alice, bob):
    """A counterpart picture is an absolute URL (the app cannot resolve paths)."""
    Profile.objects.filter(user=alice).update(profile_picture="profiles/alice.png")
    send(alice, bob)
    assert conversations(as_bob)[0]["counterpart"]["profile_picture"] == "http://testserver/media/profiles/alice.png"


@pytest.mark.parametrize(
    "first,last,expected",
    [
        ("Dana", "Doe", "Dana Doe"),
        ("  Dana ", "", "Dana"),
        ("", "Doe", "Doe"),
        ("", "", "dana_user"),
        ("   ", "  ", "dana_user"),
    ],
)
def test_full_name_is_first_and_last_trimmed_else_username(client_for, make_user, bob, first, last, expected):
    """full_name = first + last, trimmed, falling back to the username."""
    dana = make_user("dana_user", first_name=first, last_name=last)
    send(dana, bob)
    assert conversations(client_for(bob))[0]["counterpart"]["full_name"] == expected


def test_conversations_most_recent_first(as_alice, alice, bob, carol):
    """The list is ordered by the newest message, and moves when a new one arrives."""
    send(alice, bob)
    send(carol, alice)
    assert [c["counterpart"]["id"] for c in conversations(as_alice)] == [carol.pk, bob.pk]
    send(bob, alice)
    assert [c["counterpart"]["id"] for c in conversations(as_alice)] == [bob.pk, carol.pk]


def test_conversation_without_message_is_omitted(as_alice, alice, bob):
    """A conversation row with no message never appears (a null last_message breaks the app)."""
    from habitto_chat.conversations import get_or_create_conversation

    get_or_create_conversation(alice.pk, bob.pk)
    assert data_of(as_alice.get(CONVERSATIONS), 200)["count"] == 0
    assert conversations(as_alice) == []


def test_last_message_is_read_flag_reflects_the_receiver(as_alice, as_bob, alice, bob):
    """is_read of a sent message turns true once the receiver has read it."""
    message = send(alice, bob)
    assert conversations(as_alice)[0]["last_message"]["is_read"] is False
    data_of(as_bob.post(f"{API}{message.pk}/mark_read/"), 200)
    assert conversations(as_alice)[0]["last_message"]["is_read"] is True
    assert conversations(as_bob)[0]["last_message"]["is_read"] is True
    assert data_of(as_alice.get(f"{API}{message.pk}/"), 200)["is_read"] is True


def test_error_envelope_for_unknown_route(as_alice):
    """A path outside the API still answers in the envelope."""
    error_of(as_alice.get(API + "1/nope/"), 404)


# --- per-user clear ------------------------------------------------------------------


def test_clear_hides_for_caller_only(as_alice, as_bob, alice, bob):
    """After alice clears, her thread and list are empty; bob still sees everything."""
    messages = [send(alice, bob, "a"), send(bob, alice, "b")]
    data = data_of(as_alice.post(CLEAR, {"other_user_id": bob.pk}, format="json"), 200)
    assert data == {"other_user_id": bob.pk, "cleared_before_id": messages[-1].pk}
    assert thread_ids(as_alice, bob) == []
    assert data_of(as_alice.get(THREAD, {"other_user_id": bob.pk}), 200)["count"] == 0
    assert conversations(as_alice) == []
    assert data_of(as_alice.get(API), 200)["results"] == []
    error_of(as_alice.get(f"{API}{messages[0].pk}/"), 404)
    assert thread_ids(as_bob, alice) == [messages[1].pk, messages[0].pk]
    assert [c["last_message"]["id"] for c in conversations(as_bob)] == [messages[1].pk]
    assert Message.objects.count() == 2


def test_message_after_clear_shows_again(as_alice, as_bob, alice, bob):
    """A message arriving after the clear is visible, and only that one."""
    send(alice, bob, "old")
    data_of(as_alice.post(CLEAR, {"other_user_id": bob.pk}, format="json"), 200)
    new = send(bob, alice, "new")
    assert thread_ids(as_alice, bob) == [new.pk]
    [item] = conversations(as_alice)
    assert (item["last_message"]["id"], item["unread_count"]) == (new.pk, 1)
    assert len(thread_ids(as_bob, alice)) == 2


def test_clear_of_empty_or_unknown_conversation(as_alice, alice, bob):
    """Clearing a conversation that has no message is a 200 that clears nothing."""
    data = data_of(as_alice.post(CLEAR, {"other_user_id": bob.pk}, format="json"), 200)
    assert data == {"other_user_id": bob.pk, "cleared_before_id": 0}


def test_clear_twice_keeps_position(as_alice, alice, bob):
    """A second clear without new messages keeps the same position."""
    message = send(alice, bob)
    for _ in range(2):
        data = data_of(as_alice.post(CLEAR, {"other_user_id": bob.pk}, format="json"), 200)
        assert data["cleared_before_id"] == message.pk
    assert side(alice, bob).cleared_before_id == message.pk


def test_clear_does_not_touch_message_rows(as_alice, alice, bob):
    """The clear is a per-user position: message rows are untouched."""
    send(alice, bob, "a")
    send(bob, alice, "b")
    before = list(Message.objects.order_by("id").values())
    data_of(as_alice.post(CLEAR, {"other_user_id": bob.pk}, format="json"), 200)
    assert list(Message.objects.order_by("id").values()) == before


# --- unread counts -------------------------------------------------------------------


def test_unread_counts_increment_per_received_message(as_alice, as_bob, alice, bob):
    """Each received message adds one unread for the receiver only."""
    for n in range(1, 4):
        send(alice, bob, f"m{n}")
        assert unread_of(as_bob, alice) == n
        assert unread_of(as_alice, bob) == 0
    assert data_of(as_bob.get(API + "unread/"), 200) == {"unread_total": 3}


def test_mark_read_of_a_message_marks_up_to_it(as_bob, alice, bob):
    """mark_read of the 2nd of 3 leaves one unread; the response shows it read."""
    messages = [send(alice, bob, f"m{n}") for n in range(3)]
    data = data_of(as_bob.post(f"{API}{messages[1].pk}/mark_read/"), 200)
    assert (data["id"], data["is_read"]) == (messages[1].pk, True)
    assert unread_of(as_bob, alice) == 1
    assert [m["is_read"] for m in data_of(as_bob.get(THREAD, {"other_user_id": alice.pk}), 200)["results"]] == [
        False,
        True,
        True,
    ]


def test_mark_read_of_an_older_message_does_not_go_back(as_bob, alice, bob):
    """Marking an older message after a newer one keeps the newer read position."""
    messages = [send(alice, bob) for _ in range(3)]
    data_of(as_bob.post(f"{API}{messages[2].pk}/mark_read/"), 200)
    data_of(as_bob.post(f"{API}{messages[0].pk}/mark_read/"), 200)
    assert unread_of(as_bob, alice) == 0
    assert side(bob, alice).last_read_id == messages[2].pk


def test_mark_thread_read(as_bob, alice, bob, carol):
    """mark_thread_read zeroes that thread and reports the caller's remaining total."""
    for _ in range(3):
        send(alice, bob)
    send(carol, bob)
    data = data_of(as_bob.post(MARK_THREAD_READ, {"other_user_id": alice.pk}, format="json"), 200)
    assert data == {"other_user_id": alice.pk, "unread_total": 1}
    assert unread_of(as_bob, alice) == 0
    assert unread_of(as_bob, carol) == 1


def test_mark_thread_read_then_new_message_counts_one(as_bob, alice, bob):
    """After reading, only newer messages are unread."""
    send(alice, bob)
    data_of(as_bob.post(MARK_THREAD_READ, {"other_user_id": alice.pk}, format="json"), 200)
    send(alice, bob)
    assert unread_of(as_bob, alice) == 1


def test_unread_after_clear(as_bob, alice, bob):
    """Clearing zeroes the unread count; a later message counts one."""
    send(alice, bob)
    send(alice, bob)
    data_of(as_bob.post(CLEAR, {"other_user_id": alice.pk}, format="json"), 200)
    assert side(bob, alice).unread_count == 0
    assert data_of(as_bob.get(API + "unread/"), 200) == {"unread_total": 0}
    send(alice, bob)
    assert unread_of(as_bob, alice) == 1


def test_delete_of_unread_message_decrements(as_alice, as_bob, alice, bob):
    """Deleting an unread message takes it off the receiver's unread count."""
    send(alice, bob)
    second = send(alice, bob)
    data_of(as_alice.delete(f"{API}{second.pk}/"), 200)
    assert unread_of(as_bob, alice) == 1


def test_delete_of_read_message_keeps_count(as_alice, as_bob, alice, bob):
    """Deleting an already read message does not change the unread count."""
    first = send(alice, bob)
    data_of(as_bob.post(f"{API}{first.pk}/mark_read/"), 200)
    send(alice, bob)
    data_of(as_alice.delete(f"{API}{first.pk}/"), 200)
    assert unread_of(as_bob, alice) == 1


def test_delete_of_cleared_unread_message_keeps_zero(as_alice, as_bob, alice, bob):
    """A message the receiver cleared is not counted twice when deleted."""
    first = send(alice, bob)
    data_of(as_bob.post(CLEAR, {"other_user_id": alice.pk}, format="json"), 200)
    send(alice, bob)
    data_of(as_alice.delete(f"{API}{first.pk}/"), 200)
    assert unread_of(as_bob, alice) == 1


# --- edit and delete -------------------------------------------------------------------


def test_edit_sets_content_and_edited_at(as_alice, as_bob, alice, bob):
    """An edit changes content, sets edited_at (ISO, Z) and shows in both lists."""
    message = send(alice, bob, "tpyo")
    data = data_of(as_alice.patch(f"{API}{message.pk}/", {"content": "typo"}, format="json"), 200)
    assert_message_shape(data)
    assert (data["id"], data["content"]) == (message.pk, "typo")
    assert ISO_Z.match(data["edited_at"])
    assert conversations(as_bob)[0]["last_message"]["content"] == "typo"
    assert data_of(as_bob.get(THREAD, {"other_user_id": alice.pk}), 200)["results"][0]["edited_at"] == data["edited_at"]


def test_delete_moves_last_message_back(as_alice, as_bob, alice, bob):
    """Deleting the newest message shows the previous one as last_message on both sides."""
    first = send(alice, bob, "first")
    last = send(alice, bob, "last")
    data_of(as_alice.delete(f"{API}{last.pk}/"), 200)
    for client in (as_alice, as_bob):
        [item] = conversations(client)
        assert (item["last_message"]["id"], item["last_message"]["content"]) == (first.pk, "first")
    assert thread_ids(as_bob, alice) == [first.pk]


def test_delete_of_older_message_keeps_last_message(as_alice, alice, bob):
    """Deleting an older message leaves the pointer on the newest one."""
    first = send(alice, bob)
    last = send(bob, alice)
    data_of(as_alice.delete(f"{API}{first.pk}/"), 200)
    assert conversations(as_alice)[0]["last_message"]["id"] == last.pk


def test_delete_of_only_message_removes_conversation(as_alice, as_bob, alice, bob):
    """When its only message is deleted the conversation disappears for both."""
    message = send(alice, bob)
    data_of(as_alice.delete(f"{API}{message.pk}/"), 200)
    assert conversations(as_alice) == []
    assert conversations(as_bob) == []
    assert unread_of(as_bob, alice) is None
    assert side(bob, alice).unread_count == 0


def test_delete_twice_is_404(as_alice, alice, bob):
    """A deleted message is gone: a second delete or get is 404."""
    message = send(alice, bob)
    data_of(as_alice.delete(f"{API}{message.pk}/"), 200)
    error_of(as_alice.delete(f"{API}{message.pk}/"), 404)
    error_of(as_alice.get(f"{API}{message.pk}/"), 404)


def test_delete_after_clear_keeps_conversation_hidden(as_alice, alice, bob):
    """If alice cleared, deleting the newest message does not bring older ones back."""
    first = send(alice, bob)
    second = send(alice, bob)
    data_of(as_alice.post(CLEAR, {"other_user_id": bob.pk}, format="json"), 200)
    data_of(as_alice.delete(f"{API}{second.pk}/"), 200)
    assert conversations(as_alice) == []
    assert thread_ids(as_alice, bob) == []
    assert Message.objects.filter(pk=first.pk).exists()


# --- idempotent sends ----------------------------------------------------------------


def test_repeated_client_id_returns_the_first_message(as_alice, alice, bob):
    """The same client_id twice: 201 then 200 with the same id; one row, one unread."""
    body = {"receiver": bob.pk, "content": "once", "client_id": "c-1"}
    first = data_of(as_alice.post(API, body, format="json"), 201)
    second = data_of(as_alice.post(API, body, format="json"), 200)
    assert first == second
    assert first["client_id"] == "c-1"
    assert Message.objects.count() == 1
    assert side(bob, alice).unread_count == 1


def test_client_id_is_per_sender(as_alice, as_bob, alice, bob):
    """Two senders may use the same client_id."""
    a = data_of(as_alice.post(API, {"receiver": bob.pk, "content": "a", "client_id": "same"}, format="json"), 201)
    b = data_of(as_bob.post(API, {"receiver": alice.pk, "content": "b", "client_id": "same"}, format="json"), 201)
    assert a["id"] != b["id"]
    assert Message.objects.count() == 2


def test_without_client_id_each_post_stores(as_alice, alice, bob):
    """Without client_id two identical posts are two messages."""
    for _ in range(2):
        data_of(as_alice.post(API, {"receiver": bob.pk, "content": "x"}, format="json"), 201)
    assert Message.objects.count() == 2


# --- pagination ----------------------------------------------------------------------


def test_thread_page_and_page_size(as_alice, alice, bob):
    """page/page_size slice newest first; `next` continues by before_id cursor."""
    ids = [send(alice, bob, str(n)).pk for n in range(5)][::-1]
    page1 = data_of(as_alice.get(THREAD, {"other_user_id": bob.pk, "page_size": 2}), 200)
    assert page1["count"] == 5 and page1["previous"] is None
    assert [m["id"] for m in page1["results"]] == ids[:2]
    assert f"before_id={ids[1]}" in page1["next"] and "page_size=2" in page1["next"]
    assert "page=" not in page1["next"].replace("page_size=", "")
    send(bob, alice, "arrives meanwhile")  # following next must not repeat ids[1]
    page2 = data_of(as_alice.get(page1["next"]), 200)
    assert [m["id"] for m in page2["results"]] == ids[2:4]
    assert "page=1" in data_of(as_alice.get(THREAD, {"other_user_id": bob.pk, "page_size": 2, "page": 2}), 200)["previous"]
    page3 = data_of(as_alice.get(page2["next"]), 200)
    assert [m["id"] for m in page3["results"]] == ids[4:]
    assert page3["next"] is None


def test_page_past_the_end_is_empty(as_alice, alice, bob):
    """A page after the last one is an empty 200, not an error."""
    send(alice, bob)
    data = data_of(as_alice.get(THREAD, {"other_user_id": bob.pk, "page": 7}), 200)
    assert (data["count"], data["results"], data["next"]) == (1, [], None)


def test_default_page_size_is_50(as_alice, alice, bob):
    """Without page_size a page holds 50 messages."""
    for n in range(51):
        send(alice, bob, str(n))
    data = data_of(as_alice.get(THREAD, {"other_user_id": bob.pk}), 200)
    assert (len(data["results"]), data["count"]) == (50, 51)
    assert data["next"] is not None


def test_page_size_100_is_accepted(as_alice, alice, bob):
    """page_size 100 (the maximum) is accepted."""
    send(alice, bob)
    assert data_of(as_alice.get(THREAD, {"other_user_id": bob.pk, "page_size": 100}), 200)["count"] == 1


def test_conversation_pages(as_alice, make_user, alice):
    """The conversation list pages with page/page_size, most recent first."""
    others = [make_user() for _ in range(5)]
    for other in others:
        send(other, alice)
    page1 = data_of(as_alice.get(CONVERSATIONS, {"page_size": 3}), 200)
    assert page1["count"] == 5
    assert [c["counterpart"]["id"] for c in page1["results"]] == [o.pk for o in others[::-1][:3]]
    page2 = data_of(as_alice.get(page1["next"]), 200)
    assert [c["counterpart"]["id"] for c in page2["results"]] == [o.pk for o in others[::-1][3:]]
    assert page2["next"] is None


def test_message_list_pages_and_filters(as_alice, alice, bob, carol):
    """GET /api/messages/ lists the caller's messages newest first; other_user_id filters."""
    a = send(alice, bob)
    b = send(carol, alice)
    c = send(bob, carol)  # not alice's
    data = data_of(as_alice.get(API), 200)
    assert (data["count"], [m["id"] for m in data["results"]]) == (2, [b.pk, a.pk])
    assert [m["id"] for m in data_of(as_alice.get(API, {"other_user_id": bob.pk}), 200)["results"]] == [a.pk]
    assert c.pk not in [m["id"] for m in data["results"]]


def test_before_id_cursor_walks_back(as_alice, alice, bob):
    """?before_id= gives older messages, newest first; next continues from the last."""
    ids = [send(alice, bob, str(n)).pk for n in range(7)]
    page = data_of(as_alice.get(THREAD, {"other_user_id": bob.pk, "before_id": ids[6], "page_size": 3}), 200)
    assert [m["id"] for m in page["results"]] == [ids[5], ids[4], ids[3]]
    assert page["count"] is None and page["previous"] is None
    assert f"before_id={ids[3]}" in page["next"]
    page = data_of(as_alice.get(page["next"]), 200)
    assert [m["id"] for m in page["results"]] == [ids[2], ids[1], ids[0]]
    assert page["next"] is None


def test_after_id_cursor_catches_up_oldest_first(as_alice, alice, bob):
    """?after_id= gives the newer messages, oldest first."""
    ids = [send(alice, bob, str(n)).pk for n in range(5)]
    page = data_of(as_alice.get(THREAD, {"other_user_id": bob.pk, "after_id": ids[1], "page_size": 2}), 200)
    assert [m["id"] for m in page["results"]] == [ids[2], ids[3]]
    assert f"after_id={ids[3]}" in page["next"]
    page = data_of(as_alice.get(page["next"]), 200)
    assert [m["id"] for m in page["results"]] == [ids[4]]
    assert page["next"] is None


def test_before_id_with_inserts_between_pages(as_alice, alice, bob):
    """Messages arriving while paging back are neither skipped nor repeated."""
    original = [send(alice, bob, str(n)).pk for n in range(10)]
    seen = thread_ids(as_alice, bob, page_size=3)  # the first page, then cursors
    page = {"next": f"{THREAD}?other_user_id={bob.pk}&page_size=3&before_id={seen[-1]}"}
    while page["next"]:
        for _ in range(2):  # concurrent traffic between two page loads
            send(bob, alice, "live")
        page = data_of(as_alice.get(page["next"]), 200)
        seen += [m["id"] for m in page["results"]]
    assert seen == sorted(original, reverse=True)


def test_after_id_with_inserts_between_pages(as_alice, alice, bob):
    """Catching up with after_id sees every message once, including those sent meanwhile."""
    start = send(alice, bob, "start").pk
    expected = [send(bob, alice).pk for _ in range(4)]
    seen, cursor = [], start
    for _ in range(20):
        page = data_of(as_alice.get(THREAD, {"other_user_id": bob.pk, "after_id": cursor, "page_size": 2}), 200)
        seen += [m["id"] for m in page["results"]]
        if page["results"]:
            cursor = page["results"][-1]["id"]
        if len(expected) < 9:
            expected.append(send(bob, alice).pk)
        elif not page["results"]:
            break
    assert seen == expected
    assert len(set(seen)) == len(seen) == 9


def test_page_numbers_would_repeat_but_cursors_do_not(as_alice, alice, bob):
    """The reason for cursors: page 2 after an insert repeats an item, before_id does not."""
    ids = [send(alice, bob).pk for _ in range(4)][::-1]
    page1 = thread_ids(as_alice, bob, page_size=2)
    send(bob, alice)
    assert thread_ids(as_alice, bob, page_size=2, page=2)[0] == page1[-1]  # the repeat
    assert thread_ids(as_alice, bob, page_size=2, before_id=page1[-1]) == ids[2:]


def test_cursor_beyond_range_is_empty(as_alice, alice, bob):
    """A cursor older than every message returns an empty page."""
    first = send(alice, bob)
    data = data_of(as_alice.get(THREAD, {"other_user_id": bob.pk, "before_id": first.pk}), 200)
    assert (data["results"], data["next"]) == ([], None)


def test_cursor_respects_clear(as_alice, alice, bob):
    """after_id from before a clear does not return cleared messages."""
    first = send(alice, bob)
    send(alice, bob)
    data_of(as_alice.post(CLEAR, {"other_user_id": bob.pk}, format="json"), 200)
    assert thread_ids(as_alice, bob, after_id=first.pk) == []
    assert thread_ids(as_alice, bob, before_id=10**9) == []


# --- bad input: clear 4xx, nothing stored -------------------------------------------


@pytest.mark.parametrize(
    "value", ["abc", "-1", "0", "1.5", "1e3", "", " ", "0x10", "99999999999999999999", "²", "٣", "9" * 5000]
)
def test_thread_bad_other_user_id(as_alice, alice, bob, value):
    """other_user_id must be a positive integer: 400 with a code."""
    send(alice, bob)
    response = as_alice.get(THREAD, {"other_user_id": value})
    assert error_of(response, 400) == {"code": "invalid_id"}
    assert "other_user_id" in response.json()["message"]


def test_thread_without_other_user_id(as_alice):
    """The thread needs other_user_id."""
    assert error_of(as_alice.get(THREAD), 400) == {"code": "invalid_id"}


@pytest.mark.parametrize("name", ["page_size", "page"])
@pytest.mark.parametrize("value", ["abc", "-5", "0", "1.5", "+3", " 3", "٣", "²", "9" * 5000])
def test_bad_page_params(as_alice, alice, bob, name, value):
    """Non-numeric, negative, zero page or page_size: 400, never a silent default or 500."""
    send(alice, bob)
    for path, params in ((THREAD, {"other_user_id": bob.pk}), (CONVERSATIONS, {}), (API, {})):
        assert error_of(as_alice.get(path, {**params, name: value}), 400) == {"code": f"invalid_{name}"}


def test_page_size_over_100(as_alice, alice, bob):
    """page_size 101 is refused on every list."""
    for path, params in ((THREAD, {"other_user_id": bob.pk}), (CONVERSATIONS, {}), (API, {})):
        response = as_alice.get(path, {**params, "page_size": 101})
        assert error_of(response, 400) == {"code": "invalid_page_size"}
        assert "100" in response.json()["message"]


@pytest.mark.parametrize("name", ["before_id", "after_id"])
@pytest.mark.parametrize("value", ["abc", "-1", "0", "2.5", "²", "9" * 5000])
def test_bad_cursor(as_alice, alice, bob, name, value):
    """A bad cursor is a 400 naming it."""
    send(alice, bob)
    response = as_alice.get(THREAD, {"other_user_id": bob.pk, name: value})
    assert error_of(response, 400) == {"code": "invalid_id"}
    assert name in response.json()["message"]


def test_thread_with_unknown_user_is_404(as_alice):
    """The thread with a user that does not exist is a 404."""
    assert error_of(as_alice.get(THREAD, {"other_user_id": 987654}), 404) == {"code": "unknown_user"}


def test_thread_with_yourself_is_400(as_alice, alice):
    """There is no thread with yourself."""
    assert error_of(as_alice.get(THREAD, {"other_user_id": alice.pk}), 400) == {"code": "self_message"}


@pytest.mark.parametrize("value", ["abc", "-1", "0", "99999999999999999999", "²", "9" * 5000])
@pytest.mark.parametrize("suffix", ["", "mark_read/"])
def test_bad_message_id_in_path(as_alice, alice, bob, value, suffix):
    """A non-numeric, negative, zero or overflowing message id in the path: 400 or 404."""
    send(alice, bob)
    method = "post" if suffix else "get"
    response = getattr(as_alice, method)(f"{API}{value}/{suffix}")
    assert response.status_code in (400, 404), response.content
    assert response.json()["success"] is False
    assert side(bob, alice).unread_count == 1


@pytest.mark.parametrize("value", ["abc", "0", "-1"])
def test_bad_message_id_on_edit_and_delete(as_alice, alice, bob, value):
    """PATCH/DELETE with a bad id: 400 in the envelope, nothing changed."""
    send(alice, bob, "keep")
    assert error_of(as_alice.patch(f"{API}{value}/", {"content": "x"}, format="json"), 400) == {"code": "invalid_id"}
    assert error_of(as_alice.delete(f"{API}{value}/"), 400) == {"code": "invalid_id"}
    assert list(Message.objects.values_list("content", flat=True)) == ["keep"]


def test_unknown_message_id_is_404(as_alice):
    """An id that is nobody's message: 404 on every per-message call."""
    for method, suffix in (("get", ""), ("patch", ""), ("delete", ""), ("post", "mark_read/")):
        detail = error_of(getattr(as_alice, method)(f"{API}987654/{suffix}", {"content": "x"}, format="json"), 404)
        assert detail == {"code": "unknown_message"}


@pytest.mark.parametrize(
    "body,status",
    [
        ({"receiver": 987654, "content": "hi"}, 404),
        ({"receiver": "abc", "content": "hi"}, 400),
        ({"receiver": -1, "content": "hi"}, 400),
        ({"receiver": 0, "content": "hi"}, 400),
        ({"receiver": 1.5, "content": "hi"}, 400),
        ({"receiver": True, "content": "hi"}, 400),
        ({"receiver": None, "content": "hi"}, 400),
        ({"receiver": [1], "content": "hi"}, 400),
        ({"content": "hi"}, 400),
        ({"receiver": "{bob}"}, 400),
        ({"receiver": "{bob}", "content": ""}, 400),
        ({"receiver": "{bob}", "content": "   \n\t "}, 400),
        ({"receiver": "{bob}", "content": "x" * 4001}, 400),
        ({"receiver": "{bob}", "content": None}, 400),
        ({"receiver": "{bob}", "content": ["hi"]}, 400),
        ({"receiver": "{bob}", "content": {"text": "hi"}}, 400),
        ({"receiver": "{bob}", "content": True}, 400),
        ({"receiver": "{bob}", "content": 123}, 400),
        ({"receiver": "{bob}", "content": "a\x00b"}, 400),
        ({"receiver": "{bob}", "content": "hi", "client_id": ""}, 400),
        ({"receiver": "{bob}", "content": "hi", "client_id": "c" * 65}, 400),
        ({"receiver": "{bob}", "content": "hi", "client_id": ["c"]}, 400),
        ({"receiver": "{bob}", "content": "hi", "client_id": 7}, 400),
        ({"receiver": "{bob}", "content": "hi", "sender": "abc"}, 400),
    ],
)
def test_bad_send_stores_nothing(as_alice, alice, bob, body, status):
    """Every bad send is a clear 4xx envelope and no row, no conversation, no unread."""
    body = {k: (bob.pk if v == "{bob}" else v) for k, v in body.items()}
    error_of(as_alice.post(API, body, format="json"), status)
    assert Message.objects.count() == 0
    assert Conversation.objects.count() == 0


def test_send_to_yourself_is_400(as_alice, alice):
    """Messaging yourself is refused."""
    assert error_of(as_alice.post(API, {"receiver": alice.pk, "content": "me"}, format="json"), 400) == {
        "code": "self_message"
    }
    assert Message.objects.count() == 0


def test_send_to_inactive_user_is_404(as_alice, make_user):
    """An inactive user cannot be messaged."""
    gone = make_user(is_active=False)
    assert error_of(as_alice.post(API, {"receiver": gone.pk, "content": "hi"}, format="json"), 404) == {
        "code": "unknown_user"
    }
    assert Message.objects.count() == 0


def test_content_too_long_message_names_the_limit(as_alice, bob):
    """4,001 characters: 400 whose message names the 4000 limit."""
    response = as_alice.post(API, {"receiver": bob.pk, "content": "x" * 4001}, format="json")
    assert error_of(response, 400) == {"code": "content_too_long"}
    assert "4000" in response.json()["message"]


def test_content_of_4000_characters_is_accepted(as_alice, bob):
    """Exactly 4,000 characters (also multi-byte) are stored unchanged."""
    for content in ("x" * 4000, "ü" * 4000):
        data = data_of(as_alice.post(API, {"receiver": bob.pk, "content": content}, format="json"), 201)
        assert data["content"] == content
    assert Message.objects.count() == 2


def test_content_keeps_surrounding_whitespace(as_alice, bob):
    """Content is stored as sent (no trimming)."""
    data = data_of(as_alice.post(API, {"receiver": bob.pk, "content": "  hi \n"}, format="json"), 201)
    assert data["content"] == "  hi \n"


@pytest.mark.parametrize("raw", [b"{bad json", b'{"receiver": 2, "content": "x"', b"", b"\xff\xfe", b"null", b"[1, 2]", b'"text"'])
def test_malformed_json_body_is_400(as_alice, bob, raw):
    """A body that is not a JSON object is a 400 and stores nothing."""
    response = as_alice.generic("POST", API, raw, content_type="application/json")
    error_of(response, 400)
    assert Message.objects.count() == 0


@pytest.mark.parametrize("path", [MARK_THREAD_READ, CLEAR])
@pytest.mark.parametrize(
    "body,status,code",
    [
        ({}, 400, None),
        ({"other_user_id": "abc"}, 400, None),
        ({"other_user_id": -3}, 400, None),
        ({"other_user_id": 0}, 400, None),
        ({"other_user_id": True}, 400, None),
        ({"other_user_id": None}, 400, None),
        ({"other_user_id": 987654}, 404, "unknown_user"),
        ({"other_user_id": "{me}"}, 400, "self_message"),
    ],
)
def test_bad_other_user_id_in_body(as_alice, alice, bob, path, body, status, code):
    """mark_thread_read and clear_conversation refuse bad other_user_id and change nothing."""
    send(bob, alice)
    body = {k: (alice.pk if v == "{me}" else v) for k, v in body.items()}
    detail = error_of(as_alice.post(path, body, format="json"), status)
    if code:
        assert detail == {"code": code}
    else:
        assert "other_user_id" in detail
    mine = side(alice, bob)
    assert (mine.unread_count, mine.last_read_id, mine.cleared_before_id) == (1, 0, 0)


@pytest.mark.parametrize("path", [MARK_THREAD_READ, CLEAR])
def test_malformed_json_on_thread_actions(as_alice, alice, bob, path):
    """Malformed JSON on mark_thread_read / clear_conversation is a 400 changing nothing."""
    send(bob, alice)
    error_of(as_alice.generic("POST", path, b"{oops", content_type="application/json"), 400)
    assert side(alice, bob).unread_count == 1


@pytest.mark.parametrize(
    "body",
    [{}, {"content": ""}, {"content": "   "}, {"content": "x" * 4001}, {"content": None}, {"content": ["x"]}, {"content": 5}],
)
def test_bad_edit_changes_nothing(as_alice, alice, bob, body):
    """A bad edit is a 400 and the message keeps its content and edited_at."""
    message = send(alice, bob, "keep")
    error_of(as_alice.patch(f"{API}{message.pk}/", body, format="json"), 400)
    stored = Message.objects.get()
    assert (stored.content, stored.edited_at) == ("keep", None)


def test_malformed_json_on_edit(as_alice, alice, bob):
    """Malformed JSON on PATCH is a 400."""
    message = send(alice, bob, "keep")
    error_of(as_alice.generic("PATCH", f"{API}{message.pk}/", b"{", content_type="application/json"), 400)
    assert Message.objects.get().content == "keep"


def test_method_not_allowed_is_enveloped(as_alice):
    """A verb the endpoint does not serve is a 405 in the envelope."""
    error_of(as_alice.delete(CONVERSATIONS), 405)
    error_of(as_alice.get(CLEAR), 405)


def test_form_encoded_send_works(as_alice, alice, bob):
    """A form-encoded POST (older clients) stores the message with int ids."""
    data = data_of(as_alice.post(API, {"receiver": str(bob.pk), "content": "form"}), 201)
    assert (data["sender"], data["receiver"], data["content"]) == (alice.pk, bob.pk, "form")


def test_response_is_json_utf8(as_alice, bob):
    """Responses are JSON; non-ASCII content round-trips."""
    response = as_alice.post(API, {"receiver": bob.pk, "content": "naïve ☕"}, format="json")
    assert response["Content-Type"].startswith("application/json")
    assert json.loads(response.content.decode("utf-8"))["data"]["content"] == "naïve ☕"


# --- a counterpart who was deactivated after chatting ----------------------------------


@pytest.fixture
def deactivated_bob(alice, bob):
    """alice and bob chatted; then bob's account was deactivated."""
    messages = [send(bob, alice, "before"), send(alice, bob, "reply")]
    User.objects.filter(pk=bob.pk).update(is_active=False)
    return messages


def test_deactivated_counterpart_stays_listed(as_alice, bob, deactivated_bob):
    """The conversation with a deactivated user is still listed, under their name."""
    [item] = conversations(as_alice)
    assert (item["counterpart"]["id"], item["counterpart"]["full_name"]) == (bob.pk, "Bob Brown")


def test_thread_with_deactivated_counterpart_is_readable(as_alice, bob, deactivated_bob):
    """A listed conversation's thread opens: its history is the caller's too."""
    assert thread_ids(as_alice, bob) == [m.pk for m in deactivated_bob[::-1]]


def test_mark_read_and_clear_with_deactivated_counterpart(as_alice, alice, bob, deactivated_bob):
    """The caller can still mark the thread read and clear it."""
    data_of(as_alice.post(MARK_THREAD_READ, {"other_user_id": bob.pk}, format="json"), 200)
    assert side(alice, bob).unread_count == 0
    data_of(as_alice.post(CLEAR, {"other_user_id": bob.pk}, format="json"), 200)
    assert conversations(as_alice) == []


def test_sending_to_deactivated_counterpart_is_404(as_alice, bob, deactivated_bob):
    """New messages to a deactivated user are refused and not stored."""
    error_of(as_alice.post(API, {"receiver": bob.pk, "content": "still there?"}, format="json"), 404)
    assert Message.objects.count() == 2


@pytest.mark.parametrize(
    "raw,content_type,status",
    [
        (b"hi", "text/plain", 415),
        (b'{"receiver": 2, "content": NaN}', "application/json", 400),
        (b'{"receiver": 1e400, "content": "hi"}', "application/json", 400),
        (b'{"receiver": 2, "content": "\\ud800"}', "application/json", 400),
        ('{"receiver": 2, "content": "hi"}'.encode("utf-16"), "application/json", 400),
    ],
)
def test_odd_bodies_store_nothing(as_alice, raw, content_type, status):
    """Unsupported media type, NaN, huge numbers, lone surrogates, non-UTF-8: 4xx, nothing stored."""
    error_of(as_alice.generic("POST", API, raw, content_type=content_type), status)
    assert Message.objects.count() == 0


def test_message_list_before_id_cursor(as_alice, alice, bob, carol):
    """GET /api/messages/?before_id= walks the caller's messages back across conversations."""
    ids = [send(alice, bob).pk, send(carol, alice).pk, send(bob, carol).pk, send(bob, alice).pk]
    page = data_of(as_alice.get(API, {"before_id": ids[3], "page_size": 1}), 200)
    assert [m["id"] for m in page["results"]] == [ids[1]]
    assert f"before_id={ids[1]}" in page["next"]
    page = data_of(as_alice.get(page["next"]), 200)
    assert ([m["id"] for m in page["results"]], page["next"]) == ([ids[0]], None)


# --- cursors with really concurrent writers ------------------------------------------


def needs_concurrent_writes():
    from django.db import connection

    if connection.vendor == "sqlite" and connection.is_in_memory_db():
        # Shared-cache in-memory SQLite (the test database) fails a concurrent write with
        # "table is locked" at once instead of waiting; a served SQLite file waits.
        pytest.skip("needs a database that lets a second thread write (PostgreSQL)")


def in_thread(target, *args):
    """Run target(*args) in a started thread that closes its own DB connection."""
    import threading

    def run():
        from django.db import connection

        try:
            target(*args)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def page_back(fetch, before_id, page_size):
    """Every id older than before_id, following before_id cursors."""
    ids = []
    while True:
        page = fetch({"before_id": before_id, "page_size": page_size})
        ids += [m["id"] for m in page["results"]]
        if not page["next"]:
            return ids
        before_id = ids[-1]


def catch_up(fetch, after_id, page_size=50, done=None):
    """Every id after after_id, following after_id until a page is empty (and `done` was
    set before that page was asked for)."""
    ids = []
    while True:
        finished = done is None or done.is_set()
        page = fetch({"after_id": after_id, "page_size": page_size})
        ids += [m["id"] for m in page["results"]]
        after_id = ids[-1] if ids else after_id
        if not page["results"] and finished:
            return ids


def thread_fetcher(client, other):
    return lambda params: data_of(client.get(THREAD, {"other_user_id": other.pk, **params}), 200)


@pytest.mark.django_db(transaction=True)
def test_cursors_with_a_concurrent_writer(client_for, make_user):
    """While a thread keeps sending, before_id sees the history once and after_id every new message once."""
    import threading

    needs_concurrent_writes()
    alice, bob = make_user(), make_user()
    original = [send(alice, bob, f"old {n}").pk for n in range(30)]
    written, done = [], threading.Event()

    def writer():
        try:
            written.extend(send(bob, alice, f"new {n}").pk for n in range(40))
        finally:
            done.set()

    thread = in_thread(writer)
    fetch = thread_fetcher(client_for(alice), bob)
    seen = page_back(fetch, original[-1] + 1, 4)
    caught_up = catch_up(fetch, original[-1], 7, done)
    thread.join(30)
    assert seen == original[::-1]
    assert caught_up == written == sorted(written) and len(written) == 40


@pytest.mark.django_db(transaction=True)
def test_after_id_never_skips_a_message_that_commits_late(client_for, make_user, monkeypatch):
    """A send whose lower id commits after a higher one is still seen by after_id catch-up."""
    import threading

    needs_concurrent_writes()
    alice, bob = make_user(), make_user()
    first = send(alice, bob, "first").pk
    original, inserted, release = actions._advance_participants, threading.Event(), threading.Event()

    def paused(messages):  # the slow sender stops after its INSERT, before its commit
        if threading.current_thread() is slow:
            inserted.set()
            release.wait(10)
        return original(messages)

    monkeypatch.setattr(actions, "_advance_participants", paused)
    fetch = thread_fetcher(client_for(bob), alice)
    slow = in_thread(send, alice, bob, "slow")
    try:
        assert inserted.wait(10)
        quick = in_thread(send, bob, alice, "quick")
        quick.join(1.0)  # without ordering it commits now, with a higher id than "slow"
        seen = catch_up(fetch, first)
    finally:
        release.set()
        slow.join(10)
    quick.join(10)
    seen += catch_up(fetch, seen[-1] if seen else first)
    stored = list(Message.objects.filter(pk__gt=first).order_by("pk").values_list("pk", flat=True))
    assert len(stored) == 2 and seen == stored


def live_user(url, name):
    """Register and log in a user on a live server: (id, access token)."""
    from tests.support.live import http_json

    body = {"username": name, "email": f"{name}@example.test", "password": "Sup3r-secret-pw!",
            "first_name": name, "last_name": "Live"}
    status, created = http_json("POST", url + "/api/users/", body)
    assert status == 201, created
    status, login = http_json("POST", url + "/api/login/", {"username": name, "password": body["password"]})
    assert status == 200, login
    return created["data"]["id"], login["data"]["access"]


@pytest.mark.e2e
def test_live_cursors_with_a_concurrent_writer_on_sqlite(tmp_path):
    """A real server on WAL SQLite: paging and catch-up beside a concurrent POSTer skip and repeat nothing."""
    import threading

    from tests.support.live import LiveServer, free_port, http_json, manage, server_env

    env = server_env(tmp_path)
    manage(env, "migrate", "--noinput")
    with LiveServer(env, [free_port()], tmp_path / "server.log") as server:
        url = server.http_url()
        (alice, alice_token), (bob, bob_token) = live_user(url, "livealice"), live_user(url, "livebob")

        def post(token, receiver, content):
            status, body = http_json("POST", url + API, {"receiver": receiver, "content": content}, token)
            assert status == 201, body
            return body["data"]["id"]

        def fetch(params):
            query = "&".join(f"{k}={v}" for k, v in {"other_user_id": bob, **params}.items())
            status, body = http_json("GET", f"{url}{THREAD}?{query}", token=alice_token)
            assert status == 200, body
            return body["data"]

        original = [post(alice_token, bob, f"old {n}") for n in range(20)]
        written, done = [], threading.Event()

        def writer():
            try:
                written.extend(post(bob_token, alice, f"new {n}") for n in range(30))
            finally:
                done.set()

        thread = threading.Thread(target=writer)
        thread.start()
        seen = page_back(fetch, original[-1] + 1, 3)
        caught_up = catch_up(fetch, original[-1], 4, done)
        thread.join(30)
    assert seen == original[::-1]
    assert caught_up == written == sorted(written) and len(written) == 30


def test_oversized_json_body_is_refused_before_parsing(as_alice, alice, bob, settings):
    """A JSON body over DATA_UPLOAD_MAX_MEMORY_SIZE is refused and stores nothing."""
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({"receiver": bob.pk, "content": "x" * 2000})
    response = as_alice.post(API, body, content_type="application/json")
    # Django 5.2 leaves the stream to DRF and BoundedJSONParser answers 413; Django 6
    # refuses the body itself (RequestDataTooBig, 400). Refused either way.
    assert response.status_code in (400, 413)
    assert response.json()["success"] is False
    assert Message.objects.count() == 0
    ok = as_alice.post(API, json.dumps({"receiver": bob.pk, "content": "short"}), content_type="application/json")
    assert ok.status_code == 201
