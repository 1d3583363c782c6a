"""Throttles (habitto_chat/api/throttling.py, habitto_accounts/throttling.py): login per
account and per client address, registration and refresh per address, REST sends on the
socket send budget, shared across processes through Redis, open when the cache is down."""

import json
import logging
import uuid

import pytest
from rest_framework.test import APIClient

from habitto_chat import ratelimit
from tests.support.live import LiveServer, free_port, http_json, manage, server_env

pytestmark = pytest.mark.django_db
PASSWORD = "s3cret-Passw0rd!"  # conftest's make_user default


@pytest.fixture
def rates(settings):
    """Set throttle rates for one test; day windows, so no window ends mid-test (but at midnight)."""

    def apply(**rates):
        settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}

    return apply


def login(username, password, address="127.0.0.1", **headers):
    return APIClient(REMOTE_ADDR=address, **headers).post(
        "/api/login/", {"username": username, "password": password}, format="json")


def check_429(response, code):
    assert response.status_code == 429, response.content
    assert 0 < int(response["Retry-After"]) <= 86400
    body = response.json()
    assert body["success"] is False and body["data"]["code"] == code
    return body


def test_an_account_locks_after_n_failures_even_for_the_right_password(make_user, rates):
    rates(login_failures="3/d")
    make_user("alice")
    make_user("bob")
    for address in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):  # spread over addresses: still counted
        assert login("alice", "wrong", address).status_code == 401
    body = check_429(login("alice", PASSWORD, "10.0.0.4"), "account_locked")
    assert "failed logins" in body["message"]
    check_429(login("ALICE", PASSWORD), "account_locked")  # case variants share the lock
    assert login("bob", PASSWORD).status_code == 200  # other accounts are unaffected


def test_a_successful_login_forgets_earlier_failures(make_user, rates):
    rates(login_failures="3/d")
    make_user("alice")
    for _ in range(2):
        assert login("alice", "wrong").status_code == 401
    assert login("alice", PASSWORD).status_code == 200
    for _ in range(2):
        assert login("alice", "wrong").status_code == 401
    assert login("alice", PASSWORD).status_code == 200


def test_login_is_limited_per_client_address_and_a_forwarded_header_does_not_evade_it(make_user, rates):
    rates(login="3/d")
    make_user("alice")
    for n in range(3):
        assert login("alice", PASSWORD, "10.0.0.1", HTTP_X_FORWARDED_FOR=f"192.0.2.{n}").status_code == 200
    check_429(login("alice", PASSWORD, "10.0.0.1", HTTP_X_FORWARDED_FOR="192.0.2.99"), "throttled")
    assert login("alice", PASSWORD, "10.0.0.2").status_code == 200


def test_registration_is_limited_per_client_address(make_user, rates, client_for):
    rates(register="2/d")

    def register(n, address="10.0.0.1"):
        return APIClient(REMOTE_ADDR=address).post("/api/users/", {
            "username": f"newcomer{n}", "email": f"newcomer{n}@example.test",
            "password": "long-and-unusual-42", "first_name": "N", "last_name": "C"}, format="json")

    assert register(1).status_code == 201
    assert register(2).status_code == 201
    check_429(register(3), "throttled")
    assert register(4, "10.0.0.2").status_code == 201
    assert client_for(make_user()).get("/api/users/").status_code == 200  # listing is not throttled


def test_token_refresh_is_limited_per_client_address(make_user, rates):
    rates(refresh="2/d")
    make_user("alice")
    refresh = login("alice", PASSWORD).json()["data"]["refresh"]
    client = APIClient(REMOTE_ADDR="10.0.0.1")
    for _ in range(2):
        response = client.post("/api/refresh/", {"refresh": refresh}, format="json")
        assert response.status_code == 200, response.content
        refresh = response.json()["data"]["refresh"]
    check_429(client.post("/api/refresh/", {"refresh": refresh}, format="json"), "throttled")


# --- REST sends spend the socket send budget ----------------------------------------------

@pytest.fixture
def send_budget(settings):
    settings.HABITTO_CHAT = {**settings.HABITTO_CHAT, "SEND_BURST": 4, "SEND_RATE_PER_SECOND": 0.01}


def rest_send(client, receiver, n):
    return client.post("/api/messages/", {"receiver": receiver.pk, "content": f"hello {n}"}, format="json")


def test_rest_sends_spend_the_socket_budget(send_budget, make_user, client_for):
    alice, bob = make_user(), make_user()
    client = client_for(alice)
    for n in range(4):
        assert rest_send(client, bob, n).status_code == 201
    assert not ratelimit.allow_send(alice.pk)  # what the socket consumer asks before a send
    assert ratelimit.allow_send(bob.pk)


def test_socket_sends_leave_less_for_rest(send_budget, make_user, client_for):
    alice, bob = make_user(), make_user()
    for _ in range(3):
        assert ratelimit.allow_send(alice.pk)
    client = client_for(alice)
    assert rest_send(client, bob, 1).status_code == 201
    check_429(rest_send(client, bob, 2), "throttled")
    assert client.get("/api/messages/").status_code == 200  # reads are not throttled


def test_rest_sends_are_bounded_in_the_shared_cache_too(send_budget, make_user, client_for):
    """Another process's bucket is fresh: the cache window still stops a fifth send."""
    alice, bob = make_user(), make_user()
    client = client_for(alice)
    for n in range(4):
        assert rest_send(client, bob, n).status_code == 201
    ratelimit.reset()  # as if the next request reached another process
    check_429(rest_send(client, bob, 5), "throttled")


# --- a cache that is down ---------------------------------------------------------------------

def test_throttles_fail_open_when_redis_is_down(settings, rates, make_user, caplog):
    settings.CACHES = {"default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": f"redis://127.0.0.1:{free_port()}/5",  # nothing listens there
        "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}}}
    rates(login="1/d", login_failures="1/d")
    make_user("alice")
    with caplog.at_level(logging.WARNING, logger="habitto_chat.throttling"):
        assert login("alice", "wrong").status_code == 401
        assert login("alice", PASSWORD).status_code == 200
        assert login("alice", PASSWORD).status_code == 200
    assert any("throttle cache unavailable" in r.getMessage() for r in caplog.records)


# --- real processes: limits shared through Redis, the trusted proxy hop ----------------------

def start_servers(tmp_path, redis_url, **env_extra):
    env = server_env(tmp_path, redis_url=redis_url, REDIS_CACHE_PREFIX=f"test-{uuid.uuid4().hex}",
                     THROTTLE_LOGIN="4/d", THROTTLE_LOGIN_FAILURES="3/d", **env_extra)
    manage(env, "migrate", "--noinput")
    users = json.loads(manage(env, "create_loadtest_users", "--count", "2", "--prefix",
                              f"thr{uuid.uuid4().hex[:6]}u", "--password", "Throttle-pass-1"))
    trusting = LiveServer(env, [free_port()], tmp_path / "trusting.log")
    # The second process trusts no proxy: X-Forwarded-For from 127.0.0.1 is a client's claim.
    untrusting = LiveServer({**env, "FORWARDED_ALLOW_IPS": "10.255.255.1"}, [free_port()],
                            tmp_path / "untrusting.log")
    return trusting, untrusting, users


def live_login(server, user, password=None, forwarded_for=None):
    import urllib.request

    request = urllib.request.Request(
        f"{server.http_url()}/api/login/", method="POST",
        data=json.dumps({"username": user["username"], "password": password or "Throttle-pass-1"}).encode(),
        headers={"Content-Type": "application/json", **({"X-Forwarded-For": forwarded_for} if forwarded_for else {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.redis
def test_login_limits_hold_across_two_processes_through_redis(tmp_path, redis_url):
    first, second, (alice, bob) = start_servers(tmp_path, redis_url)
    with first, second:
        assert live_login(first, alice, "wrong")[0] == 401
        assert live_login(second, alice, "wrong")[0] == 401
        assert live_login(first, alice, "wrong")[0] == 401
        status, body = live_login(second, alice)  # the right password, on the other process
        assert status == 429 and body["data"]["code"] == "account_locked", body
        # The four attempts above came from 127.0.0.1 through both processes: the fifth is over.
        status, body = live_login(first, bob)
        assert status == 429 and body["data"]["code"] == "throttled", body
        assert http_json("GET", f"{first.http_url()}/healthz")[0] == 200


@pytest.mark.redis
def test_only_a_trusted_proxy_hop_names_the_client_address(tmp_path, redis_url):
    trusting, untrusting, (alice, _) = start_servers(tmp_path, redis_url)
    with trusting, untrusting:
        # Behind a trusted proxy, each client address has its own budget.
        for _ in range(4):
            assert live_login(trusting, alice, forwarded_for="203.0.113.1")[0] == 200
        assert live_login(trusting, alice, forwarded_for="203.0.113.1")[0] == 429
        assert live_login(trusting, alice, forwarded_for="203.0.113.2")[0] == 200
        # From an untrusted peer the header is ignored: a new address per request evades nothing.
        for n in range(4):
            assert live_login(untrusting, alice, forwarded_for=f"198.51.100.{n}")[0] == 200
        status, body = live_login(untrusting, alice, forwarded_for="198.51.100.99")
        assert status == 429, body


# --- settings ------------------------------------------------------------------------------

def test_a_malformed_rate_refuses_to_start_and_redis_carries_the_counters(tmp_path):
    from tests.test_settings import clean_env, run_python, setting

    bad = run_python(clean_env(tmp_path, DEBUG="1", THROTTLE_LOGIN="lots"), "import django; django.setup()")
    assert bad.returncode != 0 and "THROTTLE_LOGIN" in bad.stderr
    env = clean_env(tmp_path, DEBUG="1", REDIS_URL="redis://127.0.0.1:6379/5", THROTTLE_LOGIN_FAILURES="5/30m")
    assert "RedisCache" in setting(env, "settings.CACHES['default']['BACKEND']")
    assert setting(env, "settings.REST_FRAMEWORK['DEFAULT_THROTTLE_RATES']['login_failures']") == "'5/30m'"
    assert setting(env, "settings.REST_FRAMEWORK['NUM_PROXIES']") == "0"
