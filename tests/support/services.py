"""Real services for tests: find them, or skip loudly (fail under REQUIRE_SERVICES=1)."""

import os
import shutil
import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest

DEFAULT_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def services_required():
    return os.environ.get("REQUIRE_SERVICES", "").lower() in {"1", "true", "yes"}


def require(service, available, why=""):
    """Skip (or, in CI, fail) a test whose real service is missing."""
    if available:
        return
    message = f"{service} is not available: {why}"
    if services_required():
        pytest.fail(f"REQUIRE_SERVICES is set and {message}", pytrace=False)
    print(f"\n*** SKIPPING: {message} ***")
    pytest.skip(f"LOUD SKIP: {message} (set REQUIRE_SERVICES=1 to make this a failure)")


def chromium_binary():
    """Debian's headless Chromium (the `chromium` package), or skip loudly."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    require("chromium", path is not None, "no chromium binary (apt-get install chromium)")
    return path


def postgres_admin_url():
    return os.environ.get("TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


def redis_url():
    return os.environ.get("TEST_REDIS_URL", DEFAULT_REDIS_URL)


def check_postgres(url):
    try:
        import psycopg

        with psycopg.connect(_libpq(url), connect_timeout=3) as conn:
            conn.execute("select 1")
        return True, ""
    except Exception as exc:  # any failure means "not available"
        return False, f"{type(exc).__name__}: {exc}".strip()


def check_redis(url):
    try:
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        ok = client.ping()
        client.close()
        return bool(ok), "" if ok else "no PONG"
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"


def _libpq(url):
    return url.replace("postgres://", "postgresql://", 1)


def create_postgres_database(admin_url):
    """Create a throwaway database; returns (its URL, a function that drops it)."""
    import psycopg

    name = f"habitto_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(_libpq(admin_url), connect_timeout=3, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(admin_url)
    url = urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))

    def drop():
        with psycopg.connect(_libpq(admin_url), connect_timeout=3, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return url, drop
