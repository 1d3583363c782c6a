"""Hostile input against the accounts API: odd token claims, registration races and
look-alike names, invisible passwords, unknown paths and methods with DEBUG on or off,
and an OpenAPI schema that must describe what really comes back."""

import threading
from datetime import timedelta
from unittest import mock

import jsonschema
import pytest
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from habitto_accounts import tokens
from habitto_accounts import urls as accounts_urls
from habitto_chat.tokens import TokenError, decode_access_token, decode_socket_token
from tests.support.accounts import bearer, data_of, login, png_bytes, upload

pytestmark = pytest.mark.django_db
User = get_user_model()


def registration(username, email=None, password="long-and-unusual-42"):
    return {"username": username, "email": email or f"{username}@example.test", "password": password}


# --- Every malformed token is a 401 --------------------------------------------------

ODD_CLAIMS = {
    "user_id abc": {"user_id": "abc"},
    "user_id missing": {"user_id": None},
    "user_id list": {"user_id": [1]},
    "user_id object": {"user_id": {"id": 1}},
    "user_id true": {"user_id": True},
    "user_id float": {"user_id": 1.0},
    "user_id zero": {"user_id": 0},
    "user_id negative": {"user_id": -1},
    "user_id 2**63": {"user_id": 2**63},
    "user_id 2**70": {"user_id": 2**70},
    "user_id arabic digits": {"user_id": "١"},
    "user_id ' 1'": {"user_id": " 1"},
    "exp far future": {"exp": 10**20},
    "exp huge float": {"exp": 1e300},
    "exp string": {"exp": "tomorrow"},
    "iat far future": {"iat": 10**20},
    "jti list": {"jti": ["a"]},
    "token_type list": {"token_type": ["access"]},
}


def odd_token(user, claims, token_class=AccessToken):
    token = token_class.for_user(user)
    for claim, value in claims.items():
        if value is None:
            del token.payload[claim]
        else:
            token.payload[claim] = value
    return str(token)  # signed with our key


@pytest.mark.parametrize("claims", ODD_CLAIMS.values(), ids=ODD_CLAIMS.keys())
def test_access_tokens_with_odd_claims_are_401_on_rest_and_refused_for_sockets(make_user, claims):
    alice = make_user("alice")
    raw = odd_token(alice, claims)
    client = Client(raise_request_exception=False, HTTP_AUTHORIZATION=f"Bearer {raw}")
    for method, path in (("get", "/api/users/me/"), ("get", "/api/profiles/me/"), ("post", "/api/logout/")):
        data_of(getattr(client, method)(path, content_type="application/json"), 401)
    for decode in (decode_access_token, decode_socket_token):  # REST's, and the sockets' (grace)
        with pytest.raises(TokenError):
            decode(raw)


@pytest.mark.parametrize("claims", ODD_CLAIMS.values(), ids=ODD_CLAIMS.keys())
def test_refresh_tokens_with_odd_claims_are_401(make_user, claims):
    alice = make_user("alice")
    raw = odd_token(alice, claims, tokens.RefreshToken)
    client = Client(raise_request_exception=False)
    data_of(client.post("/api/refresh/", {"refresh": raw}, content_type="application/json"), 401)


def test_tokens_of_deleted_users_are_401_and_simplejwt_string_ids_still_work(make_user):
    alice, bob = make_user("alice"), make_user("bob")
    bob_access = login("bob")["access"]
    bob.delete()
    data_of(bearer(bob_access).get("/api/users/me/"), 401)
    as_string = odd_token(alice, {"user_id": str(alice.pk)})  # what simplejwt >= 5.5 writes
    assert data_of(bearer(as_string).get("/api/users/me/"), 200)["id"] == alice.pk
    expired = AccessToken.for_user(alice)
    expired.set_exp(lifetime=-timedelta(minutes=1))
    data_of(bearer(str(expired)).get("/api/users/me/"), 401)


# --- Case-insensitive uniqueness, enforced by the database ---------------------------


def test_the_database_refuses_usernames_and_emails_differing_only_in_case(make_user):
    make_user("alice", email="alice@example.test")
    for fields in ({"username": "ALICE", "email": "x@example.test"}, {"username": "x", "email": "Alice@Example.TEST"}):
        with pytest.raises(IntegrityError), transaction.atomic():
            User.objects.create(**fields)
    # Users without an email do not collide.
    User.objects.create(username="n1", email="")
    User.objects.create(username="n2", email="")


@pytest.mark.parametrize("field", ["username", "email"])
def test_a_lost_race_is_the_same_400_as_the_check(make_user, field):
    """The check passed (someone else's insert came after it), the unique index refuses."""
    make_user("racer", email="racer@example.test")
    body = registration("RACER") if field == "username" else registration("other", "RACER@example.test")
    with mock.patch("habitto_accounts.serializers.taken", return_value=False):
        data = data_of(APIClient().post("/api/users/", body, format="json"), 400)
    expected = data_of(APIClient().post("/api/users/", body, format="json"), 400)
    assert data[field] == expected[field] and field in data
    assert User.objects.count() == 1


def _race(bodies):
    """Register every body at once, each from its own thread and connection; all of them
    pass the duplicate check before any inserts (a barrier inside create)."""
    from habitto_accounts.serializers import RegistrationSerializer

    barrier = threading.Barrier(len(bodies), timeout=20)
    original_create = RegistrationSerializer.create

    def create_after_everyone_checked(self, validated_data):
        barrier.wait()
        return original_create(self, validated_data)

    results = [None] * len(bodies)

    def register(index, body):
        try:
            response = APIClient().post("/api/users/", body, format="json")
            results[index] = (response.status_code, response.json())
        finally:
            connection.close()

    with mock.patch.object(RegistrationSerializer, "create", create_after_everyone_checked):
        threads = [threading.Thread(target=register, args=(i, body)) for i, body in enumerate(bodies)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    return results


@pytest.mark.parametrize("field", ["username", "email"])
def test_six_concurrent_registrations_differing_in_case_make_one_account(transactional_db, field):
    if connection.vendor != "postgresql":
        pytest.skip("concurrent writers need PostgreSQL: this runs in the make test-postgres pass")
    spellings = ["Racer", "racer", "RACER", "rAcEr", "RaCeR", "racER"]
    if field == "username":
        bodies = [registration(name, f"{i}@example.test") for i, name in enumerate(spellings)]
    else:
        bodies = [registration(f"user{i}", f"{name}@example.test") for i, name in enumerate(spellings)]
    results = _race(bodies)
    assert sorted(status for status, _ in results) == [201] + [400] * 5, results
    for status, body in results:
        if status == 400:
            assert body["success"] is False and list(body["data"]) == [field], body
    assert User.objects.count() == 1


def test_usernames_are_nfkc_normalised_before_the_check(make_user):
    make_user("alice")
    data = data_of(APIClient().post("/api/users/", registration("ａｌｉｃｅ", "a2@example.test"), format="json"), 400)
    assert data == {"username": ["A user with that username already exists."]}
    created = data_of(APIClient().post("/api/users/", registration("ｄａｎａ", "d@example.test"), format="json"), 201)
    assert created["username"] == "dana"


@pytest.mark.parametrize("username", ["\u0430lice", "аlісе", "jos\u00e9", "bad name", "a\u200bb", "ǅ"])
def test_look_alike_and_unsafe_usernames_are_refused(make_user, username):
    make_user("alice")
    data = data_of(APIClient().post("/api/users/", registration(username, "x@example.test"), format="json"), 400)
    assert "username" in data
    assert User.objects.count() == 1


def test_the_index_migration_stops_on_existing_case_duplicates(transactional_db):
    executor = MigrationExecutor(connection)
    executor.migrate([("accounts", "0003_user_types_in_the_apps_words")])  # no indexes
    User.objects.create(username="Bob", email="bob@example.test")
    User.objects.create(username="bob", email="bob2@example.test")
    executor = MigrationExecutor(connection)
    with pytest.raises(RuntimeError, match="bob"):
        executor.migrate([("accounts", "0004_case_insensitive_unique_users")])
    User.objects.filter(username="bob").delete()
    executor = MigrationExecutor(connection)
    executor.migrate([("accounts", "0004_case_insensitive_unique_users")])
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create(username="BOB", email="b3@example.test")


# --- Passwords -------------------------------------------------------------------------


@pytest.mark.parametrize("password", [" " * 10, "\u00a0" * 12, "\u200b" * 12, " \t\n" * 4, "\u3000" * 10])
def test_invisible_passwords_are_refused(password):
    data = data_of(APIClient().post("/api/users/", registration("dana", password=password), format="json"), 400)
    assert "password" in data and not User.objects.exists()


# --- Every /api/ answer is JSON in the envelope ----------------------------------------


@pytest.mark.parametrize("debug", [True, False], ids=["DEBUG on", "DEBUG off"])
@pytest.mark.parametrize(
    "method, path, status",
    [
        ("get", "/api/", 404),
        ("get", "/api/nope/", 404),
        ("post", "/api/nope/deeper/", 404),
        ("get", "/api/profiles/abc/", 404),
        ("get", "/api/users/1/", 404),
        ("get", "/api/properties/", 404),  # the app calls it; Habitto's backend serves it
        ("put", "/api/login/", 405),
        ("delete", "/api/profiles/me/", 405),
        ("get", "/api/profiles/update_me/", 405),
        ("get", "/api/logout/", 405),
    ],
)
def test_api_errors_are_json_envelopes_with_debug_on_or_off(settings, make_user, client_for, debug, method, path, status):
    settings.DEBUG = debug
    client = client_for(make_user("alice"))
    response = getattr(client, method)(path)
    assert response["Content-Type"].startswith("application/json")
    data_of(response, status)
    if status == 405:
        assert response["Allow"]


@pytest.mark.parametrize("debug", [True, False], ids=["DEBUG on", "DEBUG off"])
def test_an_unexpected_error_is_a_json_500_with_debug_on_or_off(settings, make_user, debug):
    settings.DEBUG = debug
    alice = make_user("alice")
    client = Client(raise_request_exception=False)
    with mock.patch("habitto_accounts.views.MeView.get", side_effect=RuntimeError("boom")):
        access = str(AccessToken.for_user(alice))
        response = client.get("/api/users/me/", HTTP_AUTHORIZATION=f"Bearer {access}")
    assert response["Content-Type"].startswith("application/json")
    assert response.json() == {"success": False, "message": "Server error.", "data": None}
    assert response.status_code == 500


def test_other_paths_are_left_alone(settings):
    settings.DEBUG = True
    response = Client().get("/not-api/")
    assert response.status_code == 404 and not response["Content-Type"].startswith("application/json")


# --- The OpenAPI schema describes what really comes back -------------------------------


def _json_schema(node):
    """OpenAPI 3.0 schema -> JSON Schema: `nullable` becomes a null alternative."""
    if isinstance(node, list):
        return [_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _json_schema(value) for key, value in node.items()}
    if node.pop("nullable", False):
        node = {"anyOf": [node, {"type": "null"}]}
    return node


@pytest.fixture(scope="module")
def openapi():
    return SchemaGenerator().get_schema(request=None, public=True)


def answer_schema(openapi, method, path, status):
    response = openapi["paths"][path][method]["responses"][str(status)]
    schema = response["content"]["application/json"]["schema"]
    return {**_json_schema(schema), "components": _json_schema(openapi["components"])}


def test_every_accounts_answer_is_described_in_the_envelope(openapi):
    prefixes = tuple(f"/api/{pattern.pattern}" for pattern in accounts_urls.urlpatterns)
    accounts = {p: ops for p, ops in openapi["paths"].items() if p.startswith(prefixes)}
    assert len(accounts) >= 10, sorted(accounts)
    assert {"/api/profiles/update_me/", "/api/profiles/upload_profile_picture/", "/api/profiles/{profile_id}/"} <= set(accounts)
    for path, operations in accounts.items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                ref = response["content"]["application/json"]["schema"]["$ref"]
                assert ref.endswith("Envelope"), (method, path, status, ref)
            for parameter in operation.get("parameters", []):
                if parameter["name"].endswith("id") or parameter["name"] in ("page", "page_size"):
                    assert parameter["schema"]["minimum"] == 1 and parameter["schema"]["maximum"], parameter


def test_real_answers_match_the_schema(openapi, make_user, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    bob = make_user("bob")
    anonymous = APIClient()
    registered = anonymous.post("/api/users/", registration("dana"), format="json")
    pair = login("dana", "long-and-unusual-42")
    client = bearer(pair["access"])
    dana_profile = User.objects.get(username="dana").profile.pk
    checks = [
        ("post", "/api/users/", 201, registered),
        ("post", "/api/users/", 400, anonymous.post("/api/users/", registration("DANA"), format="json")),
        ("post", "/api/login/", 200, anonymous.post("/api/login/", {"username": "dana", "password": "long-and-unusual-42"}, format="json")),
        ("post", "/api/login/", 401, anonymous.post("/api/login/", {"username": "dana", "password": "no"}, format="json")),
        ("get", "/api/users/", 200, client.get("/api/users/")),
        ("get", "/api/users/me/", 200, client.get("/api/users/me/")),
        ("get", "/api/users/me/", 401, anonymous.get("/api/users/me/")),
        ("get", "/api/profiles/", 200, client.get("/api/profiles/", {"user_id": bob.pk})),
        ("get", "/api/profiles/", 400, client.get("/api/profiles/", {"page_size": 0})),
        ("get", "/api/profiles/me/", 200, client.get("/api/profiles/me/")),
        ("get", "/api/profiles/{profile_id}/", 200, client.get(f"/api/profiles/{bob.profile.pk}/")),
        ("get", "/api/profiles/{profile_id}/", 404, client.get("/api/profiles/999999/")),
        ("put", "/api/profiles/{profile_id}/", 403, client.put(f"/api/profiles/{bob.profile.pk}/", {}, format="json")),
        ("patch", "/api/profiles/update_me/", 200, client.patch("/api/profiles/update_me/", {"user_type": "agente"}, format="json")),
        ("patch", "/api/profiles/update_me/", 400, client.patch("/api/profiles/update_me/", {"user_type": "x"}, format="json")),
        ("post", "/api/profiles/upload_profile_picture/", 200, client.post("/api/profiles/upload_profile_picture/", {"profile_picture": upload(png_bytes())})),
        ("patch", "/api/profiles/{profile_id}/", 200, client.patch(f"/api/profiles/{dana_profile}/", {"phone": ""}, format="json")),
        ("post", "/api/refresh/", 200, anonymous.post("/api/refresh/", {"refresh": pair["refresh"]}, format="json")),
        ("post", "/api/logout/", 200, client.post("/api/logout/", {}, format="json")),
    ]
    for method, path, status, response in checks:
        assert response.status_code == status, (method, path, response.content)
        jsonschema.validate(response.json(), answer_schema(openapi, method, path, status))
