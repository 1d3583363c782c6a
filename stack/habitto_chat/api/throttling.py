"""REST throttles on the Django cache (Redis when the host configures it, so limits hold
across processes), built on DRF's throttle classes: DRF answers 429 with `Retry-After`.

Counting is a fixed window per key with the cache's atomic add/incr: concurrent requests
cannot lose counts the way a read-modify-write history can. A cache that fails (Redis down)
lets requests through and logs a warning: throttling degrades, the API keeps working.
"""

import logging
import math
import re
import time

from django.core.cache import cache
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from ..conf import chat_setting
from ..metrics import RATE_LIMITED
from .. import ratelimit

logger = logging.getLogger("habitto_chat.throttling")

RATE = re.compile(r"^(\d+)/(\d*)([smhd])")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# After a cache error the throttles skip the cache this long, so a Redis that times out
# costs one timeout per interval instead of one per request.
CACHE_RETRY_SECONDS = 5.0
_cache_down_until = 0.0


def reset():
    """Forget a cache failure (tests)."""
    global _cache_down_until
    _cache_down_until = 0.0


def parse_rate(rate):
    """DRF's "N/period" with an optional multiplier: "30/m", "10/15m", "40/2s"."""
    match = RATE.match(rate or "")
    if not match:
        raise ValueError(f"a throttle rate looks like 30/m or 10/15m, got {rate!r}")
    count, multiplier, unit = match.groups()
    return int(count), int(multiplier or 1) * UNIT_SECONDS[unit]


def guarded(operation, default):
    """Run a cache operation; `default` instead of an error while the cache is down."""
    global _cache_down_until
    if time.monotonic() < _cache_down_until:
        return default
    try:
        return operation()
    except Exception as exc:  # any backend error: redis ConnectionError, TimeoutError...
        _cache_down_until = time.monotonic() + CACHE_RETRY_SECONDS
        logger.warning("throttle cache unavailable (%s: %s); requests are not throttled for %gs",
                       type(exc).__name__, exc, CACHE_RETRY_SECONDS)
        return default


def count_refusal(scope):
    """A request refused by the throttle of `scope` (the metric, docs/metrics.md)."""
    RATE_LIMITED.labels("request", scope).inc()


def count_hit(key, window_seconds, now=None):
    """Count one request in the current fixed window of `key`; returns (count, seconds
    until the window ends). The count is 0 while the cache is unavailable."""
    now = time.time() if now is None else now
    window = int(now // window_seconds)
    window_key = f"{key}:{window}"
    timeout = math.ceil(window_seconds) + 1

    def hit():
        if cache.add(window_key, 1, timeout):
            return 1
        try:
            return cache.incr(window_key)
        except ValueError:  # expired between add and incr
            cache.set(window_key, 1, timeout)
            return 1

    return guarded(hit, default=0), (window + 1) * window_seconds - now


class WindowRateThrottle(SimpleRateThrottle):
    """SimpleRateThrottle with atomic fixed-window counting and rates read from the
    current settings (DRF binds THROTTLE_RATES at import, which ignores overrides)."""

    def get_rate(self):
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def parse_rate(self, rate):
        return (None, None) if rate is None else parse_rate(rate)

    def allow_request(self, request, view):
        if self.rate is None:
            return True
        ident = self.get_cache_key(request, view)
        if ident is None:
            return True
        count, self.retry_after = count_hit(ident, self.duration, self.timer())
        if count > self.num_requests:
            count_refusal(self.scope)
            return False
        return True

    def wait(self):
        return max(1.0, self.retry_after)


class SendThrottle(WindowRateThrottle):
    """REST sends spend the same per-user budget as socket sends.

    Two checks: the process's socket token bucket (habitto_chat/ratelimit.py), so REST and
    socket sends of a user in one process share one budget exactly; and a window of
    SEND_BURST sends per SEND_BURST / SEND_RATE_PER_SECOND seconds in the shared cache, so
    REST sends are bounded across every process. Sockets never touch the cache."""

    scope = "chat_send"

    def get_rate(self):
        return "configured"  # parse_rate reads HABITTO_CHAT instead

    def parse_rate(self, rate):
        burst = chat_setting("SEND_BURST")
        return burst, burst / chat_setting("SEND_RATE_PER_SECOND")

    def get_cache_key(self, request, view):
        if not request.user or not request.user.is_authenticated:
            return None
        return f"throttle:{self.scope}:{request.user.pk}"

    def allow_request(self, request, view):
        if self.get_cache_key(request, view) is None:
            return True
        if not ratelimit.allow_send(request.user.pk):
            self.retry_after = 1 / chat_setting("SEND_RATE_PER_SECOND")
            count_refusal(self.scope)
            return False
        return super().allow_request(request, view)
