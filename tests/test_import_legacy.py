"""`manage.py import_legacy` against a PostgreSQL database built with the old habitto_bk
schema (tests/fixtures/legacy_schema.sql), into the test database (SQLite or PostgreSQL)."""

import io
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import jwt
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.core.management import call_command
from django.core.management.base import CommandError
from rest_framework.test import APIClient
from rest_framework_simplejwt.settings import api_settings

from habitto_chat import actions, queries
from habitto_chat.actions import do_publish_notification
from habitto_chat.models import Conversation, Message, Notification, Participant
from tests.support import services

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

SCHEMA = Path(__file__).parent / "fixtures" / "legacy_schema.sql"
START = datetime(2025, 11, 20, 12, 0, tzinfo=timezone.utc)
OLD_PASSWORDS = {1: "alice-old-Passw0rd", 2: "bob-old-Passw0rd", 3: "carol-old-Passw0rd", 4: "dave-old-Passw0rd"}
# id, username, first name, is_active, profile (user_type, phone, picture) or None
USERS = [
    (1, "alice", "Alice", True, ("inquilino", "+591 700 00001", "profile_pictures/user_1.jpg")),
    (2, "bob", "Bob", True, ("propietario", None, None)),
    (3, "carol", "Carol", True, None),  # the old backend had users without a profile row
    (4, "dave", "Dave", False, ("agente", "", None)),
]
# id, sender, receiver, is_read, deleted_for_sender, deleted_for_receiver, edited
MESSAGES = [
    # alice-bob: read flags only
    (101, 1, 2, True, False, False, False),
    (102, 2, 1, True, False, False, True),
    (103, 1, 2, False, False, False, False),
    (104, 2, 1, False, False, False, False),
    (105, 2, 1, False, False, False, False),
    # alice-carol: carol cleared the conversation (110 unread, 111), alice kept it
    (110, 1, 3, False, False, True, False),
    (111, 3, 1, True, True, False, False),
    (112, 1, 3, False, False, False, False),
    (113, 3, 1, True, True, True, False),  # hidden from both: not imported
    (114, 1, 3, False, False, True, False),  # hidden from carol alone after a visible one
    (120, 1, 1, True, False, False, False),  # to herself: not imported
    # bob-dave (dave deactivated)
    (130, 4, 2, False, False, False, False),
    # bob-carol: carol read 141 but not 140; the read pointer reads both
    (140, 2, 3, False, False, False, False),
    (141, 2, 3, True, False, False, False),
]
IMPORTED_IDS = [101, 102, 103, 104, 105, 110, 111, 112, 114, 130, 140, 141]
NOTIFICATIONS = [(7, 1, "Match aceptado con bob.", False), (8, 1, "bob indicó interés.", True), (9, 2, "Hola", False)]


def _libpq(url):
    return url.replace("postgres://", "postgresql://", 1)


@pytest.fixture
def legacy_url():
    """A fresh PostgreSQL database with the old schema and rows."""
    import psycopg

    admin_url = services.postgres_admin_url()
    ok, why = services.check_postgres(admin_url)
    services.require("PostgreSQL (the old backend's database)", ok, why)
    name = f"h_imp_old_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(_libpq(admin_url), connect_timeout=3, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(admin_url)
    url = urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))
    try:
        with psycopg.connect(_libpq(url), connect_timeout=3) as conn:
            conn.execute(SCHEMA.read_text())
            _fill(conn)
        yield url
    finally:
        with psycopg.connect(_libpq(admin_url), connect_timeout=3, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _fill(conn):
    hasher = PBKDF2PasswordHasher()
    for user_id, username, first, active, profile in USERS:
        # The old backend's Django hashes; few iterations keep the test fast.
        password = hasher.encode(OLD_PASSWORDS[user_id], hasher.salt(), iterations=1000)
        conn.execute(
            "INSERT INTO auth_user (id, password, last_login, is_superuser, username, first_name, last_name,"
            " email, is_staff, is_active, date_joined) VALUES (%s, %s, NULL, false, %s, %s, 'Old', %s, false, %s, %s)",
            (user_id, password, username, first, f"{username}@old.example", active, START - timedelta(days=30)),
        )
        if profile:
            conn.execute(
                "INSERT INTO user_userprofile (user_type, phone, is_verified, created_at, updated_at, user_id,"
                " profile_picture, agent_commission_rate, is_agent, roommate_vibes)"
                " VALUES (%s, %s, false, %s, %s, %s, %s, 2.0, false, '{}')",
                (profile[0], profile[1], START, START, user_id, profile[2]),
            )
    for message_id, sender, receiver, is_read, for_sender, for_receiver, edited in MESSAGES:
        conn.execute(
            "INSERT INTO message_message (id, content, created_at, sender_id, receiver_id, is_read, read_at,"
            " deleted_for_sender, deleted_for_receiver, edited) VALUES (%s, %s, %s, %s, %s, %s, NULL, %s, %s, %s)",
            (
                message_id, f"message {message_id}", START + timedelta(minutes=message_id),
                sender, receiver, is_read, for_sender, for_receiver, edited,
            ),
        )  # fmt: skip
    for notification_id, user_id, text, is_read in NOTIFICATIONS:
        conn.execute(
            "INSERT INTO notification_notification (id, message, is_read, created_at, user_id)"
            " VALUES (%s, %s, %s, %s, %s)",
            (notification_id, text, is_read, START, user_id),
        )


def run_import(url, *extra):
    out = io.StringIO()
    call_command("import_legacy", "--source", url, "--batch-size", "3", *extra, stdout=out)
    return out.getvalue()


def counts(output, step):
    """The summary line of one step as {name: number}."""
    line = next(line for line in output.splitlines() if line.startswith(f"{step}: "))
    pairs = (item.split("=") for item in line.removeprefix(f"{step}: ").split(", "))
    return {name: int(number) for name, number in pairs}


def sides():
    """Every participant's pointers and counters, by (user, other user)."""
    return {
        (p.user_id, p.other_user_id): (
            p.last_message_id, p.last_read_id, p.cleared_before_id, p.unread_count, p.visible_count
        )
        for p in Participant.objects.all()
    }  # fmt: skip


# (user, other): last_message_id, last_read_id, cleared_before_id, unread_count, visible_count
EXPECTED_SIDES = {
    (1, 2): (105, 102, 0, 2, 5),
    (2, 1): (105, 101, 0, 1, 5),
    (1, 3): (114, 111, 0, 0, 4),
    (3, 1): (114, 111, 111, 2, 2),  # cleared up to 111; 114 stays visible (see docs/cutover.md)
    (2, 4): (130, 0, 0, 1, 1),
    (4, 2): (130, 0, 0, 0, 1),
    (2, 3): (141, 0, 0, 0, 2),
    (3, 2): (141, 141, 0, 0, 2),
}


def test_dry_run_writes_nothing_and_reports_what_a_run_would_do(legacy_url):
    User = get_user_model()
    output = run_import(legacy_url, "--dry-run")
    assert output.startswith("DRY RUN")
    assert counts(output, "users")["created"] == 4 and counts(output, "messages")["created"] == 12
    assert not User.objects.filter(pk__in=OLD_PASSWORDS).exists()
    assert Message.objects.count() == Conversation.objects.count() == Participant.objects.count() == 0


def test_import_maps_users_messages_and_flags_and_a_second_run_imports_nothing(legacy_url):
    first = run_import(legacy_url)
    assert counts(first, "users") == {
        "read": 4, "created": 4, "updated": 0, "unchanged": 0, "profiles_created": 4, "profiles_updated": 0,
    }  # fmt: skip
    assert counts(first, "messages") == {
        "read": 14, "created": 12, "updated": 0, "unchanged": 0, "removed": 0, "conversations": 4,
        "skipped_deleted_for_both": 1, "skipped_self_message": 1, "read_by_pointer": 2, "hidden_kept_visible": 1,
    }  # fmt: skip

    User = get_user_model()
    users = {u.pk: u for u in User.objects.filter(pk__in=OLD_PASSWORDS)}
    assert {pk: u.username for pk, u in users.items()} == {1: "alice", 2: "bob", 3: "carol", 4: "dave"}
    assert users[4].is_active is False and users[1].email == "alice@old.example"
    assert users[1].password.startswith("pbkdf2_sha256$1000$")  # the old hash, as it was
    alice_profile = users[1].profile
    assert alice_profile.user_type in {"inquilino", "tenant"} and alice_profile.phone == "+591 700 00001"
    assert alice_profile.profile_picture.name == "profile_pictures/user_1.jpg"
    assert users[2].profile.user_type in {"propietario", "owner"} and users[2].profile.phone == ""
    assert users[4].profile.user_type in {"agente", "agent"}
    assert users[3].profile is not None  # no old profile row: a default one

    assert sorted(Message.objects.values_list("id", flat=True)) == IMPORTED_IDS
    assert Message.objects.get(pk=102).edited_at == START + timedelta(minutes=102)
    assert Message.objects.get(pk=101).edited_at is None
    assert Conversation.objects.count() == 4
    assert sides() == EXPECTED_SIDES

    _assert_reads_through_queries()

    second = run_import(legacy_url)
    assert counts(second, "users")["unchanged"] == 4 and counts(second, "users")["created"] == 0
    assert counts(second, "messages")["unchanged"] == 12 and counts(second, "messages")["created"] == 0
    assert sorted(Message.objects.values_list("id", flat=True)) == IMPORTED_IDS
    assert Conversation.objects.count() == 4
    assert sides() == EXPECTED_SIDES


def _assert_reads_through_queries():
    page = queries.conversation_page(1, 0, 20, "http://testserver")
    assert [(i["counterpart"]["id"], i["last_message"]["id"], i["unread_count"]) for i in page.items] == [
        (3, 114, 0),
        (2, 105, 2),
    ]
    carol = queries.conversation_page(3, 0, 20, "http://testserver")
    assert [(i["counterpart"]["id"], i["unread_count"]) for i in carol.items] == [(2, 0), (1, 2)]
    bob = queries.conversation_page(2, 0, 20, "http://testserver")
    assert [(i["counterpart"]["id"], i["unread_count"]) for i in bob.items] == [(3, 0), (4, 1), (1, 1)]
    assert [(m["id"], m["is_read"]) for m in queries.thread_page(3, 2).items] == [(141, True), (140, True)]

    carol_thread = queries.thread_page(3, 1)
    assert carol_thread.count == 2
    assert [(m["id"], m["is_read"]) for m in carol_thread.items] == [(114, False), (112, False)]
    alice_thread = queries.thread_page(1, 3)
    assert alice_thread.count == 4
    assert [(m["id"], m["is_read"]) for m in alice_thread.items] == [(114, False), (112, False), (111, True), (110, True)]
    bob_thread = queries.thread_page(2, 1)
    assert [(m["id"], m["is_read"]) for m in bob_thread.items] == [
        (105, False), (104, False), (103, False), (102, True), (101, True),
    ]  # fmt: skip
    assert queries.unread_total(1) == 2 and queries.unread_total(3) == 2


def test_the_new_server_carries_on_from_the_imported_state(legacy_url):
    run_import(legacy_url)
    sent = actions.do_send_message(1, 2, "after the switch").message
    assert sent.id > 141  # the id sequence was moved past the old ids
    actions.do_mark_thread_read(2, 1)
    assert Participant.objects.get(user_id=2, other_user_id=1).unread_count == 0
    assert Participant.objects.get(user_id=2, other_user_id=1).visible_count == 6
    actions.do_clear_conversation(3, 1)
    assert queries.thread_page(3, 1).items == []
    new_user = get_user_model().objects.create_user("erin", password="erin-Passw0rd-long")
    assert new_user.pk > 4

    # Once the new server has taken messages, the import refuses to touch counters.
    with pytest.raises(CommandError, match="already has messages"):
        run_import(legacy_url)


def test_a_second_run_converges_on_changes_made_in_the_old_backend(legacy_url):
    import psycopg

    run_import(legacy_url)
    with psycopg.connect(_libpq(legacy_url)) as conn:
        conn.execute("UPDATE message_message SET is_read = true WHERE id = 103")  # bob read it
        conn.execute("UPDATE message_message SET content = 'edited', edited = true WHERE id = 104")
        conn.execute("DELETE FROM message_message WHERE id = 105")
        conn.execute("UPDATE message_message SET deleted_for_sender = true WHERE id = 130")  # dave cleared
    output = run_import(legacy_url)
    assert counts(output, "messages")["removed"] == 1 and counts(output, "messages")["updated"] == 1
    assert not Message.objects.filter(pk=105).exists()
    assert Message.objects.get(pk=104).content == "edited"
    assert sides()[(2, 1)] == (104, 103, 0, 0, 4)
    assert sides()[(1, 2)] == (104, 102, 0, 1, 4)
    assert sides()[(4, 2)] == (130, 130, 130, 0, 0)


def test_an_imported_user_logs_in_with_the_old_password_and_old_tokens_stay_valid(legacy_url, settings):
    # The old hashes are PBKDF2; the suite's fast hasher stays first, so the login rehashes with it.
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.MD5PasswordHasher",
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    ]
    run_import(legacy_url)
    client = APIClient()
    refused = client.post("/api/login/", {"username": "alice", "password": "wrong-password"}, format="json")
    assert refused.status_code == 401
    response = client.post("/api/login/", {"username": "alice", "password": OLD_PASSWORDS[1]}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["data"]["access"]

    # A token as the old backend issued it (simplejwt 5.5.1 defaults: these claims, HS256),
    # signed with the key this server verifies with (JWT_SIGNING_KEY = the old SECRET_KEY).
    now = int(time.time())
    claims = {"token_type": "access", "exp": now + 600, "iat": now, "jti": uuid.uuid4().hex, "user_id": 2}
    old_token = jwt.encode(claims, api_settings.SIGNING_KEY, algorithm="HS256")
    me = APIClient(HTTP_AUTHORIZATION=f"Bearer {old_token}").get("/api/users/me/")
    assert me.status_code == 200 and me.json()["data"]["id"] == 2
    forged = jwt.encode(claims, "some-other-key-" * 4, algorithm="HS256")
    assert APIClient(HTTP_AUTHORIZATION=f"Bearer {forged}").get("/api/users/me/").status_code == 401


def test_old_notifications_go_to_their_own_user_ids_kept_once(legacy_url, client_for):
    assert counts(run_import(legacy_url), "notifications") == {"read": 3, "created": 3, "updated": 0}
    mine = Notification.objects.filter(recipient_id=1)
    assert sorted(mine.values_list("id", "is_read", "message")) == [
        (7, False, "Match aceptado con bob."), (8, True, "bob indicó interés.")
    ]  # fmt: skip
    assert list(Notification.objects.filter(recipient_id=2).values_list("id", flat=True)) == [9]
    assert list(Notification.objects.values_list("kind", "title", "data").distinct()) == [("general", "", {})]
    assert counts(run_import(legacy_url), "notifications") == {"read": 3, "created": 0, "updated": 0}
    assert Notification.objects.count() == 3

    # The app reads them as its own: user 1 sees 7 and 8 (the badge: 7), never 9.
    user_1 = get_user_model().objects.get(pk=1)
    body = client_for(user_1).get("/api/notifications/", {"is_read": "false"}).json()
    assert body["count"] == 1 and [item["id"] for item in body["data"]["results"]] == [7]
    assert body["data"]["results"][0]["title"] is None and body["data"]["results"][0]["message"] == "Match aceptado con bob."
    refused = client_for(user_1).post("/api/notifications/9/mark_as_read/", {}, format="json")
    assert refused.status_code == 404
    # New notifications get ids past the imported ones (the sequence moved on).
    assert do_publish_notification(1, "general", "nueva").id > 9


def test_a_username_taken_by_another_user_here_stops_the_import(legacy_url, make_user):
    make_user("bob")  # a different person, already registered on the new server
    with pytest.raises(CommandError, match="usernames already taken.*'bob'"):
        run_import(legacy_url)
    assert not Message.objects.exists()


def test_a_username_taken_here_in_another_case_stops_the_import(legacy_url, make_user):
    make_user("BOB")  # unique whatever the case here: the old 'bob' cannot be imported
    with pytest.raises(CommandError, match="usernames already taken.*'bob'"):
        run_import(legacy_url)
    assert not Message.objects.exists()


def test_old_users_differing_only_in_case_stop_the_import_before_anything_is_written(legacy_url):
    import psycopg

    with psycopg.connect(_libpq(legacy_url), connect_timeout=3) as conn:
        conn.execute(
            "INSERT INTO auth_user (id, password, is_superuser, username, first_name, last_name, email,"
            " is_staff, is_active, date_joined) VALUES (90, '!', false, 'Bob', '', '', 'BOB@old.example',"
            " false, true, now())"
        )
    with pytest.raises(CommandError, match=r"username 'bob': old ids \d+, 90.*email 'bob@old.example'"):
        run_import(legacy_url)
    assert not get_user_model().objects.filter(pk=90).exists()
    assert not Message.objects.exists()


def test_bad_options_and_an_unreachable_source_are_clear_errors():
    with pytest.raises(CommandError, match="--steps"):
        run_import("postgres://127.0.0.1:1/nothing", "--steps", "users,pictures")
    with pytest.raises(CommandError, match="cannot read the old database"):
        run_import("postgres://postgres@127.0.0.1:1/nothing")
