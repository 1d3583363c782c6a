"""REST calls the way the shipped app makes them (marvinjoel2001/habitto,
lib/core/services/api_service.dart, commit 49cde26): for clients that must behave like
the app, such as the load tester's app phones.

Every call carries the stored access token. A 401 on any call but login and refresh makes
one refresh: POST /api/refresh/ with {"refresh", "refresh_token"} and no Authorization;
if that call fails (any non-2xx or network error, Dio's DioException), the same body to
/api/token/refresh/. The new access token (and the rotated refresh token) is read at the
top level or under `data`, stored, and the call is retried once with it; a retry that
fails hands back the first 401. A refresh that fails clears the stored tokens; after three
failed refreshes in a row a 401 is passed on without trying (`_maxRefreshAttempts`).
"""

from .errors import AuthError, ChatError, HTTPStatusError
from .http import DEFAULT_TIMEOUT, ChatHTTP, Session

REFRESH_PATHS = ("/api/refresh/", "/api/token/refresh/")  # AppConfig.refreshTokenEndpoint, tokenRefreshEndpoint
MAX_REFRESH_ATTEMPTS = 3


class AppHTTP(ChatHTTP):
    """ChatHTTP with the app's token storage: login() stores the tokens, every call sends the
    stored access token whatever session it is given, and a 401 refreshes and retries."""

    def __init__(self, base_url, timeout=DEFAULT_TIMEOUT, observer=None):
        super().__init__(base_url, timeout=timeout, observer=observer)
        self.session = None  # the stored tokens; None before login and after a failed refresh
        self.failed_refreshes = 0
        self.refreshes = 0

    def login(self, username, password):
        self.session = super().login(username, password)
        return self.session

    def call(self, method, path, body=None, session=None, params=None, expect=(200, 201, 204), route=None):
        """The envelope's data of a call that must succeed, refreshing on a 401 as the app does."""
        resp = self.request(method, path, body=body, token=self._access(), params=params, route=route)
        if resp.status == 401 and self.failed_refreshes < MAX_REFRESH_ATTEMPTS and self._refresh():
            retried = self.request(method, path, body=body, token=self._access(), params=params, route=route)
            if retried.status in expect:
                resp = retried
        if resp.status not in expect:
            cls = AuthError if resp.status in (401, 403) else HTTPStatusError
            raise cls(resp.status, resp.body)
        return resp.data

    def _access(self):
        return self.session.access if self.session else None

    def _refresh(self):
        """api_service.dart _refreshToken(): True when new tokens are stored."""
        refresh = self.session.refresh if self.session else ""
        access = None
        if refresh:
            body = {"refresh": refresh, "refresh_token": refresh}
            for path in REFRESH_PATHS:
                try:
                    resp = self.request("POST", path, body=body)
                except ChatError:
                    continue
                if resp.ok:
                    access, refresh = _tokens(resp.body, refresh)
                    break
        if not access:
            self.failed_refreshes += 1
            self.session = None  # _tokenStorage.clearTokens()
            return False
        self.failed_refreshes = 0
        self.refreshes += 1
        self.session = Session(access, refresh, self.session.user_id, self.session.username)
        return True


def _tokens(body, old_refresh):
    """(access, refresh) where the app looks for them: top level, then under `data`
    (Dart's `??` picks the first key that is not null; only strings are taken)."""
    access = refresh = None
    if isinstance(body, dict):
        data = body.get("data") if isinstance(body.get("data"), dict) else {}
        for value in (body.get("access"), body.get("access_token"), _first(data, "access", "access_token")):
            access = value if isinstance(value, str) else access
        for value in (body.get("refresh"), _first(data, "refresh", "refresh_token")):
            refresh = value if isinstance(value, str) else refresh
    return access or None, refresh or old_refresh


def _first(data, key, fallback):
    value = data.get(key)
    return data.get(fallback) if value is None else value
