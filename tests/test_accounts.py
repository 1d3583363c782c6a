"""The standalone server's accounts: tokens, registration, users, profiles, pictures,
user cards and the management commands, including who may see and change what."""

import io
import json
import stat
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from PIL import Image
from rest_framework.test import APIClient
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import AccessToken

from habitto_accounts import tokens
from habitto_accounts.cards import user_cards
from habitto_accounts.models import Profile
from habitto_chat.users import UserCard
from habitto_chat.users import user_cards as chat_user_cards
from tests.support.accounts import PASSWORD, bearer, data_of, login, png_bytes, upload

pytestmark = pytest.mark.django_db
User = get_user_model()


@pytest.fixture(autouse=True)
def _accounts_settings(settings, tmp_path):
    # A fast hasher (hashing strength is not under test) and private media/state folders.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.STATE_DIR = tmp_path / "state"


@pytest.fixture
def alice(make_user):
    user = make_user("alice", first_name="Alice", last_name="Anderson", email="alice@example.test")
    Profile.objects.filter(user=user).update(phone="+41 79 555 01 01", user_type="propietario")
    return user


@pytest.fixture
def bob(make_user):
    return make_user("bob", first_name="Bob", last_name="Brown", email="bob@example.test")


# --- Login, refresh, logout ----------------------------------------------------------


def test_login_returns_a_token_pair_with_the_integer_user_id(alice):
    tokens_ = login("alice")
    assert set(tokens_) == {"access", "refresh"}
    access = AccessToken(tokens_["access"])
    assert access["user_id"] == alice.pk and isinstance(access["user_id"], int)
    assert access["exp"] > access["iat"]
    me = data_of(bearer(tokens_["access"]).get("/api/users/me/"), 200)
    assert me["id"] == alice.pk


@pytest.mark.parametrize(
    "body, status",
    [
        ({"username": "alice", "password": "wrong"}, 401),
        ({"username": "nobody", "password": PASSWORD}, 401),
        ({"username": "alice"}, 400),
        ({"password": PASSWORD}, 400),
        ({}, 400),
    ],
)
def test_login_refuses_bad_credentials_and_missing_fields(alice, body, status):
    data = data_of(APIClient().post("/api/login/", body, format="json"), status)
    if status == 400:
        assert set(data) <= {"username", "password"} and data
    else:
        assert "access" not in json.dumps(data)


def test_login_refuses_inactive_users_and_malformed_json(alice):
    client = APIClient()
    bad = client.post("/api/login/", "{not json", content_type="application/json")
    data_of(bad, 400)
    User.objects.filter(pk=alice.pk).update(is_active=False)
    data_of(client.post("/api/login/", {"username": "alice", "password": PASSWORD}, format="json"), 401)


@pytest.mark.parametrize("path", ["/api/refresh/", "/api/token/refresh/"])
@pytest.mark.parametrize("keys", [("refresh",), ("refresh_token",), ("refresh", "refresh_token")])
def test_refresh_rotates_and_the_old_refresh_token_stops_working(alice, path, keys):
    first = login("alice")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer expired.or.garbage")  # refresh ignores it
    rotated = data_of(client.post(path, {k: first["refresh"] for k in keys}, format="json"), 200)
    assert set(rotated) == {"access", "refresh"}
    assert rotated["refresh"] != first["refresh"]
    assert AccessToken(rotated["access"])["user_id"] == alice.pk
    # The used token is blacklisted, on both paths; the new one works exactly once.
    for again in ("/api/refresh/", "/api/token/refresh/"):
        data_of(client.post(again, {"refresh": first["refresh"]}, format="json"), 401)
    data_of(client.post(path, {"refresh": rotated["refresh"]}, format="json"), 200)
    data_of(client.post(path, {"refresh": rotated["refresh"]}, format="json"), 401)


def test_refresh_takes_whichever_key_is_filled_in(alice):
    raw = login("alice")["refresh"]
    body = {"refresh": "", "refresh_token": raw}
    assert (
        AccessToken(data_of(APIClient().post("/api/refresh/", body, format="json"), 200)["access"])["user_id"]
        == alice.pk
    )


def test_refresh_bad_inputs(alice):
    client = APIClient()
    pair = login("alice")
    assert data_of(client.post("/api/refresh/", {}, format="json"), 400) == {
        "refresh": ["This field is required."]
    }
    data_of(client.post("/api/refresh/", {"refresh": "garbage"}, format="json"), 401)
    data_of(client.post("/api/refresh/", {"refresh": pair["access"]}, format="json"), 401)  # wrong type


def test_refresh_refuses_deleted_and_inactive_users(alice, bob):
    alice_pair, bob_pair = login("alice"), login("bob")
    User.objects.filter(pk=alice.pk).update(is_active=False)
    bob.delete()
    data_of(APIClient().post("/api/refresh/", {"refresh": alice_pair["refresh"]}, format="json"), 401)
    data_of(APIClient().post("/api/refresh/", {"refresh": bob_pair["refresh"]}, format="json"), 401)


def test_a_racing_second_use_of_a_refresh_token_loses_on_the_blacklist(alice):
    raw = login("alice")["refresh"]
    # Both requests passed the blacklist check before either wrote: the unique key decides.
    with mock.patch.object(tokens.RefreshToken, "check_blacklist"):
        tokens.rotate(raw)
        with pytest.raises(TokenError):
            tokens.rotate(raw)


def test_logout_blacklists_the_refresh_token_and_revokes_the_access_token(alice):
    pair = login("alice")
    client = bearer(pair["access"])
    assert data_of(client.post("/api/logout/", {"refresh": pair["refresh"]}, format="json"), 200) is None
    assert data_of(client.get("/api/users/me/"), 401) == {"code": "token_not_valid"}
    data_of(APIClient().post("/api/refresh/", {"refresh": pair["refresh"]}, format="json"), 401)
    # A fresh login is unaffected.
    data_of(bearer(login("alice")["access"]).get("/api/users/me/"), 200)


def test_logout_needs_your_own_valid_refresh_token(alice, bob):
    alice_pair, bob_pair = login("alice"), login("bob")
    client = bearer(alice_pair["access"])
    assert "refresh" in data_of(
        client.post("/api/logout/", {"refresh": bob_pair["refresh"]}, format="json"), 400
    )
    data_of(client.post("/api/logout/", {"refresh": "garbage"}, format="json"), 400)
    data_of(APIClient().post("/api/logout/", {"refresh": alice_pair["refresh"]}, format="json"), 401)
    # Nothing was revoked by the refused attempts.
    data_of(client.get("/api/users/me/"), 200)
    data_of(APIClient().post("/api/refresh/", {"refresh": bob_pair["refresh"]}, format="json"), 200)


# --- Registration --------------------------------------------------------------------

REGISTRATION = {
    "username": "dana",
    "email": "dana@example.test",
    "password": "long-and-unusual-42",
    "first_name": "Dana",
    "last_name": "Doe",
}


def test_registration_creates_user_and_profile_and_the_user_can_log_in():
    body = dict(REGISTRATION, user_type="agente", phone="+1 (555) 010-2000")
    data = data_of(APIClient().post("/api/users/", body, format="json"), 201)
    user = User.objects.get(username="dana")
    assert data == {
        "id": user.pk,
        "username": "dana",
        "email": "dana@example.test",
        "first_name": "Dana",
        "last_name": "Doe",
    }
    assert isinstance(data["id"], int)
    assert user.check_password("long-and-unusual-42") and user.password != "long-and-unusual-42"
    assert (user.profile.user_type, user.profile.phone) == ("agente", "+1 (555) 010-2000")
    assert AccessToken(login("dana", "long-and-unusual-42")["access"])["user_id"] == user.pk


def test_registration_defaults_and_multipart_with_picture(settings):
    body = dict(REGISTRATION, profile_picture=upload(png_bytes()))
    data_of(APIClient().post("/api/users/", body, format="multipart"), 201)
    profile = User.objects.get(username="dana").profile
    assert profile.user_type == "inquilino"
    assert profile.profile_picture.name.startswith("profiles/") and profile.profile_picture.name.endswith(
        ".png"
    )
    assert (settings.MEDIA_ROOT / profile.profile_picture.name).is_file()


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"password": "password"}, "password"),  # common
        ({"password": "short1"}, "password"),  # too short
        ({"password": "84736291047"}, "password"),  # numeric
        ({"password": "dana.doe@example.test"}, "password"),  # like the email
        ({"username": "ALICE"}, "username"),  # taken, whatever the case
        ({"username": "bad name!"}, "username"),
        ({"username": ""}, "username"),
        ({"email": "ALICE@example.TEST"}, "email"),  # taken, whatever the case
        ({"email": "not-an-email"}, "email"),
        ({"email": None}, "email"),
        ({"user_type": "landlord"}, "user_type"),
        ({"phone": "call me"}, "phone"),
        ({"profile_picture": "not a file"}, "profile_picture"),
    ],
)
def test_registration_validation_stores_nothing(alice, changes, field):
    body = {k: v for k, v in dict(REGISTRATION, **changes).items() if v is not None}
    before = User.objects.count()
    data = data_of(APIClient().post("/api/users/", body, format="json"), 400)
    assert field in data
    assert User.objects.count() == before
    assert not User.objects.filter(username="dana").exists()


def test_registration_with_a_non_image_stores_nothing(settings):
    body = dict(REGISTRATION, profile_picture=upload(b"GIF89a but not really", "x.gif", "image/gif"))
    assert "profile_picture" in data_of(APIClient().post("/api/users/", body, format="multipart"), 400)
    assert not User.objects.filter(username="dana").exists()
    assert not (settings.MEDIA_ROOT / "profiles").exists() or not any(
        (settings.MEDIA_ROOT / "profiles").iterdir()
    )


def test_registration_is_all_or_nothing():
    # A failure after the user row was written must take the user (and profile) back out.
    with mock.patch("habitto_accounts.serializers.replace_picture", side_effect=RuntimeError("disk full")):
        with pytest.raises(RuntimeError):
            APIClient().post(
                "/api/users/", dict(REGISTRATION, profile_picture=upload(png_bytes())), format="multipart"
            )
    assert not User.objects.filter(username="dana").exists()
    assert not Profile.objects.filter(user__username="dana").exists()


# --- Users ---------------------------------------------------------------------------


def test_me_shows_and_updates_only_the_callers_own_account(client_for, alice, bob):
    client = client_for(alice)
    assert data_of(client.get("/api/users/me/"), 200) == {
        "id": alice.pk,
        "username": "alice",
        "email": "alice@example.test",
        "first_name": "Alice",
        "last_name": "Anderson",
    }
    changed = data_of(
        client.patch("/api/users/me/", {"first_name": "Al", "email": "al@example.test"}, format="json"), 200
    )
    assert (changed["first_name"], changed["email"], changed["last_name"]) == (
        "Al",
        "al@example.test",
        "Anderson",
    )
    alice.refresh_from_db()
    bob.refresh_from_db()
    assert (alice.first_name, alice.email) == ("Al", "al@example.test")
    assert (bob.first_name, bob.email) == ("Bob", "bob@example.test")


@pytest.mark.parametrize(
    "body, field",
    [
        ({"username": "root"}, "username"),
        ({"is_staff": True}, "is_staff"),
        ({"is_superuser": True}, "is_superuser"),
        ({"id": 1}, "id"),
        ({"password": "whatever-else-9"}, "password"),
        ({"email": "BOB@example.test"}, "email"),  # someone else's
        ({"email": "nope"}, "email"),
        ({"email": ""}, "email"),
    ],
)
def test_me_refuses_changes_it_does_not_allow(client_for, alice, bob, body, field):
    before = User.objects.values().get(pk=alice.pk)
    assert field in data_of(client_for(alice).patch("/api/users/me/", body, format="json"), 400)
    assert User.objects.values().get(pk=alice.pk) == before


def test_users_list_is_public_fields_only_ordered_and_active_only(client_for, alice, bob, make_user):
    carol = make_user("carol")  # no names: full_name falls back to the username
    make_user("ghost", is_active=False)
    response = client_for(bob).get("/api/users/")
    data = data_of(response, 200)
    assert set(data) == {"count", "next", "previous", "results"}
    assert data["count"] == 3 and data["next"] is None and data["previous"] is None
    assert data["results"] == [
        {
            "id": alice.pk,
            "username": "alice",
            "first_name": "Alice",
            "last_name": "Anderson",
            "full_name": "Alice Anderson",
        },
        {
            "id": bob.pk,
            "username": "bob",
            "first_name": "Bob",
            "last_name": "Brown",
            "full_name": "Bob Brown",
        },
        {"id": carol.pk, "username": "carol", "first_name": "", "last_name": "", "full_name": "carol"},
    ]
    assert b"@example.test" not in response.content  # no email at all, not even the caller's


@pytest.mark.parametrize(
    "query, expected",
    [("ali", ["alice"]), ("BROWN", ["bob"]), ("rOWn", ["bob"]), ("nobody", []), ("", ["alice", "bob"])],
)
def test_users_search(client_for, alice, bob, query, expected):
    data = data_of(client_for(alice).get("/api/users/", {"search": query}), 200)
    assert [row["username"] for row in data["results"]] == expected


def test_users_pagination(client_for, make_user):
    users = [make_user(f"user{n:02d}") for n in range(5)]
    client = client_for(users[0])
    first = data_of(client.get("/api/users/", {"page_size": 2}), 200)
    assert first["count"] == 5 and [r["id"] for r in first["results"]] == [u.pk for u in users[:2]]
    assert first["previous"] is None and "page=2" in first["next"] and "page_size=2" in first["next"]
    last = data_of(client.get("/api/users/", {"page_size": 2, "page": 3}), 200)
    assert [r["id"] for r in last["results"]] == [users[4].pk] and last["next"] is None
    data_of(client.get("/api/users/", {"page_size": 2, "page": 4}), 404)


@pytest.mark.parametrize("path", ["/api/users/", "/api/profiles/"])
@pytest.mark.parametrize(
    "params",
    [
        {"page": "abc"},
        {"page": "-1"},
        {"page": "0"},
        {"page": "1.5"},
        {"page_size": "0"},
        {"page_size": "101"},
        {"page_size": "-5"},
        {"page_size": "ten"},
    ],
)
def test_bad_paging_parameters_are_400(client_for, alice, path, params):
    data = data_of(client_for(alice).get(path, params), 400)
    assert data["code"].startswith("invalid_page")


# --- Profiles ------------------------------------------------------------------------


def test_profiles_of_one_user_match_the_app_contract(client_for, alice, bob):
    response = client_for(bob).get("/api/profiles/", {"user_id": alice.pk})
    data = data_of(response, 200)
    assert data["count"] == 1
    profile = Profile.objects.get(user=alice)
    assert data["results"] == [
        {
            "id": profile.pk,
            "user": {
                "id": alice.pk,
                "username": "alice",
                "first_name": "Alice",
                "last_name": "Anderson",
                "full_name": "Alice Anderson",
                "email": None,
                "date_joined": alice.date_joined.isoformat().replace("+00:00", "Z"),
            },
            "user_type": "propietario",
            "phone": None,
            "is_verified": False,
            "favorites": [],
            "created_at": profile.created_at.isoformat().replace("+00:00", "Z"),
            "updated_at": profile.updated_at.isoformat().replace("+00:00", "Z"),
            "profile_picture_url": None,
            "profile_picture": None,
        }
    ]
    assert (
        b"alice@example.test" not in response.content and b"555" not in response.content
    )  # no email, no phone


def test_profiles_list_and_unknown_or_inactive_users(client_for, alice, bob, make_user):
    ghost = make_user("ghost", is_active=False)
    client = client_for(bob)
    everyone = data_of(client.get("/api/profiles/"), 200)
    assert [row["user"]["id"] for row in everyone["results"]] == [alice.pk, bob.pk]
    for user_id in (ghost.pk, 987654, 2**63 - 1):
        assert data_of(client.get("/api/profiles/", {"user_id": user_id}), 200)["results"] == []


@pytest.mark.parametrize("user_id", ["abc", "-1", "0", "1.5", "1e3", str(2**64)])
def test_profiles_bad_user_id_is_400(client_for, alice, user_id):
    data = data_of(client_for(alice).get("/api/profiles/", {"user_id": user_id}), 400)
    assert data == {"code": "invalid_id"}


def test_my_profile_shows_phone_and_updates_type_and_phone(client_for, alice, bob):
    client = client_for(alice)
    mine = data_of(client.get("/api/profiles/me/"), 200)
    assert (mine["id"], mine["user"]["id"], mine["phone"], mine["user_type"]) == (
        alice.profile.pk,
        alice.pk,
        "+41 79 555 01 01",
        "propietario",
    )
    updated = data_of(
        client.patch("/api/profiles/me/", {"user_type": "agente", "phone": ""}, format="json"), 200
    )
    assert (updated["user_type"], updated["phone"]) == ("agente", "")
    assert Profile.objects.values_list("user_type", "phone").get(user=alice) == ("agente", "")
    assert Profile.objects.values_list("user_type").get(user=bob) == ("inquilino",)


@pytest.mark.parametrize(
    "body, field",
    [
        ({"user_type": "admin"}, "user_type"),
        ({"phone": "12"}, "phone"),
        ({"phone": "x" * 40}, "phone"),
        ({"user": 2}, "user"),
        ({"id": 5}, "id"),
        ({"profile_picture": "/etc/passwd"}, "profile_picture"),
    ],
)
def test_my_profile_refuses_bad_or_foreign_fields(client_for, alice, body, field):
    before = Profile.objects.values().get(user=alice)
    assert field in data_of(client_for(alice).patch("/api/profiles/me/", body, format="json"), 400)
    assert Profile.objects.values().get(user=alice) == before


def test_my_profile_is_created_for_users_that_have_none(client_for, alice):
    Profile.objects.filter(user=alice).delete()
    assert data_of(client_for(alice).get("/api/profiles/me/"), 200)["user_type"] == "inquilino"
    assert Profile.objects.filter(user=alice).count() == 1


# --- Pictures ------------------------------------------------------------------------


def test_picture_upload_stores_a_renamed_file_and_replaces_the_old_one(
    client_for, alice, bob, settings, django_capture_on_commit_callbacks
):
    client = client_for(alice)
    with django_capture_on_commit_callbacks(execute=True):
        first = data_of(
            client.post(
                "/api/profiles/me/picture/", {"profile_picture": upload(png_bytes(), "../../evil.png")}
            ),
            200,
        )
    old_name = Profile.objects.get(user=alice).profile_picture.name
    assert old_name.startswith("profiles/") and ".." not in old_name and "evil" not in old_name
    assert first["profile_picture_url"] == f"http://testserver/media/{old_name}" == first["profile_picture"]
    assert (settings.MEDIA_ROOT / old_name).read_bytes() == png_bytes()

    jpeg = io.BytesIO()
    Image.new("RGB", (4, 4), "blue").save(jpeg, "JPEG")
    with django_capture_on_commit_callbacks(execute=True):
        data_of(
            client.post("/api/profiles/me/picture/", {"profile_picture": upload(jpeg.getvalue(), "x.png")}),
            200,
        )
    new_name = Profile.objects.get(user=alice).profile_picture.name
    assert new_name != old_name and new_name.endswith(".jpg")  # named after what it is
    assert (settings.MEDIA_ROOT / new_name).is_file()
    assert not (settings.MEDIA_ROOT / old_name).exists()
    # Others see the absolute URL through the profiles list.
    seen = data_of(client_for(bob).get("/api/profiles/", {"user_id": alice.pk}), 200)["results"][0]
    assert seen["profile_picture_url"] == f"http://testserver/media/{new_name}"


@pytest.mark.parametrize(
    "file",
    [
        upload(b"just text", "notes.png"),
        upload(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "broken.png"),  # a PNG signature, nothing valid after it
        upload(b"", "empty.png"),
    ],
    ids=["text", "truncated-png", "empty"],
)
def test_picture_upload_refuses_non_images(client_for, alice, file):
    data = data_of(client_for(alice).post("/api/profiles/me/picture/", {"profile_picture": file}), 400)
    assert "profile_picture" in data
    assert not Profile.objects.get(user=alice).profile_picture


def test_picture_upload_refuses_formats_outside_the_list(client_for, alice):
    bmp = io.BytesIO()
    Image.new("RGB", (4, 4)).save(bmp, "BMP")
    data = data_of(
        client_for(alice).post(
            "/api/profiles/me/picture/", {"profile_picture": upload(bmp.getvalue(), "a.bmp")}
        ),
        400,
    )
    assert data["profile_picture"] == ["The picture must be PNG, JPEG, GIF or WebP."]


def test_picture_upload_refuses_oversize_files(client_for, alice, settings):
    settings.MAX_UPLOAD_BYTES = 4096
    big = png_bytes((64, 64), noise=True)
    assert len(big) > 4096
    response = client_for(alice).post("/api/profiles/me/picture/", {"profile_picture": upload(big)})
    assert data_of(response, 400)["profile_picture"] == ["The picture is larger than 4096 bytes."]
    assert not Profile.objects.get(user=alice).profile_picture
    data_of(
        client_for(alice).post("/api/profiles/me/picture/", {"profile_picture": upload(png_bytes())}), 200
    )


def test_picture_upload_needs_a_multipart_file(client_for, alice):
    client = client_for(alice)
    assert "profile_picture" in data_of(client.post("/api/profiles/me/picture/", {}), 400)
    data_of(client.post("/api/profiles/me/picture/", {"profile_picture": "x"}, format="json"), 415)


# --- Authorization matrix ------------------------------------------------------------

AUTHENTICATED_ENDPOINTS = [
    ("get", "/api/users/"),
    ("get", "/api/users/me/"),
    ("patch", "/api/users/me/"),
    ("get", "/api/profiles/"),
    ("get", "/api/profiles/me/"),
    ("patch", "/api/profiles/me/"),
    ("post", "/api/profiles/me/picture/"),
    ("post", "/api/logout/"),
]


@pytest.mark.parametrize("method, path", AUTHENTICATED_ENDPOINTS)
@pytest.mark.parametrize("credentials", [None, "Bearer nonsense", "Token abc"])
def test_anonymous_and_bad_tokens_get_401(alice, method, path, credentials):
    client = APIClient()
    if credentials:
        client.credentials(HTTP_AUTHORIZATION=credentials)
    before = (User.objects.values().get(pk=alice.pk), Profile.objects.values().get(user=alice))
    data_of(getattr(client, method)(path, {"first_name": "X", "user_type": "agent"}, format="json"), 401)
    assert (User.objects.values().get(pk=alice.pk), Profile.objects.values().get(user=alice)) == before


def test_others_never_see_email_or_phone_anywhere(client_for, alice, bob):
    """Everything bob can read about alice: no email, no phone."""
    client = client_for(bob)
    for path, params in [
        ("/api/users/", {}),
        ("/api/users/", {"search": "alice"}),
        ("/api/profiles/", {}),
        ("/api/profiles/", {"user_id": alice.pk}),
    ]:
        content = client.get(path, params).content
        assert b'"alice"' in content
        assert b"alice@example.test" not in content and b"555 01 01" not in content
    # bob's own endpoints only talk about bob.
    for path in ("/api/users/me/", "/api/profiles/me/"):
        content = client.get(path).content
        assert b"alice" not in content


@pytest.mark.parametrize(
    "method, body, fmt, status",
    [
        ("put", {"user_type": "agente"}, "json", 403),
        ("patch", {"user_type": "agente"}, "json", 403),
        ("patch", {"profile_picture": upload(png_bytes())}, "multipart", 403),
        ("delete", None, "json", 405),
        ("post", {"user_type": "agente"}, "json", 405),
    ],
)
def test_nobody_writes_someone_elses_account_or_profile(client_for, alice, bob, method, body, fmt, status):
    client = client_for(bob)
    before = (User.objects.values().get(pk=alice.pk), Profile.objects.values().get(user=alice))
    data_of(getattr(client, method)(f"/api/profiles/{alice.profile.pk}/", body, format=fmt), status)
    for path in (f"/api/users/{alice.pk}/", f"/api/profiles/{alice.pk}/picture/"):
        data_of(getattr(client, method)(path, {"first_name": "X"}, format="json"), 404)
    # Nor do the collection or /me/ routes accept whole-object writes or deletes.
    data_of(client.put("/api/users/me/", {"first_name": "X"}, format="json"), 405)
    data_of(client.delete("/api/users/me/"), 405)
    data_of(client.delete("/api/profiles/me/"), 405)
    data_of(client.get("/api/profiles/update_me/"), 405)
    data_of(client.get("/api/profiles/upload_profile_picture/"), 405)
    data_of(client.patch("/api/users/", {"first_name": "X"}, format="json"), 405)
    assert (User.objects.values().get(pk=alice.pk), Profile.objects.values().get(user=alice)) == before


def test_profile_is_created_by_the_signal_for_every_new_user(django_user_model):
    user = django_user_model.objects.create_superuser("root", "root@example.test", PASSWORD)
    assert Profile.objects.get(user=user).user_type == "inquilino"


# --- User cards (the chat app's hook) ------------------------------------------------


def test_user_cards_in_one_query(alice, bob, make_user, settings, django_assert_num_queries):
    carol = make_user("carol")
    Profile.objects.filter(user=alice).update(profile_picture="profiles/a.png")
    Profile.objects.filter(user=carol).delete()  # a user without a profile still has a card
    with django_assert_num_queries(1):
        cards = user_cards([alice.pk, bob.pk, carol.pk, 999999, alice.pk])
    assert cards == {
        alice.pk: UserCard(alice.pk, "alice", "Alice Anderson", "/media/profiles/a.png", active=True),
        bob.pk: UserCard(bob.pk, "bob", "Bob Brown", None, active=True),
        carol.pk: UserCard(carol.pk, "carol", "carol", None, active=True),
    }
    with django_assert_num_queries(0):
        assert user_cards([]) == {}
    assert settings.HABITTO_CHAT["USER_CARDS"] == "habitto_accounts.cards.user_cards"
    assert chat_user_cards([bob.pk]) == {bob.pk: cards[bob.pk]}


# --- Management commands -------------------------------------------------------------


def run(*args, **options):
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err, **options)
    return out.getvalue()


def test_create_loadtest_users_prints_json_credentials_that_log_in(capsys):
    out = run("create_loadtest_users", "--count", "3", "--password", "load-pass-123")
    credentials = json.loads(out)
    users = {u.username: u for u in User.objects.filter(username__startswith="loadtest")}
    assert [c["username"] for c in credentials] == ["loadtest1", "loadtest2", "loadtest3"]
    assert credentials == [
        {"id": users[c["username"]].pk, "username": c["username"], "password": "load-pass-123"}
        for c in credentials
    ]
    assert Profile.objects.filter(user__in=users.values()).count() == 3
    assert users["loadtest2"].get_full_name() == "Load test 2"
    assert AccessToken(login("loadtest2", "load-pass-123")["access"])["user_id"] == users["loadtest2"].pk
    assert "3 load-test users created" in capsys.readouterr().err


def test_create_loadtest_users_is_idempotent_and_resets_the_password(tmp_path):
    output = tmp_path / "creds.json"
    run("create_loadtest_users", "--count", "4", "--prefix", "lt", "--start", "10", "--output", str(output))
    first = json.loads(output.read_text())
    assert stat.S_IMODE(output.stat().st_mode) == 0o600
    assert [c["username"] for c in first] == ["lt10", "lt11", "lt12", "lt13"]
    assert len({c["password"] for c in first}) == 1 and len(first[0]["password"]) >= 12  # random, shared
    second = json.loads(
        run(
            "create_loadtest_users",
            "--count",
            "5",
            "--prefix",
            "lt",
            "--start",
            "10",
            "--password",
            "new-pass-456",
        )
    )
    assert [c["id"] for c in second[:4]] == [c["id"] for c in first]
    assert User.objects.filter(username__startswith="lt").count() == 5
    assert Profile.objects.filter(user__username__startswith="lt").count() == 5
    assert all(u.check_password("new-pass-456") for u in User.objects.filter(username__startswith="lt"))
    data_of(
        APIClient().post(
            "/api/login/", {"username": "lt10", "password": first[0]["password"]}, format="json"
        ),
        401,
    )


def test_create_loadtest_users_is_bulk():
    """A handful of queries whatever the count (SQLite splits big INSERTs into batches of
    ~90 rows, PostgreSQL does not), and the password is hashed once."""
    from django.contrib.auth.hashers import make_password

    counts = {}
    for count in (10, 300):
        with mock.patch(
            "habitto_accounts.management.commands.create_loadtest_users.make_password", wraps=make_password
        ) as hashed:
            with CaptureQueriesContext(connection) as queries:
                run("create_loadtest_users", "--count", str(count), "--prefix", f"bulk{count}x")
        assert hashed.call_count == 1
        counts[count] = len(queries)
    assert counts[10] <= 12 and counts[300] <= counts[10] + 300 // 50
    assert User.objects.filter(username__startswith="bulk300x").count() == 300


def test_create_loadtest_users_delete_only_removes_prefix_plus_digits(make_user):
    run("create_loadtest_users", "--count", "3")
    keep = [make_user("loadtester"), make_user("loadtest7x"), make_user("myloadtest1")]
    admin = make_user("loadtest99", is_staff=True)
    out = run("create_loadtest_users", "--delete")
    assert "Deleted 3 load-test users" in out
    assert set(User.objects.values_list("username", flat=True)) == {u.username for u in keep + [admin]}


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--count", "0"],
        ["--count", "-3"],
        ["--count", "2", "--prefix", "bad prefix"],
        ["--count", "2", "--start", "-1"],
        ["--delete", "--prefix", "a;b"],
    ],
)
def test_create_loadtest_users_bad_arguments(args):
    with pytest.raises(CommandError):
        run("create_loadtest_users", *args)
    assert not User.objects.exists()


def test_seed_demo_users_prints_the_password_once_and_keeps_it_private(settings):
    out = run("seed_demo_users")
    path = settings.STATE_DIR / "demo-credentials.txt"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    pairs = dict(line.split() for line in path.read_text().splitlines() if not line.startswith("#"))
    assert set(pairs) == {"alice", "bob", "carol"} and len(set(pairs.values())) == 1
    password = pairs["alice"]
    assert password in out and str(path) in out
    users = {u.username: u for u in User.objects.all()}
    assert {name: u.get_full_name() for name, u in users.items()} == {
        "alice": "Alice Anderson",
        "bob": "Bob Brown",
        "carol": "Carol Clark",
    }
    assert all(u.check_password(password) and u.profile.user_type == "inquilino" for u in users.values())

    again = run("seed_demo_users")
    assert password not in again and "already exist" in again and str(path) in again
    assert User.objects.count() == 3

    # A missing demo user comes back with the password already on file.
    User.objects.filter(username="bob").delete()
    third = run("seed_demo_users")
    assert "bob" in third and User.objects.get(username="bob").check_password(password)
    assert dict(line.split() for line in path.read_text().splitlines() if not line.startswith("#")) == pairs


@pytest.mark.django_db
def test_picture_upload_strips_exif_metadata(make_user, client_for, settings, tmp_path):
    """A JPEG with EXIF (GPS, camera) is stored re-encoded, without any of it."""
    import io as _io

    from django.core.files.uploadedfile import SimpleUploadedFile
    from PIL import Image

    settings.MEDIA_ROOT = tmp_path
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, 12.0)}  # GPSInfo
    raw = _io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(raw, format="JPEG", exif=exif)
    assert b"PhoneMaker" in raw.getvalue()
    user = make_user("exifuser")
    response = client_for(user).post(
        "/api/profiles/me/picture/",
        {"profile_picture": SimpleUploadedFile("me.jpg", raw.getvalue(), content_type="image/jpeg")},
        format="multipart",
    )
    assert response.status_code == 200, response.content
    user.profile.refresh_from_db()
    stored = user.profile.profile_picture.read()
    assert b"PhoneMaker" not in stored
    with Image.open(_io.BytesIO(stored)) as image:
        assert image.format == "JPEG" and image.size == (16, 16)
        assert not image.getexif()
