"""The backend processes themselves: behind a proxy each one's reachability and /readyz,
and for every backend its /metrics against the thresholds of `oncall.metrics`.

Which backends:
- `oncall.backends` / ONCALL_BACKENDS (host:port as seen from the checked host): a proxy
  (nginx) owns ws_port and http_port, and these are the processes behind it;
- else, on the scaled Compose stack, the containers of service `backend_service`
  (docker_checks.discover_backends): ports backend_port_base .. +count-1;
- else no proxy: the processes on ws_port and http_port are the backends (only their
  metrics are read here; the port, liveness and readiness checks cover the rest).

Every backend is checked in its own thread, started before the other checks of the host
(`start`) and collected after them (`collect`), so the time between the two metrics
scrapes (`metrics.interval`) overlaps the other checks instead of adding to them. All of
it stays inside the host's budget: each call's timeout is cut to what is left, the second
scrape is taken early (or not at all) when the budget is nearly spent.
"""

import threading
import time

from habitto_client import ChatError, ChatHTTP, Timeout

from . import metrics
from .checks import readyz_result
from .docker_checks import discover_backends
from .results import Status, critical, ok, unknown, warning
from .targets import PortUnreachable

# Seconds kept for the second scrape and its verdict before the host's deadline.
SECOND_SCRAPE_RESERVE = 1.0


def start(ctx):
    """Find the backends and start checking each of them; the results come from `collect`."""
    cfg = ctx.cfg
    backends, proxied = cfg.backends, True
    if not backends:
        backends = discover_backends(ctx)
    if not backends:
        backends, proxied = tuple(dict.fromkeys(("127.0.0.1", p) for p in (cfg.ws_port, cfg.http_port))), False
    # Tunnels (SSH hosts) are opened here, in one thread, before the checks run in parallel.
    checks = [BackendCheck(ctx, host, port, ctx.target.address(port, host), proxied) for host, port in backends]
    for check in checks:
        check.start()
    ctx.memo["backends"] = checks
    return []


def collect(ctx):
    """The backends' results, once their threads finish (at the latest at the host's deadline)."""
    results = []
    for check in ctx.memo.get("backends", ()):
        check.join(max(0.0, ctx.remaining()))
        results.extend(check.results or [unknown(
            check.metrics_check, f"not finished within the host's budget ({ctx.cfg.timeout('host'):g} s, timeouts.host)")])
    return results


start.__name__, collect.__name__ = "backends", "metrics"


class BackendCheck(threading.Thread):
    """One backend: (behind a proxy) TCP and /readyz, then two /metrics scrapes and a verdict."""

    def __init__(self, ctx, host, port, local_address, proxied):
        super().__init__(daemon=True, name=f"oncall-backend-{port}")
        self.ctx, self.proxied = ctx, proxied
        self.host, self.port = host, port
        self.address = f"{host}:{port}"
        self.backend_check, self.metrics_check = f"backend:{self.address}", f"metrics:{self.address}"
        self.base = "http://%s:%d" % local_address
        self.perf_prefix = "_".join([ctx.host, "backend", host, str(port)]).replace(".", "_").replace(":", "_")
        self.results = None

    def run(self):
        try:
            self.results = self._check()
        except Exception as exc:  # a bug must not lose the other backends' results
            self.results = [unknown(self.metrics_check, f"check crashed: {type(exc).__name__}: {exc}")]

    def _check(self):
        if not self.proxied:
            return [self._metrics()]
        ctx = self.ctx
        try:
            ctx.target.tcp(self.port, ctx.timeout("connect"), host=self.host)
        except PortUnreachable as exc:
            return [critical(self.backend_check, f"backend {self.address} unreachable: {exc}"),
                    unknown(self.metrics_check, f"not checked: backend {self.address} unreachable")]
        timeout = ctx.timeout("http")
        ready = readyz_result(self.backend_check, ChatHTTP(self.base, timeout), timeout, f"{self.perf_prefix}_readyz")
        return [ready, self._metrics()]

    def _scrape(self):
        """(Scrape, None) or (None, Result saying why there is none)."""
        timeout = self.ctx.timeout("http")
        try:
            resp = ChatHTTP(self.base, timeout).metrics(token=self.ctx.cfg.metrics_token or None)
        except Timeout:
            return None, unknown(self.metrics_check, f"GET /metrics on {self.address}: no answer within {timeout:g} s")
        except ChatError as exc:
            return None, unknown(self.metrics_check, f"GET /metrics on {self.address} failed: {exc}")
        if resp.status == 404:
            return None, unknown(self.metrics_check, (
                f"GET /metrics on {self.address} answered 404: it answers loopback requests without "
                "X-Forwarded-For, or the server's METRICS_TOKEN (set ONCALL_METRICS_TOKEN)"))
        if resp.status != 200 or not isinstance(resp.body, str):
            return None, unknown(self.metrics_check, f"GET /metrics on {self.address} answered HTTP {resp.status}")
        try:
            return metrics.parse(resp.body), None
        except metrics.MetricsFormatError as exc:
            return None, unknown(self.metrics_check, f"GET /metrics on {self.address}: {exc}")

    def _metrics(self):
        ctx = self.ctx
        thresholds = ctx.cfg.metrics
        first, failed = self._scrape()
        if failed:
            return failed
        first_at = time.monotonic()
        wait = min(first_at + thresholds["interval"], ctx.deadline - SECOND_SCRAPE_RESERVE) - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        second, window = None, None
        if ctx.remaining() > SECOND_SCRAPE_RESERVE / 2:
            second, failed = self._scrape()
            if failed:
                return failed
            window = time.monotonic() - first_at
        readings = metrics.judge(first, second, thresholds, window)
        perf = metrics.perfdata(self.perf_prefix, readings, thresholds)
        text = "; ".join(r.text for r in readings)
        if any(r.status == Status.WARNING for r in readings):
            return warning(self.metrics_check, text, *perf)
        return ok(self.metrics_check, text, *perf)
