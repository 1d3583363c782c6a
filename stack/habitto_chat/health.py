"""Liveness and readiness for load balancers and on-call checks (not enveloped).

/healthz: the process answers. /readyz: the database, the checks other layers add at
start-up (the realtime layer: a round trip through the channel layer) and, when
configured, Redis itself; each reported by name, 503 if one fails.
"""

import asyncio
import time

from asgiref.sync import sync_to_async
from django.db import connection
from django.http import JsonResponse

from .conf import chat_setting

_added_checks = {}  # name -> async callable raising on failure


def add_readiness_check(name, check):
    _added_checks[name] = check


async def healthz(request):
    return JsonResponse({"status": "ok"})


def _query_database():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


async def _check_database():
    await sync_to_async(_query_database, thread_sensitive=True)()


async def _check_redis():
    import redis.asyncio as redis

    timeout = chat_setting("REDIS_TIMEOUT")
    client = redis.Redis.from_url(chat_setting("REDIS_URL"), socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        if not await client.ping():
            raise ConnectionError("no PONG")
    finally:
        await client.aclose()


async def _run(check, timeout):
    started = time.perf_counter()
    error = None
    try:
        await asyncio.wait_for(check(), timeout)
    except asyncio.TimeoutError:
        error = f"timed out after {timeout:.1f} s (no answer)"
    except Exception as exc:
        error = (f"{type(exc).__name__}: {exc}".strip().rstrip(":") or type(exc).__name__)[:300]
    result = {"ok": error is None, "ms": round((time.perf_counter() - started) * 1000, 1)}
    if error is not None:
        result["error"] = error
    return result


async def readyz(request):
    timeout = chat_setting("LAYER_TIMEOUT") + 1
    checks = {"database": _check_database, **_added_checks}
    if chat_setting("REDIS_URL"):
        checks["redis"] = _check_redis
    results = await asyncio.gather(*(_run(check, timeout) for check in checks.values()))
    report = dict(zip(checks, results))
    healthy = all(r["ok"] for r in results)
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", "checks": report}, status=200 if healthy else 503
    )
