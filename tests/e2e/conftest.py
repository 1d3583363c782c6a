"""Fixtures of the end-to-end tests that need a Redis server of their own."""

from tests.support.redis_server import own_redis  # noqa: F401  (the fixture)
