"""Liveness and readiness (/healthz, /readyz): not enveloped, every check reported by
name, 503 when the database, the channel layer or Redis is unreachable."""

import time

import pytest

from tests.support.live import LiveServer, free_port, http_json, server_env

pytestmark = pytest.mark.django_db

CHECK_KEYS_OK = {"ok", "ms"}
CHECK_KEYS_FAILED = {"ok", "error", "ms"}


@pytest.fixture
def chat_settings(settings):
    """HABITTO_CHAT of this test (a copy: the override must not leak)."""
    settings.HABITTO_CHAT = {**settings.HABITTO_CHAT, "REDIS_URL": "", "REDIS_TIMEOUT": 0.5}
    return settings.HABITTO_CHAT


def assert_ok_check(check):
    assert set(check) == CHECK_KEYS_OK and check["ok"] is True
    assert isinstance(check["ms"], float | int) and check["ms"] >= 0


def assert_failed_check(check):
    assert set(check) == CHECK_KEYS_FAILED and check["ok"] is False
    assert isinstance(check["error"], str) and check["error"]


def test_healthz(client):
    """/healthz answers 200 {"status": "ok"} without authentication or envelope."""
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_ok_without_redis(client, chat_settings):
    """/readyz: 200 with exactly database and channel_layer when REDIS_URL is unset."""
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"status", "checks"} and body["status"] == "ok"
    assert set(body["checks"]) == {"database", "channel_layer"}
    assert_ok_check(body["checks"]["database"])
    assert_ok_check(body["checks"]["channel_layer"])


def test_readyz_fails_when_redis_unreachable(client, chat_settings):
    """A REDIS_URL where nothing listens makes /readyz 503 naming redis."""
    chat_settings["REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"
    response = client.get("/readyz")
    assert response.status_code == 503, response.content
    body = response.json()
    assert body["status"] == "unavailable"
    assert set(body["checks"]) == {"database", "channel_layer", "redis"}
    assert_failed_check(body["checks"]["redis"])
    assert_ok_check(body["checks"]["database"])


@pytest.mark.redis
def test_readyz_reports_real_redis(client, chat_settings, redis_url):
    """With a reachable Redis, /readyz is 200 and reports redis ok."""
    chat_settings["REDIS_URL"] = redis_url
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body["checks"]) == {"database", "channel_layer", "redis"}
    assert_ok_check(body["checks"]["redis"])


def test_readyz_fails_when_database_query_fails(client, chat_settings, monkeypatch):
    """A database error makes /readyz 503 naming database, with the error text."""
    from django.db import OperationalError

    from habitto_chat import health

    def broken():
        raise OperationalError("connection refused")

    monkeypatch.setattr(health, "_query_database", broken)
    response = client.get("/readyz")
    assert response.status_code == 503
    check = response.json()["checks"]["database"]
    assert_failed_check(check)
    assert check["error"] == "OperationalError: connection refused"
    assert_ok_check(response.json()["checks"]["channel_layer"])


# --- real server processes -----------------------------------------------------------


def _ready(server, want_status, attempts=20):
    """Poll /readyz until it answers want_status (the hub subscribes after start)."""
    for _ in range(attempts):
        status, body = http_json("GET", server.http_url() + "/readyz", timeout=15)
        if status == want_status:
            return body
        time.sleep(0.25)
    raise AssertionError(f"/readyz stayed {status}: {body}\n{server.log()}")


@pytest.mark.e2e
def test_live_readyz_ok(tmp_path):
    """A real server with SQLite and the in-memory layer is ready."""
    with LiveServer(server_env(tmp_path), [free_port()], tmp_path / "server.log") as server:
        body = _ready(server, 200)
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "channel_layer"}


@pytest.mark.e2e
def test_live_readyz_fails_when_database_unreachable(tmp_path):
    """A server whose PostgreSQL port has no listener: /healthz 200, /readyz 503 naming database."""
    database_url = f"postgres://postgres@127.0.0.1:{free_port()}/nowhere"
    env = server_env(tmp_path, database_url=database_url, DB_CONNECT_TIMEOUT=2)
    with LiveServer(env, [free_port()], tmp_path / "server.log") as server:
        assert http_json("GET", server.http_url() + "/healthz") == (200, {"status": "ok"})
        body = _ready(server, 503, attempts=1)
    assert body["status"] == "unavailable"
    assert_failed_check(body["checks"]["database"])
    error = body["checks"]["database"]["error"].lower()
    assert "connect" in error or "timed out" in error  # refused at once, or the pool's wait ran out
    assert_ok_check(body["checks"]["channel_layer"])


@pytest.mark.e2e
def test_live_readyz_fails_when_redis_unreachable(tmp_path):
    """A server whose REDIS_URL has no listener: /readyz 503 naming redis and the channel layer."""
    env = server_env(tmp_path, redis_url=f"redis://127.0.0.1:{free_port()}/0", REDIS_TIMEOUT=0.5)
    with LiveServer(env, [free_port()], tmp_path / "server.log") as server:
        assert http_json("GET", server.http_url() + "/healthz") == (200, {"status": "ok"})
        body = _ready(server, 503, attempts=1)
    assert body["status"] == "unavailable"
    assert set(body["checks"]) == {"database", "channel_layer", "redis"}
    assert_failed_check(body["checks"]["redis"])
    assert_failed_check(body["checks"]["channel_layer"])
    assert_ok_check(body["checks"]["database"])


@pytest.mark.e2e
@pytest.mark.redis
def test_live_readyz_ok_with_real_redis(tmp_path, redis_url):
    """A server on the real Redis is ready, reporting redis and the layer round trip ok."""
    env = server_env(tmp_path, redis_url=redis_url)
    with LiveServer(env, [free_port()], tmp_path / "server.log") as server:
        body = _ready(server, 200)
    assert set(body["checks"]) == {"database", "channel_layer", "redis"}
    for name in ("database", "channel_layer", "redis"):
        assert_ok_check(body["checks"][name])
