"""Per-user send rate limit: a token bucket per user, shared by all their sockets in
this process (HABITTO_CHAT SEND_RATE_PER_SECOND and SEND_BURST); and TokenBucket, one
socket's own budget for frames that cost database reads."""

import time

from .conf import chat_setting

_MAX_TRACKED = 50_000
_buckets = {}  # user id -> (tokens, last refill time)


def allow_send(user_id, now=None):
    rate, burst = chat_setting("SEND_RATE_PER_SECOND"), chat_setting("SEND_BURST")
    now = time.monotonic() if now is None else now
    tokens, last = _buckets.get(user_id, (burst, now))
    tokens = min(burst, tokens + (now - last) * rate)
    allowed = tokens >= 1
    _buckets[user_id] = (tokens - 1 if allowed else tokens, now)
    if len(_buckets) > _MAX_TRACKED:
        _forget_full_buckets(now, rate, burst)
    return allowed


def _forget_full_buckets(now, rate, burst):
    for user_id, (tokens, last) in list(_buckets.items()):
        if tokens + (now - last) * rate >= burst:
            del _buckets[user_id]


def reset():
    _buckets.clear()


class TokenBucket:
    """`rate` tokens a second, at most `burst`, starting full; take() spends one."""

    def __init__(self, rate, burst):
        self.rate, self.burst = rate, burst
        self._tokens, self._at = float(burst), time.monotonic()

    def take(self):
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True
