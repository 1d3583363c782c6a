"""The checks: each one a small function of a HostContext returning Result(s).

The chat protocol (login, /healthz, /readyz, sockets, clear_conversation) is spoken only
through the shared client `habitto_client`; this module decides what the answers mean.

Dependencies between checks are explicit: a check whose prerequisite failed (its port is
unreachable, liveness timed out, the probe account cannot log in) is reported UNKNOWN
"not checked: ..." instead of spending another timeout on a port known to be bad, so a
hung port costs at most one timeout.
"""

import threading
import time
import uuid

from habitto_client import (
    AuthError,
    ChatError,
    ChatHTTP,
    ChatSocket,
    ConnectError,
    DeviceSocket,
    HandshakeRejected,
    HTTPStatusError,
    SocketClosed,
    Timeout,
    device_url,
    inbox_url,
    is_error_frame,
    room_url,
)

from .results import Perf, Result, Status, critical, ms, not_applicable, ok, unknown, warning
from .targets import PortUnreachable

UNAUTHENTICATED_CLOSE = 4401
MIN_TIMEOUT = 0.2  # seconds: the least a check gets when the host's budget is nearly spent
QUIET_AFTER_ACCEPT = 0.3  # seconds an accepted socket must stay open to count as accepted
# What a close code before sync.done means for the device socket (docs/protocol.md, WebSockets).
DEVICE_CLOSE_MEANINGS = {
    4401: "token not accepted",
    4403: "not allowed",
    4404: "no such socket: a server older than /ws/v2/?",
    4408: "outbox full",
    4429: "too many sockets for the probe user",
    1011: "server error opening the socket",
}


class HostContext:
    """What the checks of one host share: config, target, logged-in probe sessions, results,
    and the host's deadline (`timeouts.host` from when its run started)."""

    def __init__(self, cfg, target, started=None, budget=None):
        self.cfg = cfg
        self.target = target
        self.host = target.name
        self.deadline = ((time.monotonic() if started is None else started)
                         + (cfg.timeout("host") if budget is None else budget))
        self.failed = {}  # check name -> short reason, for dependent checks
        self.hung = set()  # ports that accepted TCP but did not answer within their timeout
        self._sessions = {}
        self._unavailable = {}  # probe index -> ProbeUnavailable: a failed login is not retried
        self._http_base = None
        self.memo = {}  # what several checks of this host share (the Compose listing, backends)

    # -- time ------------------------------------------------------------------------------
    def remaining(self):
        return self.deadline - time.monotonic()

    def timeout(self, name):
        """The check's own timeout, cut to what is left of the host's budget."""
        return max(MIN_TIMEOUT, min(self.cfg.timeout(name), self.remaining()))

    # -- addresses -----------------------------------------------------------------------
    def http(self, timeout="http"):
        """A client whose requests time out after timeouts.<timeout> (or the host's time left)."""
        if self._http_base is None:
            host, port = self.target.address(self.cfg.http_port)
            self._http_base = f"http://{host}:{port}"
        return ChatHTTP(self._http_base, timeout=self.timeout(timeout))

    def ws_base(self):
        host, port = self.target.address(self.cfg.ws_port)
        return f"ws://{host}:{port}"

    # -- probe accounts --------------------------------------------------------------------
    def probe_users(self, allow_demo):
        """Configured probe accounts, else (this machine only) the dev server's demo users."""
        if self.cfg.probe_users or not allow_demo or self.target.remote:
            return self.cfg.probe_users, ""
        return self.cfg.demo_users, f" (demo user from {self.cfg.demo_source})"

    def session(self, index, allow_demo=False):
        """The logged-in probe user number `index` (0 or 1); raises ProbeUnavailable."""
        if index in self._sessions:
            return self._sessions[index]
        if index in self._unavailable:
            raise self._unavailable[index]
        try:
            self._sessions[index] = self._login(index, allow_demo)
        except ProbeUnavailable as exc:
            self._unavailable[index] = exc
            raise
        return self._sessions[index]

    def _login(self, index, allow_demo):
        users, origin = self.probe_users(allow_demo)
        if len(users) <= index:
            raise ProbeUnavailable(
                f"needs {index + 1} probe account(s), {len(users)} configured "
                "(set ONCALL_PROBE_USERS and ONCALL_PROBE_PASSWORD, or probe_users in the config file)"
            )
        user = users[index]
        hung = self.blocked("port-http", "liveness")
        if not hung and self.cfg.http_port in self.hung:
            hung = f"HTTP port {self.cfg.http_port} does not answer"
        if hung:
            raise ProbeUnavailable(f"cannot log in as {user.username!r}: {hung}")
        if not user.password:
            raise ProbeUnavailable(f"no password configured for probe account {user.username!r}")
        try:
            session = self.http("login").login(user.username, user.password)
        except AuthError as exc:
            raise ProbeUnavailable(
                f"probe login as {user.username!r}{origin} refused (HTTP {exc.status}): "
                "wrong probe password or missing account?"
            ) from None
        except Timeout as exc:
            self.hung.add(self.cfg.http_port)
            raise ProbeUnavailable(f"probe login as {user.username!r} timed out: {exc}", Status.CRITICAL) from None
        except ChatError as exc:  # refused, reset, HTTP 5xx: the server is broken, not the config
            raise ProbeUnavailable(f"probe login as {user.username!r} failed: {exc}", Status.CRITICAL) from None
        return session

    def blocked(self, *checks):
        """The reason a prerequisite failed, or None when all of them passed (or did not run)."""
        for name in checks:
            if name in self.failed:
                return self.failed[name]
        return None


class ProbeUnavailable(Exception):
    """A probe account cannot be used: UNKNOWN (configuration) or CRITICAL (server broken)."""

    def __init__(self, text, status=Status.UNKNOWN):
        super().__init__(text)
        self.status = status


def _unavailable(ctx, check, exc):
    return _record(ctx, Result(check, exc.status, str(exc)))


def _perf(ctx, *parts):
    return "_".join([ctx.host.replace(".", "_"), *parts])


def _record(ctx, result, reason=None):
    if result.status in (Status.CRITICAL, Status.UNKNOWN) and result.applicable:
        ctx.failed[result.check] = reason or result.text
    return result


def _not_checked(ctx, check, reason):
    return _record(ctx, unknown(check, f"not checked: {reason}"))


# -- TCP ----------------------------------------------------------------------------------------


def tcp_port(ctx, role):
    """port-ws / port-http: a TCP connect to the WebSocket or HTTP port."""
    port = ctx.cfg.ws_port if role == "ws" else ctx.cfg.http_port
    check = f"port-{role}"
    where = ctx.target.describe(port)
    timeout = ctx.timeout("connect")
    try:
        elapsed = ctx.target.tcp(port, timeout)
    except PortUnreachable as exc:
        return _record(
            ctx,
            critical(check, f"{role.upper()} port {port} unreachable at {where}: {exc}"),
            f"{role.upper()} port {port} unreachable",
        )
    return ok(
        check,
        f"{role.upper()} port {port} accepts TCP at {where} ({ms(elapsed)} ms)",
        Perf(_perf(ctx, f"port_{role}_connect"), ms(elapsed), "ms", None, timeout * 1000, 0),
    )


# -- HTTP liveness and readiness ------------------------------------------------------------


def liveness(ctx):
    """liveness: GET /healthz on the HTTP port answers 200 {"status": "ok"}."""
    reason = ctx.blocked("port-http")
    if reason:
        return _not_checked(ctx, "liveness", reason)
    timeout = ctx.timeout("http")
    try:
        resp = ctx.http().healthz()
    except Timeout:
        ctx.hung.add(ctx.cfg.http_port)
        return _record(
            ctx,
            critical("liveness", f"GET /healthz on port {ctx.cfg.http_port}: no answer within {timeout:g} s"),
            f"HTTP port {ctx.cfg.http_port} does not answer",
        )
    except ChatError as exc:
        return _record(ctx, critical("liveness", f"GET /healthz on port {ctx.cfg.http_port} failed: {exc}"),
                       f"HTTP port {ctx.cfg.http_port} failed")
    perf = Perf(_perf(ctx, "healthz"), ms(resp.elapsed), "ms", None, timeout * 1000, 0)
    status = resp.body.get("status") if isinstance(resp.body, dict) else None
    if resp.status != 200 or status != "ok":
        return _record(ctx, critical(
            "liveness", f"GET /healthz answered HTTP {resp.status} status={status!r}", perf))
    return ok("liveness", f"GET /healthz: ok in {ms(resp.elapsed)} ms", perf)


def readiness(ctx):
    """readiness: GET /readyz answers 200; on 503 the failing dependencies are named."""
    reason = ctx.blocked("port-http", "liveness")
    if reason:
        return _not_checked(ctx, "readiness", reason)
    return _record(ctx, readyz_result("readiness", ctx.http(), ctx.timeout("http"), _perf(ctx, "readyz")))


def readyz_result(check, http, timeout, perf_label):
    """GET /readyz through `http` (a ChatHTTP): OK when ready, else CRITICAL naming the
    failing dependencies. Also used for each backend behind a proxy (backends.py)."""
    try:
        resp = http.readyz(timeout=timeout)
    except Timeout:
        return critical(check, f"GET /readyz: no answer within {timeout:g} s")
    except ChatError as exc:
        return critical(check, f"GET /readyz failed: {exc}")
    body = resp.body if isinstance(resp.body, dict) else {}
    deps = body.get("checks") if isinstance(body.get("checks"), dict) else {}
    perf = [Perf(perf_label, ms(resp.elapsed), "ms", None, timeout * 1000, 0)]
    for name, detail in deps.items():
        if isinstance(detail, dict) and isinstance(detail.get("ms"), (int, float)):
            perf.append(Perf(f"{perf_label}_{name}", float(detail["ms"]), "ms", min=0))
    failing = [
        (name, detail) for name, detail in deps.items()
        if not (isinstance(detail, dict) and detail.get("ok"))
    ]
    if resp.status == 200 and body.get("status") == "ok" and not failing:
        names = ", ".join(f"{n} {d.get('ms', '?')} ms" for n, d in deps.items())
        return ok(check, f"GET /readyz: ready ({names})", *perf)
    if failing:
        parts = []
        for name, detail in failing:
            error = detail.get("error") if isinstance(detail, dict) else None
            parts.append(f"{name} ({error})" if error else name)
        text = f"not ready (HTTP {resp.status}): failing dependency {'; '.join(parts)}"
    else:
        text = f"not ready: GET /readyz answered HTTP {resp.status} status={body.get('status')!r}"
    return critical(check, text, *perf)


# -- WebSocket handshakes ------------------------------------------------------------------


def ws_with_token(ctx):
    """ws-token: the probe account's inbox socket on the WS port is accepted and stays open."""
    check = "ws-token"
    reason = ctx.blocked("port-ws")
    if reason:
        return _not_checked(ctx, check, reason)
    try:
        session = ctx.session(0, allow_demo=True)
    except ProbeUnavailable as exc:
        return _unavailable(ctx, check, exc)
    timeout = ctx.timeout("ws")
    url = inbox_url(ctx.ws_base(), session.user_id, session.access)
    started = time.monotonic()
    try:
        sock = ChatSocket.open(url, timeout=timeout)
    except Timeout:
        ctx.hung.add(ctx.cfg.ws_port)
        return _record(ctx, critical(
            check, f"WebSocket handshake on port {ctx.cfg.ws_port}: no answer within {timeout:g} s"),
            f"WS port {ctx.cfg.ws_port} does not answer")
    except HandshakeRejected as exc:
        return _record(ctx, critical(check, f"probe socket refused at handshake with HTTP {exc.status}"))
    except ChatError as exc:
        return _record(ctx, critical(check, f"WebSocket handshake on port {ctx.cfg.ws_port} failed: {exc}"))
    elapsed = time.monotonic() - started
    perf = Perf(_perf(ctx, "ws_handshake"), ms(elapsed), "ms", None, timeout * 1000, 0)
    try:
        frame = sock.recv_json(timeout=QUIET_AFTER_ACCEPT)
    except Timeout:
        return ok(check, f"probe inbox socket accepted on port {ctx.cfg.ws_port} ({ms(elapsed)} ms)", perf)
    except SocketClosed as exc:
        return _record(ctx, critical(check, f"probe socket accepted, then closed with code {exc.code}", perf))
    except ChatError as exc:
        return _record(ctx, critical(check, f"probe socket accepted, then failed: {exc}", perf))
    finally:
        sock.close(timeout=min(1.0, timeout))
    # A frame right away is unusual for an idle probe inbox but still means "accepted".
    return ok(check, f"probe inbox socket accepted (and sent {sorted(frame)[:3]}...)", perf)


def ws_device(ctx):
    """ws-device: the probe account's device socket /ws/v2/ sends hello, then sync.done,
    within the ws timeout (handshake included).

    Read here rather than through DeviceSocket.connect, whose timeout applies to each step
    (three timeouts in all) and whose failures do not say which step failed.
    """
    check = "ws-device"
    reason = ctx.blocked("port-ws")
    if reason:
        return _not_checked(ctx, check, reason)
    if ctx.cfg.ws_port in ctx.hung:
        return _not_checked(ctx, check, f"WS port {ctx.cfg.ws_port} does not answer")
    try:
        session = ctx.session(0, allow_demo=True)
    except ProbeUnavailable as exc:
        return _unavailable(ctx, check, exc)
    timeout = ctx.timeout("ws")
    port = ctx.cfg.ws_port
    started = time.monotonic()
    try:
        sock = DeviceSocket.open(device_url(ctx.ws_base(), session.access), timeout=timeout)
    except Timeout:
        ctx.hung.add(port)
        return _record(ctx, critical(check, f"/ws/v2/ handshake on port {port}: no answer within {timeout:g} s"),
                       f"WS port {port} does not answer")
    except HandshakeRejected as exc:
        return _record(ctx, critical(check, f"probe device socket refused at handshake with HTTP {exc.status}"))
    except ChatError as exc:
        return _record(ctx, critical(check, f"/ws/v2/ handshake on port {port} failed: {exc}"))
    try:
        stage = "accepted, but no hello"
        hello = sock.recv_json(_left(started, timeout))
        if hello.get("type") != "hello":
            return _record(ctx, critical(check, f"/ws/v2/ accepted, then sent {hello.get('type')!r}, not hello"))
        stage = "hello, but no sync.done"
        while sock.recv_json(_left(started, timeout)).get("type") != "sync.done":
            pass  # a new device asks for no replay: nothing is expected before sync.done
        elapsed = time.monotonic() - started
    except Timeout:
        return _record(ctx, critical(check, f"/ws/v2/ on port {port}: {stage} within {timeout:g} s"))
    except SocketClosed as exc:
        return _record(ctx, critical(check, f"probe device socket refused: {_closed(exc)} before sync.done"))
    except ChatError as exc:
        return _record(ctx, critical(check, f"/ws/v2/ on port {port} failed before sync.done: {exc}"))
    finally:
        sock.close(timeout=min(1.0, timeout))
    perf = Perf(_perf(ctx, "ws_device_sync"), ms(elapsed), "ms", None, timeout * 1000, 0)
    return ok(check, f"probe device socket /ws/v2/ on port {port}: hello and sync.done in {ms(elapsed)} ms", perf)


def _closed(exc):
    if exc.code is None:
        return "closed without a close code"
    meaning = DEVICE_CLOSE_MEANINGS.get(exc.code) or exc.reason or "no reason given"
    return f"closed with code {exc.code} ({meaning})"


def _left(started, timeout):
    """Seconds left of `timeout` counted from `started`; Timeout once spent (0 would not block)."""
    left = started + timeout - time.monotonic()
    if left <= 0:
        raise Timeout(f"nothing within {timeout:g} s")
    return left


def ws_without_token(ctx):
    """ws-no-token: a socket without a token is refused with close code 4401."""
    check = "ws-no-token"
    reason = ctx.blocked("port-ws")
    if reason:
        return _not_checked(ctx, check, reason)
    if ctx.cfg.ws_port in ctx.hung:
        return _not_checked(ctx, check, f"WS port {ctx.cfg.ws_port} does not answer")
    timeout = ctx.timeout("ws")
    user_id = ctx._sessions[0].user_id if 0 in ctx._sessions else 1
    url = inbox_url(ctx.ws_base(), user_id)
    try:
        sock = ChatSocket.open(url, timeout=timeout)
    except Timeout:
        return _record(ctx, critical(check, f"WebSocket handshake without token: no answer within {timeout:g} s"))
    except HandshakeRejected as exc:
        return _record(ctx, critical(
            check, f"refused at handshake with HTTP {exc.status}, expected close code {UNAUTHENTICATED_CLOSE}"))
    except ChatError as exc:
        return _record(ctx, critical(check, f"WebSocket handshake without token failed: {exc}"))
    try:
        code = sock.wait_closed(timeout)
    except Timeout:
        return _record(ctx, critical(
            check, f"a socket WITHOUT a token stayed open for {timeout:g} s (expected close {UNAUTHENTICATED_CLOSE})"))
    finally:
        sock.close(timeout=0.5)
    if code != UNAUTHENTICATED_CLOSE:
        return _record(ctx, critical(check, f"socket without token closed with {code}, expected {UNAUTHENTICATED_CLOSE}"))
    return ok(check, f"socket without token refused with close code {code}")


# -- Redis ---------------------------------------------------------------------------------------


def redis_ping(ctx):
    """redis: PING answered PONG by the Redis of the config (URL and password from config)."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    target = ctx.cfg.redis_target()
    if target is None:
        return not_applicable("redis", "no redis_url configured (server without Redis)")
    host, port, db, username, password = target
    where = ctx.target.describe(port, host)
    timeout = ctx.timeout("redis")
    try:
        ctx.target.tcp(port, ctx.timeout("connect"), host=host)
        addr_host, addr_port = ctx.target.address(port, host)
    except PortUnreachable as exc:
        return _record(ctx, critical("redis", f"Redis at {where} unreachable: {exc}"))
    client = redis.Redis(
        host=addr_host, port=addr_port, db=db, username=username, password=password,
        ssl=ctx.cfg.redis_url.startswith("rediss://"),
        socket_connect_timeout=timeout, socket_timeout=timeout, retry_on_timeout=False,
        retry=Retry(NoBackoff(), 0),  # one try: a retry would double the time a dead Redis costs
    )
    started = time.monotonic()
    try:
        answer = client.execute_command("PING")
    except redis.AuthenticationError as exc:
        if not password:
            return _record(ctx, unknown("redis", f"Redis at {where} needs a password (set ONCALL_REDIS_PASSWORD): {exc}"))
        return _record(ctx, unknown("redis", f"Redis at {where} refused the configured password: {exc}"))
    except redis.ResponseError as exc:
        if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
            return _record(ctx, unknown("redis", f"Redis at {where} needs a password (ONCALL_REDIS_PASSWORD): {exc}"))
        return _record(ctx, critical("redis", f"Redis at {where} answered PING with an error: {exc}"))
    except redis.TimeoutError:
        return _record(ctx, critical("redis", f"Redis at {where}: no PONG within {timeout:g} s"))
    except (redis.ConnectionError, OSError) as exc:
        return _record(ctx, critical("redis", f"Redis at {where} unreachable: {exc}"))
    finally:
        client.close()
    elapsed = time.monotonic() - started
    perf = Perf(_perf(ctx, "redis_ping"), ms(elapsed), "ms", None, timeout * 1000, 0)
    if answer not in (True, b"PONG", "PONG"):
        return _record(ctx, critical("redis", f"Redis at {where} answered PING with {answer!r}", perf))
    return ok("redis", f"Redis at {where}: PONG in {ms(elapsed)} ms", perf)


# -- End-to-end probe ------------------------------------------------------------------------


def probe(ctx):
    """probe-room, probe-inbox, probe-cleanup: probe 1 sends to probe 2 through the room socket.

    Times the message's arrival on probe 2's room socket and inbox socket, then clears the
    probe conversation for both users. Slower than probe_warn_ms: WARNING; not there
    within the probe timeout: CRITICAL.
    """
    reason = ctx.blocked("port-ws", "port-http")
    if reason:
        return [_not_checked(ctx, "probe", reason)]
    if not ctx.cfg.probe_users and ctx.cfg.demo_users:
        return [_record(ctx, unknown(
            "probe", "needs two configured probe accounts (ONCALL_PROBE_USERS / probe_accounts_file); "
            "the demo users are not used because the probe clears its conversation"))]
    try:
        sender, receiver = ctx.session(0), ctx.session(1)
    except ProbeUnavailable as exc:
        return [_unavailable(ctx, "probe", exc)]
    if sender.user_id == receiver.user_id:
        return [unknown("probe", "the two probe accounts are the same user; configure two different ones")]
    cfg = ctx.cfg
    ws_timeout, wait = ctx.timeout("ws"), ctx.timeout("probe")
    warn_ms, crit_ms = cfg.probe_warn_ms, wait * 1000
    base = ctx.ws_base()
    sockets = []
    results = []
    try:
        try:
            other_room = _open(sockets, room_url(base, receiver.user_id, sender.user_id, receiver.access), ws_timeout)
            other_inbox = _open(sockets, inbox_url(base, receiver.user_id, receiver.access), ws_timeout)
            my_room = _open(sockets, room_url(base, sender.user_id, receiver.user_id, sender.access), ws_timeout)
        except Timeout as exc:
            return [_record(ctx, critical("probe", f"probe socket handshake timed out: {exc}"))]
        except (HandshakeRejected, ChatError) as exc:
            return [_record(ctx, critical("probe", f"probe socket refused: {exc}"))]
        content = f"oncall-probe {uuid.uuid4().hex}"
        sent_at = time.monotonic()
        try:
            my_room.send_message(sender.user_id, receiver.user_id, content)
        except ChatError as exc:
            return [_record(ctx, critical("probe", f"probe could not send its message: {exc}"))]
        deadline = sent_at + wait
        # Both sockets are read at the same time, so each arrival is timed on its own.
        waits = [
            _Delivery(ctx, "probe-room", other_room, content, sent_at, deadline, warn_ms, crit_ms),
            _Delivery(ctx, "probe-inbox", other_inbox, content, sent_at, deadline, warn_ms, crit_ms),
        ]
        for delivery in waits:
            delivery.start()
        for delivery in waits:
            delivery.join(wait + 1.0)
            results.append(delivery.result or _record(ctx, critical(
                delivery.check, f"probe wait did not finish within {wait:g} s")))
    finally:
        for sock in sockets:
            sock.close(timeout=0.5)
        results.append(_cleanup(ctx, sender, receiver))
    return results


def _open(sockets, url, timeout):
    sock = ChatSocket.open(url, timeout=timeout)
    sockets.append(sock)
    return sock


class _Delivery(threading.Thread):
    """Waits on one receiver socket for the probe message; `result` is set when done."""

    def __init__(self, ctx, check, sock, content, sent_at, deadline, warn_ms, crit_ms):
        super().__init__(daemon=True, name=f"oncall-{check}")
        self.ctx, self.check, self.sock, self.content = ctx, check, sock, content
        self.sent_at, self.deadline, self.warn_ms, self.crit_ms = sent_at, deadline, warn_ms, crit_ms
        self.result = None

    def run(self):
        self.result = self._wait()

    def _wait(self):
        ctx, check = self.ctx, self.check
        label = "room socket" if check == "probe-room" else "inbox socket"
        while True:
            left = self.deadline - time.monotonic()
            if left <= 0:
                return _record(ctx, critical(
                    check, f"probe message not on the receiver's {label} within {self.crit_ms / 1000:g} s"))
            try:
                frame = self.sock.recv_json(timeout=left)
            except Timeout:
                continue
            except SocketClosed as exc:
                return _record(ctx, critical(check, f"receiver's {label} closed by the server (code {exc.code})"))
            except ChatError as exc:
                return _record(ctx, critical(check, f"receiver's {label} failed: {exc}"))
            arrived = time.monotonic()
            if is_error_frame(frame):
                return _record(ctx, critical(
                    check, f"server refused the probe message: {frame.get('code')}: {frame.get('error')}"))
            if frame.get("content") != self.content:
                continue  # another message (e.g. a leftover from an earlier probe)
            latency = (arrived - self.sent_at) * 1000.0
            perf = Perf(_perf(ctx, check.replace("-", "_")), round(latency, 1), "ms",
                        self.warn_ms, self.crit_ms, 0)
            text = f"probe message on the receiver's {label} after {latency:.0f} ms"
            if latency > self.warn_ms:
                return warning(check, f"{text} (slower than {self.warn_ms:g} ms)", perf)
            return ok(check, text, perf)


def _cleanup(ctx, sender, receiver):
    """Clear the probe conversation for both users (each side clears its own view)."""
    http = ctx.http()
    errors = []
    for me, other in ((sender, receiver), (receiver, sender)):
        try:
            http.clear_conversation(me, other.user_id)
        except (HTTPStatusError, ConnectError, Timeout, ChatError) as exc:
            errors.append(f"{me.username}: {exc}")
    if errors:
        return warning("probe-cleanup", "probe conversation not cleared: " + "; ".join(errors))
    return ok("probe-cleanup", "probe conversation cleared for both probe users")
