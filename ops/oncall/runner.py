"""Run one task's checks on every host, hosts in parallel, each within its time budget.

A host that cannot be reached over SSH gives one UNKNOWN line; a check that crashes gives
an UNKNOWN line naming the error. Nothing here waits without a timeout: each host runs
in a daemon thread that is abandoned (reported UNKNOWN) if it overruns its budget.
"""

import threading
import time
from dataclasses import dataclass, field

from . import backends, checks, docker_checks
from .results import Result, Status, unknown, worst
from .targets import TargetUnavailable, make_target


def _ports(ctx):
    return [checks.tcp_port(ctx, "ws"), checks.tcp_port(ctx, "http")]


def _http_port(ctx):
    return [checks.tcp_port(ctx, "http")]


def _one(fn, check):
    """A step of one check, named like its result (for 'not checked' and 'crashed' lines)."""
    step = lambda ctx: [fn(ctx)]  # noqa: E731
    step.__name__ = check
    return step


_ports.__name__, _http_port.__name__ = "ports", "port-http"


# Each task: what it is for, and its steps in order (each step returns a list of results).
TASKS = {
    # The backends' checks start first and are collected last (backends.py): their two
    # metrics scrapes are taken around the other checks.
    "health": ("every check of the host except the end-to-end probe", [
        backends.start, _ports, _one(checks.liveness, "liveness"), _one(checks.readiness, "readiness"),
        _one(checks.ws_with_token, "ws-token"), _one(checks.ws_device, "ws-device"),
        _one(checks.ws_without_token, "ws-no-token"),
        _one(checks.redis_ping, "redis"), docker_checks.compose_services, backends.collect,
    ]),
    "probe": ("a message from one probe user to the other, timed on room and inbox sockets", [
        _ports, checks.probe,
    ]),
    "ports": ("TCP reachability of the WebSocket and HTTP ports", [_ports]),
    "redis-ping": ("Redis PING -> PONG", [_one(checks.redis_ping, "redis")]),
    "status": ("HTTP liveness and readiness, and the Compose services", [
        _http_port, _one(checks.liveness, "liveness"), _one(checks.readiness, "readiness"),
        docker_checks.compose_services,
    ]),
}


@dataclass
class HostReport:
    host: str
    results: list = field(default_factory=list)
    seconds: float = 0.0

    @property
    def status(self):
        return worst(r.status for r in self.results)


@dataclass
class Run:
    task: str
    hosts: list  # of HostReport
    config_sources: tuple = ()
    error: str = ""  # a configuration error: nothing ran

    @property
    def status(self):
        if self.error:
            return Status.UNKNOWN
        return worst(h.status for h in self.hosts)

    @property
    def results(self):
        return [r for h in self.hosts for r in h.results]


# A host's thread still running this long after its budget (a call that ignored its
# timeout) is abandoned and reported UNKNOWN.
ABANDON_AFTER = 1.0


BUDGET_SETTINGS = {False: "timeouts.host", True: "timeouts.host + timeouts.probe"}


def budget(cfg, task="health"):
    """Longest a host may take (timeouts.host): every check's timeout is cut to what is left.
    The probe may in addition wait timeouts.probe for its message."""
    return cfg.timeout("host") + (cfg.timeout("probe") if task == "probe" else 0.0)


def check_host(task, name, cfg, fabric_config):
    """All steps of `task` on one host -> HostReport."""
    started = time.monotonic()
    report = HostReport(name)
    target = make_target(name, fabric_config, cfg, budget(cfg, task))
    try:
        target.open()
    except TargetUnavailable as exc:
        report.results.append(_on(name, unknown("ssh", str(exc))))
        report.seconds = time.monotonic() - started
        return report
    try:
        ctx = checks.HostContext(cfg, target, started, budget(cfg, task))
        for step in TASKS[task][1]:
            if ctx.remaining() < checks.MIN_TIMEOUT:
                name_ = getattr(step, "__name__", "check").strip("_<>") or "check"
                report.results.append(_on(name, unknown(
                    name_, f"not checked: the host's {budget(cfg, task):g} s budget ({BUDGET_SETTINGS[task == 'probe']}) ran out")))
                continue
            try:
                produced = step(ctx)
            except Exception as exc:  # a bug or an unforeseen failure: say so, keep going
                name_ = getattr(step, "__name__", "check").strip("_<>") or "check"
                produced = [unknown(name_, f"check crashed: {type(exc).__name__}: {exc}")]
            report.results.extend(_on(name, r) for r in produced)
    finally:
        report.seconds = time.monotonic() - started
        # Tearing SSH tunnels down can take seconds; the results are complete without it.
        threading.Thread(target=target.close, name=f"oncall-close-{name}", daemon=True).start()
    return report


def run(task, cfg, fabric_config):
    """Run `task` on every configured host in parallel -> Run."""
    if task not in TASKS:
        raise KeyError(task)
    limit = budget(cfg, task) + ABANDON_AFTER
    slots = {}
    threads = []
    for name in cfg.hosts:
        def work(name=name):
            try:
                slots[name] = check_host(task, name, cfg, fabric_config)
            except Exception as exc:  # pragma: no cover - check_host guards its steps
                slots[name] = HostReport(name, [_on(name, unknown("host", f"{type(exc).__name__}: {exc}"))])

        thread = threading.Thread(target=work, name=f"oncall-{name}", daemon=True)
        thread.start()
        threads.append((name, thread))
    deadline = time.monotonic() + limit
    for name, thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    hosts = []
    for name, _ in threads:
        report = slots.get(name)
        if report is None:
            report = HostReport(name, [_on(name, unknown("host", f"checks did not finish within {limit:g} s"))], limit)
        hosts.append(report)
    return Run(task, hosts, cfg.sources)


def _on(host, result: Result):
    result.host = host
    return result
