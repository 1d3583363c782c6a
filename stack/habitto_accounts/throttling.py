"""Throttles of the public accounts endpoints (rates: REST_FRAMEWORK
DEFAULT_THROTTLE_RATES, README's settings table).

Per client address: login, registration and token refresh. The address is REMOTE_ADDR:
the server (uvicorn, FORWARDED_ALLOW_IPS) has already replaced it by the client's address
when the request came through a trusted proxy, and NUM_PROXIES = 0 keeps DRF from reading
an X-Forwarded-For header that any client can write.

Per account: `login_failures` failed logins within one window ("10/15m") lock the account
for that period; every login to it, right password or not, is then a 429 with Retry-After.
"""

import hashlib
import time
import unicodedata

from django.core.cache import cache
from rest_framework.exceptions import Throttled
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

from habitto_chat.api.throttling import WindowRateThrottle, count_hit, count_refusal, guarded, parse_rate


class AddressThrottle(WindowRateThrottle):
    def get_cache_key(self, request, view):
        return f"throttle:{self.scope}:{self.get_ident(request)}"


class LoginAddressThrottle(AddressThrottle):
    scope = "login"


class RefreshAddressThrottle(AddressThrottle):
    scope = "refresh"


class RegistrationAddressThrottle(AddressThrottle):
    scope = "register"

    def get_cache_key(self, request, view):
        return super().get_cache_key(request, view) if request.method == "POST" else None


class AccountLocked(Throttled):
    default_detail = "Too many failed logins for this account; it is locked for a while."
    default_code = "account_locked"


def _failure_rate():
    rate = api_settings.DEFAULT_THROTTLE_RATES.get("login_failures")
    return None if rate is None else parse_rate(rate)


def _account_key(request):
    """The account a login names, normalised so case variants share one lock."""
    data = request.data
    username = data.get("username") if hasattr(data, "get") else None
    if not isinstance(username, str) or not username.strip():
        return None
    normalised = unicodedata.normalize("NFKC", username.strip()).casefold()
    return "throttle:login_failures:" + hashlib.sha256(normalised.encode()).hexdigest()[:40]


class AccountLockout(BaseThrottle):
    def allow_request(self, request, view):
        key = _account_key(request) if _failure_rate() else None
        if key is None:
            return True
        locked_until = guarded(lambda: cache.get(f"{key}:locked"), default=None)
        if locked_until is not None and locked_until > time.time():
            count_refusal("login_failures")
            raise AccountLocked(wait=locked_until - time.time())
        return True


def record_login_failure(request):
    rate, key = _failure_rate(), _account_key(request)
    if rate is None or key is None:
        return
    limit, period = rate
    failures, _ = count_hit(key, period)
    if failures >= limit:
        guarded(lambda: cache.set(f"{key}:locked", time.time() + period, period), default=None)


def clear_login_failures(request):
    """A successful login forgets the account's earlier failures in this window."""
    rate, key = _failure_rate(), _account_key(request)
    if rate is not None and key is not None:
        guarded(lambda: cache.delete(f"{key}:{int(time.time() // rate[1])}"), default=None)
