"""The shipped Habitto app's account calls, replayed as its source makes them
(marvinjoel2001/habitto: auth_service.dart, profile_service.dart, profile_page.dart,
edit_profile_page.dart, register_page.dart), and what its fromJson methods need back."""

from datetime import datetime

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from rest_framework.test import APIClient

from habitto_accounts.models import Profile
from tests.support.accounts import bearer, data_of, login, png_bytes, upload

pytestmark = pytest.mark.django_db
User = get_user_model()
APP_USER_TYPES = ["inquilino", "propietario", "agente"]

# What the app's fromJson methods cast, one row per key: (key, JSON type, null allowed,
# the Dart that reads it). A missing key reads as null.
PROFILE_FROM_JSON = [  # lib/features/profile/domain/entities/profile.dart
    ("id", int, False, "id: json['id']  -> int, required"),
    ("user", dict, False, "User.fromJson(json['user'])  -> Map, required"),
    ("user_type", str, True, "(json['user_type'] ?? '').toString()"),
    ("phone", str, True, "(json['phone'] ?? '').toString()"),
    ("is_verified", bool, True, "json['is_verified'] ?? false  -> bool"),
    ("favorites", list, True, "List<int>.from(json['favorites'] ?? [])"),
    ("created_at", str, True, "DateTime.tryParse(json['created_at']?.toString() ?? '')"),
    ("updated_at", str, True, "DateTime.tryParse(json['updated_at']?.toString() ?? '')"),
    ("profile_picture_url", str, True, "clean(json['profile_picture_url'])"),
    ("profile_picture", str, True, "clean(json['profile_picture'])"),
]
USER_FROM_JSON = [  # lib/features/auth/domain/entities/user.dart
    ("id", int, False, "rawId is int ? rawId : int.tryParse(...) ?? 0  (we promise the int)"),
    ("username", str, True, "(json['username'] ?? '').toString()"),
    ("email", str, True, "(json['email'] ?? '').toString()"),
    ("first_name", str, True, "(json['first_name'] ?? '').toString()"),
    ("last_name", str, True, "(json['last_name'] ?? '').toString()"),
    ("date_joined", str, True, "DateTime.tryParse(dj) ?? DateTime.now()"),
]


def check_fields(obj, table):
    assert isinstance(obj, dict), obj
    for key, json_type, nullable, dart in table:
        value = obj.get(key)
        if value is None:
            assert nullable, f"{key} is null or missing; the app reads {dart}"
        else:
            assert type(value) is json_type, f"{key}={value!r}; the app reads {dart}"


def reads_as_profile(data, own):
    """Assert `data` is what Profile.fromJson reads without throwing, and more: the values
    the app compares (user_type) and parses (timestamps with a zone) are right."""
    check_fields(data, PROFILE_FROM_JSON)
    check_fields(data["user"], USER_FROM_JSON)
    assert all(type(item) is int for item in data["favorites"])
    assert data["user_type"] in APP_USER_TYPES
    for key in ("created_at", "updated_at"):
        assert datetime.fromisoformat(data[key]).tzinfo is not None
    assert datetime.fromisoformat(data["user"]["date_joined"]).tzinfo is not None
    # The caller's own phone and email; nobody else's.
    assert (type(data["phone"]), type(data["user"]["email"])) == ((str, str) if own else (type(None),) * 2)
    return data


def registration(username, **changes):
    """The body register() sends: User.toCreateJson() + password, user_type, phone."""
    body = {
        "username": username,
        "email": f"{username}@example.test",
        "first_name": username.title(),
        "last_name": "Tester",
        "password": "long-and-unusual-42",
        "user_type": "inquilino",
        "phone": "",
    }
    return dict(body, **changes)


@pytest.mark.parametrize("user_type", APP_USER_TYPES)
def test_registration_takes_the_apps_user_types_and_returns_them_as_stored(user_type):
    data = data_of(APIClient().post("/api/users/", registration("dana", user_type=user_type), format="json"), 201)
    check_fields(data, USER_FROM_JSON)
    assert Profile.objects.get(user_id=data["id"]).user_type == user_type
    access = login("dana", "long-and-unusual-42")["access"]
    assert reads_as_profile(data_of(bearer(access).get("/api/profiles/me/"), 200), own=True)["user_type"] == user_type


@pytest.mark.parametrize("english, stored", [("tenant", "inquilino"), ("owner", "propietario"), ("agent", "agente")])
def test_english_user_types_are_aliases_stored_in_the_apps_words(client_for, make_user, english, stored):
    data = data_of(APIClient().post("/api/users/", registration("erin", user_type=english), format="json"), 201)
    assert Profile.objects.get(user_id=data["id"]).user_type == stored
    carol = make_user("carol")
    answered = data_of(client_for(carol).patch("/api/profiles/update_me/", {"user_type": english}, format="json"), 200)
    assert answered["user_type"] == stored == Profile.objects.get(user=carol).user_type


def test_registration_refuses_unknown_user_types():
    data = data_of(APIClient().post("/api/users/", registration("dana", user_type="landlord"), format="json"), 400)
    assert "user_type" in data and not User.objects.filter(username="dana").exists()


def test_the_apps_profile_journey(make_user, client_for, settings, tmp_path):
    """Every profile call of the app, in its order, each answer read as fromJson reads it."""
    settings.MEDIA_ROOT = tmp_path
    bob = make_user("bob", first_name="Bob")
    data_of(APIClient().post("/api/users/", registration("dana"), format="json"), 201)
    dana = User.objects.get(username="dana")
    client = bearer(login("dana", "long-and-unusual-42")["access"])
    own_id = Profile.objects.get(user=dana).pk
    picture = lambda: upload(png_bytes())  # noqa: E731

    # (what the app does, method, path, body, format, whose profile comes back)
    calls = [
        ("register: own profile for its id", "get", "/api/profiles/me/", None, None, "own"),
        ("register: photo at sign-up", "patch", f"/api/profiles/{own_id}/", {"profile_picture": picture()}, "multipart", "own"),
        ("profile page: mode switch", "patch", "/api/profiles/update_me/", {"user_type": "propietario"}, "json", "own"),
        ("edit profile: fields", "patch", "/api/profiles/update_me/", {"phone": "+591 700 00000", "user_type": "agente"}, "json", "own"),
        ("edit profile: PUT variant", "put", "/api/profiles/update_me/", {"user_type": "inquilino"}, "json", "own"),
        ("edit profile: photo", "post", "/api/profiles/upload_profile_picture/", {"profile_picture": picture()}, "multipart", "own"),
        ("updateProfile: JSON", "put", f"/api/profiles/{own_id}/", {"phone": "+591 711 11111"}, "json", "own"),
        ("updateProfile: multipart", "put", f"/api/profiles/{own_id}/", {"profile_picture": picture(), "user_type": "agente"}, "multipart", "own"),
        ("getProfileById: counterpart", "get", f"/api/profiles/{bob.profile.pk}/", None, None, "other"),
        ("getProfileById: own", "get", f"/api/profiles/{own_id}/", None, None, "own"),
        ("this server's own path", "patch", "/api/profiles/me/", {"phone": ""}, "json", "own"),
        ("this server's own path", "post", "/api/profiles/me/picture/", {"profile_picture": picture()}, "multipart", "own"),
    ]
    for what, method, path, body, fmt, whose in calls:
        response = getattr(client, method)(path, body, format=fmt) if body is not None else client.get(path)
        data = reads_as_profile(data_of(response, 200), own=whose == "own")
        assert data["id"] == (own_id if whose == "own" else bob.profile.pk), what
    conversation_page = data_of(client.get("/api/profiles/", {"user_id": bob.pk}), 200)["results"][0]
    reads_as_profile(conversation_page, own=False)

    profile = Profile.objects.get(user=dana)
    assert (profile.user_type, profile.phone) == ("agente", "")
    assert profile.profile_picture.name.startswith("profiles/")
    assert data["profile_picture_url"] == f"http://testserver/media/{profile.profile_picture.name}"


def test_profile_by_id_unknown_inactive_and_bounds(client_for, make_user):
    alice, ghost = make_user("alice"), make_user("ghost", is_active=False)
    client = client_for(alice)
    for profile_id in (ghost.profile.pk, 987654, 2**63 - 1, 2**64, 0):
        data_of(client.get(f"/api/profiles/{profile_id}/"), 404)
    data_of(client.get("/api/profiles/abc/"), 404)
    data_of(APIClient().get(f"/api/profiles/{alice.profile.pk}/"), 401)


def test_profile_writes_are_all_or_nothing_and_name_what_they_change(client_for, make_user):
    alice = make_user("alice")
    client = client_for(alice)
    before = Profile.objects.values().get(user=alice)
    for path in ("/api/profiles/update_me/", f"/api/profiles/{alice.profile.pk}/"):
        for body in (
            {"user_type": "agente", "phone": "call me"},
            {"user_type": "agente", "favorites": [1, 2]},  # kept by Habitto's property backend
            {"user_type": "agente", "profile_picture": upload(b"not an image")},
        ):
            data_of(client.patch(path, body, format="multipart"), 400)
    assert Profile.objects.values().get(user=alice) == before
    data_of(client.post("/api/profiles/upload_profile_picture/", {}, format="multipart"), 400)
    data_of(client.post("/api/profiles/upload_profile_picture/", {"profile_picture": "x"}, format="json"), 415)


def test_stored_english_user_types_are_migrated_to_the_apps_words(transactional_db, make_user):
    users = {name: make_user(name) for name in ("t", "o", "a")}
    executor = MigrationExecutor(connection)
    executor.migrate([("accounts", "0002_profiles_for_existing_users")])
    with connection.cursor() as cursor:
        for name, old in (("t", "tenant"), ("o", "owner"), ("a", "agent")):
            cursor.execute(
                "UPDATE accounts_profile SET user_type = %s WHERE user_id = %s", [old, users[name].pk]
            )
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes("accounts"))
    stored = dict(Profile.objects.values_list("user__username", "user_type"))
    assert stored == {"t": "inquilino", "o": "propietario", "a": "agente"}


# --- Logout ---------------------------------------------------------------------------


def test_logout_as_the_app_sends_it_revokes_the_access_token(make_user):
    make_user("alice")
    pair = login("alice")
    client = bearer(pair["access"])
    assert data_of(client.post("/api/logout/", {}, format="json"), 200) is None
    assert data_of(client.get("/api/users/me/"), 401) == {"code": "token_not_valid"}
    # Idempotent: the same logout again is still a 200 and changes nothing.
    assert data_of(client.post("/api/logout/", {}, format="json"), 200) is None
    assert data_of(client.post("/api/logout/", {"refresh": ""}, format="json"), 200) is None
    data_of(client.get("/api/users/me/"), 401)
    # Without a refresh token in the body, the refresh token is not touched.
    data_of(APIClient().post("/api/refresh/", {"refresh": pair["refresh"]}, format="json"), 200)


def test_logout_with_the_refresh_token_revokes_both_idempotently(make_user):
    make_user("alice")
    pair = login("alice")
    client = bearer(pair["access"])
    for _ in range(2):
        assert data_of(client.post("/api/logout/", {"refresh": pair["refresh"]}, format="json"), 200) is None
    data_of(client.get("/api/users/me/"), 401)
    data_of(APIClient().post("/api/refresh/", {"refresh": pair["refresh"]}, format="json"), 401)


def test_logout_with_an_already_rotated_refresh_token_still_revokes_the_access_token(make_user):
    make_user("alice")
    first = login("alice")
    second = data_of(APIClient().post("/api/refresh/", {"refresh": first["refresh"]}, format="json"), 200)
    for access in (first["access"], second["access"]):
        client = bearer(access)
        assert data_of(client.post("/api/logout/", {"refresh": first["refresh"]}, format="json"), 200) is None
        data_of(client.get("/api/users/me/"), 401)
    # The rotated pair's refresh token was not sent, so it still works.
    data_of(APIClient().post("/api/refresh/", {"refresh": second["refresh"]}, format="json"), 200)


def test_logout_needs_a_valid_access_token(make_user):
    make_user("alice")
    data_of(APIClient().post("/api/logout/", {}, format="json"), 401)
    data_of(bearer("garbage").post("/api/logout/", {}, format="json"), 401)
