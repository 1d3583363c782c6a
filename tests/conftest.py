"""Fixtures shared by the whole suite: users with tokens, API clients, real services."""

import asyncio
import itertools

import pytest

from tests.support import services

_numbers = itertools.count(1)
WS_HOST = "chat.example.test"  # the Host header of test sockets (absolute picture URLs)
WS_WAIT = 3  # seconds for a socket frame that must come


@pytest.fixture
def make_user(django_user_model):
    """Create an active user: make_user("alice", first_name="Alice")."""

    def create(username=None, password="s3cret-Passw0rd!", **fields):
        username = username or f"user{next(_numbers)}"
        fields.setdefault("email", f"{username}@example.test")
        return django_user_model.objects.create_user(username=username, password=password, **fields)

    return create


@pytest.fixture
def token_for():
    """A valid access token for a user (what /api/login/ would return)."""
    from rest_framework_simplejwt.tokens import AccessToken

    return lambda user: str(AccessToken.for_user(user))


@pytest.fixture
def client_for(token_for):
    """An APIClient authenticated as the given user (None: anonymous)."""
    from rest_framework.test import APIClient

    def build(user=None):
        client = APIClient()
        if user is not None:
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(user)}")
        return client

    return build


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    """The default hasher costs ~0.25 s per user; tests don't need its strength."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_realtime_state():
    """Rate-limit buckets are per process; tests must not inherit each other's."""
    from habitto_chat import ratelimit

    ratelimit.reset()
    yield


@pytest.fixture(autouse=True)
def _fresh_throttles():
    """Throttle counters live in the cache: each test starts with none (local memory
    only; a Redis cache is never flushed from here)."""
    from django.core.cache import caches
    from django.core.cache.backends.locmem import LocMemCache

    from habitto_chat.api import throttling

    if isinstance(caches["default"], LocMemCache):
        caches["default"].clear()
    throttling.reset()
    yield


def _fail_on_server_tracebacks(expected=()):
    from tests.support.live import new_tracebacks

    found = new_tracebacks(expected)
    assert not found, "a live server logged a traceback:\n" + "\n".join(f"--- {p}\n{t}" for p, t in found)


@pytest.fixture(autouse=True)
def _no_traceback_in_live_server_logs(request):
    """End-to-end servers must log no traceback: checked after every test (blaming the
    test that was running) and once more after the last server stopped. A test that
    breaks a service on purpose names what it expects with
    @pytest.mark.server_tracebacks_expected("text in the traceback")."""
    yield
    marker = request.node.get_closest_marker("server_tracebacks_expected")
    _fail_on_server_tracebacks(marker.args if marker else ())


@pytest.fixture(scope="session", autouse=True)
def _no_traceback_in_live_server_logs_at_the_end():
    yield
    _fail_on_server_tracebacks()


@pytest.fixture
def close_writer():
    """Close the group-commit writer thread's DB connection after a socket test."""
    yield
    from habitto_chat.realtime.batcher import close_writer_connection

    close_writer_connection()


@pytest.fixture(scope="session", autouse=True)
def _writer_connection_closed_before_teardown(django_db_setup, django_db_blocker):
    """The writer thread's connection would keep PostgreSQL from dropping the test
    database; depending on django_db_setup makes this run before that teardown."""
    yield
    from habitto_chat.realtime.batcher import close_writer_connection

    with django_db_blocker.unblock():
        close_writer_connection()


@pytest.fixture
async def ws():
    """Open a socket: `await ws(path, token)`; every socket opened is disconnected afterwards."""
    from channels.testing import WebsocketCommunicator

    from habitto_server.asgi import application

    opened = []

    async def open_socket(path, token=None, headers=(), subprotocols=None, subprotocol=None):
        if token is not None:
            path += f"?token={token}"
        communicator = WebsocketCommunicator(
            application, path, headers=[(b"host", WS_HOST.encode()), *headers], subprotocols=subprotocols
        )
        opened.append(communicator)
        connected, chosen = await communicator.connect(timeout=WS_WAIT)
        assert connected, "a refusal must come after accept, as a close code"
        assert chosen == subprotocol
        return communicator

    yield open_socket
    for communicator in opened:
        if not communicator.future.done():
            await communicator.disconnect(timeout=WS_WAIT)
        elif not communicator.future.cancelled():  # cancelled: a receive timed out (already failing)
            communicator.future.result()  # surface the consumer's exception, if any
    # Device sockets store their user's last seen after closing: done before the database is flushed.
    from habitto_chat.realtime.presence import presence

    await asyncio.wait_for(presence.settled(), WS_WAIT)


@pytest.fixture
def pair(make_user, token_for):
    """Alice and Bob, their tokens and their room's path."""
    alice, bob = make_user("alice", first_name="Alice"), make_user("bob")
    low, high = sorted((alice.pk, bob.pk))
    return alice, bob, token_for(alice), token_for(bob), f"/ws/chat/{low}-{high}/"


@pytest.fixture(scope="session")
def redis_url():
    url = services.redis_url()
    ok, why = services.check_redis(url)
    services.require("redis", ok, why)
    return url


@pytest.fixture(scope="session")
def postgres_admin_url():
    url = services.postgres_admin_url()
    ok, why = services.check_postgres(url)
    services.require("postgres", ok, why)
    return url


@pytest.fixture
def postgres_database(postgres_admin_url):
    """A throwaway PostgreSQL database for server processes (dropped afterwards)."""
    url, drop = services.create_postgres_database(postgres_admin_url)
    yield url
    drop()
