"""Fixtures of the load tester's tests."""

from tests.support.redis_server import own_redis  # noqa: F401  (the fixture)
