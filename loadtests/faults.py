"""Faults during a load-test run, and what they did to the users (docs/loadtest.md).

A fault is "<kind>@<at>[:<seconds>]": `at` seconds after the send start (the shared start
of `sync_start`, else the test start), restart one backend (`restart_backend`), stop
Redis for `seconds` (`stop_redis`, default 5) or restart PostgreSQL (`restart_postgres`).
Two drivers carry them out, every call bounded by the scenario's `faults.timeout`:

    DockerDriver   the Compose stack, through the Docker SDK: containers found by their
                   com.docker.compose.project / com.docker.compose.service labels
    CommandDriver  any other deployment: the scenario's shell commands (systemctl, kubectl...)

The schedule runs in the Locust process that gates (one process: the users' delivery
journal lives there). For every fault the report states, over the messages sent from its
start until the next fault starts: acknowledged messages lost (gated: must be 0),
unacknowledged sends that failed, reconnects, the complete fan-out latency during the
window and after it, and the recovery time: from the fault's start until delivery was
whole again (the last disturbed message completed, every later one completed within
`whole_ms`).
"""

import logging
import subprocess
import time
from dataclasses import dataclass

import gevent
import gevent.event

logger = logging.getLogger("loadtests")

KINDS = ("restart_backend", "stop_redis", "restart_postgres")
DEFAULT_DOWN_SECONDS = 5.0
# Services of the Compose stack by role; the scaled stack has one `backend` service with
# N replicas, the default stack backend-ws and backend-http.
SERVICES = {"backend": ("backend", "backend-ws", "backend-http"), "redis": ("redis",),
            "postgres": ("postgres",)}


class FaultError(Exception):
    """A fault could not be carried out (no such container, a command failed or hung)."""


@dataclass
class Fault:
    kind: str
    at: float
    seconds: float = 0.0

    @property
    def name(self):
        return f"{self.kind}@{self.at:g}" + (f":{self.seconds:g}" if self.kind == "stop_redis" else "")


def parse_fault(spec):
    """'stop_redis@8:5' -> Fault("stop_redis", 8.0, 5.0); ValueError on anything else."""
    kind, sep, when = spec.strip().partition("@")
    if kind not in KINDS or not sep:
        raise ValueError(f"fault {spec!r}: expected <kind>@<seconds>[:<seconds down>], kind one of {', '.join(KINDS)}")
    at, _, seconds = when.partition(":")
    try:
        fault = Fault(kind, float(at), float(seconds) if seconds else 0.0)
    except ValueError:
        raise ValueError(f"fault {spec!r}: the times must be numbers of seconds") from None
    if fault.at < 0 or fault.seconds < 0 or (seconds and kind != "stop_redis"):
        raise ValueError(f"fault {spec!r}: times are >= 0, and only stop_redis takes a duration")
    if kind == "stop_redis" and not seconds:
        fault.seconds = DEFAULT_DOWN_SECONDS
    return fault


def parse_faults(specs):
    return sorted((parse_fault(spec) for spec in specs), key=lambda fault: fault.at)


# -- drivers ------------------------------------------------------------------------------
class CommandDriver:
    """Shell commands for any deployment: {"restart_backend": "...", "stop_redis": "...",
    "start_redis": "...", "restart_postgres": "..."}; each must exit 0 within `timeout`."""

    def __init__(self, commands, timeout):
        self.commands = {action: command for action, command in commands.items() if command}
        self.timeout = timeout

    def check(self, faults):
        needed = {action for fault in faults for action in _actions(fault.kind)}
        missing = sorted(needed - set(self.commands))
        if missing:
            raise FaultError(f"the command driver needs faults.{', faults.'.join(missing)} (shell commands)")

    def run(self, action, fault):
        command = self.commands[action]
        try:
            result = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            raise FaultError(f"{action}: {command!r} did not finish within {self.timeout:g} s") from None
        if result.returncode != 0:
            raise FaultError(f"{action}: {command!r} exited {result.returncode}: "
                             f"{(result.stderr or result.stdout).strip()[-500:]}")


class DockerDriver:
    """The Compose stack through the Docker SDK. `client` is a docker.DockerClient (its
    HTTP timeout bounds every call); containers are found by the Compose labels."""

    def __init__(self, client, project, timeout):
        self.client = client
        self.project = project
        self.timeout = timeout
        self.restarts = 0

    @classmethod
    def from_env(cls, project, timeout):
        import docker

        return cls(docker.from_env(timeout=int(timeout)), project, timeout)

    def containers(self, role):
        """Running containers of the first service of `role` the project has, by name."""
        for service in SERVICES[role]:
            found = self.client.containers.list(all=True, filters={"label": [
                f"com.docker.compose.project={self.project}", f"com.docker.compose.service={service}"]})
            if found:
                return sorted(found, key=lambda container: container.name)
        raise FaultError(f"no {'/'.join(SERVICES[role])} container in Compose project {self.project!r}")

    def check(self, faults):
        for role in {_role(fault.kind) for fault in faults}:
            self.containers(role)

    def run(self, action, fault):
        role = _role(fault.kind)
        containers = self.containers(role)
        # Stop grace period: what is left of the call's budget after the restart itself.
        grace = max(1, int(self.timeout / 3))
        if action == "restart_backend":
            running = [c for c in containers if c.status == "running"] or containers
            container = running[self.restarts % len(running)]  # successive restarts go round
            self.restarts += 1
            container.restart(timeout=grace)
        elif action == "stop_redis":
            for container in containers:
                container.stop(timeout=grace)
            return
        elif action == "start_redis":
            for container in containers:
                container.start()
        else:
            container = containers[0]
            container.restart(timeout=grace)
        self.wait_healthy(containers if action == "start_redis" else [container])

    def wait_healthy(self, containers):
        """Until each container runs and, if it has a health check, reports healthy."""
        deadline = time.monotonic() + self.timeout
        for container in containers:
            while True:
                container.reload()
                state = container.attrs.get("State", {})
                health = state.get("Health", {}).get("Status")
                if state.get("Status") == "running" and health in (None, "healthy"):
                    break
                if time.monotonic() > deadline:
                    raise FaultError(f"{container.name} not healthy within {self.timeout:g} s "
                                     f"(status {state.get('Status')}, health {health})")
                gevent.sleep(0.5)


def _role(kind):
    return {"restart_backend": "backend", "stop_redis": "redis", "restart_postgres": "postgres"}[kind]


def _actions(kind):
    return ("stop_redis", "start_redis") if kind == "stop_redis" else (kind,)


def make_driver(settings):
    timeout = float(settings["timeout"])
    if settings["driver"] == "command":
        return CommandDriver({action: settings.get(action, "") for action in
                              ("restart_backend", "stop_redis", "start_redis", "restart_postgres")}, timeout)
    if settings["driver"] == "docker":
        try:
            return DockerDriver.from_env(settings["compose_project"], timeout)
        except Exception as exc:  # the SDK raises DockerException or a connection error
            raise FaultError(f"no Docker engine for the fault driver: {exc}") from None
    raise FaultError(f"unknown fault driver {settings['driver']!r} (docker or command)")


# -- the schedule -------------------------------------------------------------------------
@dataclass
class Window:
    """One fault as it happened (monotonic times of this process)."""

    fault: Fault
    start: float = None
    end: float = None
    error: str = ""


class FaultSchedule:
    """Runs the faults at their offsets from `origin` (monotonic), one greenlet each in turn."""

    def __init__(self, faults, driver, settings):
        self.faults = faults
        self.driver = driver
        self.settings = settings
        self.windows = [Window(fault) for fault in faults]
        self.origin = None
        self.greenlet = None
        self.stopping = gevent.event.Event()

    def start(self, origin):
        self.origin = origin
        self.greenlet = gevent.spawn(self._run)

    def _run(self):
        for window in self.windows:
            if self.stopping.wait(max(0.0, self.origin + window.fault.at - time.monotonic())):
                return
            self.inject(window)

    def inject(self, window):
        fault = window.fault
        window.start = time.monotonic()
        logger.warning("fault %s: starting", fault.name)
        try:
            if fault.kind == "stop_redis":
                self.driver.run("stop_redis", fault)
                gevent.sleep(max(0.0, window.start + fault.seconds - time.monotonic()))
                self.driver.run("start_redis", fault)
            else:
                self.driver.run(fault.kind, fault)
        except Exception as exc:  # reported in the summary and failing the run, never raised into Locust
            window.error = f"{type(exc).__name__}: {exc}"
            logger.error("fault %s failed: %s", fault.name, window.error)
        window.end = time.monotonic()
        logger.warning("fault %s: done after %.1f s", fault.name, window.end - window.start)

    def stop(self):
        """No further faults; one under way finishes (Redis is started again) within its bounds."""
        self.stopping.set()
        if self.greenlet is not None:
            longest = max((w.fault.seconds for w in self.windows), default=0)
            self.greenlet.join(timeout=2 * float(self.settings["timeout"]) + longest)


def schedule_from(scenario):
    """The scenario's FaultSchedule (driver built and checked), or None without faults."""
    faults = parse_faults(scenario.faults.get("inject") or ())
    if not faults:
        return None
    driver = make_driver(scenario.faults)
    driver.check(faults)
    return FaultSchedule(faults, driver, scenario.faults)


def backoff(settings):
    """Seconds before each reconnect attempt; the last value repeats."""
    return [float(s) for s in settings.get("reconnect_backoff") or (1,)]


# -- the report ---------------------------------------------------------------------------
def _percentiles(values):
    if not values:
        return {"count": 0}
    ordered = sorted(values)

    def pick(q):
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    return {"count": len(ordered), "p50": pick(0.50), "p95": pick(0.95), "p99": pick(0.99),
            "max": round(ordered[-1], 1)}


def analyse(windows, journal, reconnects, whole_ms, after_s, run_end):
    """Per fault (dicts, monotonic times as given): see the module docstring. `journal`:
    {(sender, seq): tracker.Fate}; `reconnects`: [(time, kind)]. A fault's messages are
    those meant to be sent from its start until the next fault's start (the first fault's
    also include everything before it: a fault can lose what was stored earlier)."""
    fates = sorted(journal.values(), key=lambda fate: fate.intended)
    results = []
    for index, window in enumerate(windows):
        start = window.start if window.start is not None else run_end
        end = window.end if window.end is not None else start
        upto = windows[index + 1].start if index + 1 < len(windows) and windows[index + 1].start else float("inf")
        since = float("-inf") if index == 0 else start
        mine = [f for f in fates if since <= f.intended < upto]
        after_end = min(end + after_s, upto)
        during = [(f.complete_at - f.intended) * 1000 for f in mine
                  if f.complete_at is not None and start <= f.intended <= end]
        after = [(f.complete_at - f.intended) * 1000 for f in mine
                 if f.complete_at is not None and end < f.intended <= after_end]
        recovered_at, disturbed = _recovery(mine, start, whole_ms)
        results.append({
            "name": window.fault.name,
            "kind": window.fault.kind,
            "at": window.fault.at,
            "start": start,
            "end": end,
            "error": window.error,
            "messages": len(mine),
            "acknowledged_lost": sum(1 for f in mine if f.acknowledged_lost),
            "unacknowledged_failed": sum(1 for f in mine if f.outcome in ("unacknowledged", "send_failed")),
            "send_failed": sum(1 for f in mine if f.outcome == "send_failed"),
            "disturbed": disturbed,
            "reconnects": sum(1 for at, _ in reconnects if start <= at < upto),
            "recovery_s": None if recovered_at is None else round(max(0.0, recovered_at - start), 3),
            "latency_during_ms": _percentiles(during),
            "latency_after_ms": _percentiles(after),
        })
    return results


def _recovery(fates, start, whole_ms):
    """(time delivery was whole again, disturbed messages) over the messages meant from
    `start` on: the last disturbed one (failed, lost, not stored, or slower than whole_ms) completed
    (or was meant to be sent, if it never completed), and a later message completed
    within whole_ms. (start, 0) when nothing was disturbed; (None, n) when delivery never
    became whole again during the run."""
    later = [f for f in fates if f.intended >= start]
    last_bad = None
    disturbed = 0
    for index, fate in enumerate(later):
        if (fate.outcome != "complete" or fate.acknowledged_lost
                or (fate.complete_at - fate.intended) * 1000 > whole_ms):
            last_bad = index
            disturbed += 1
    if last_bad is None:
        return start, 0
    if not any(f.outcome == "complete" for f in later[last_bad + 1:]):
        return None, disturbed
    bad = later[last_bad]
    return (bad.complete_at if bad.complete_at is not None else bad.intended), disturbed


def add_to_summary(summary, schedule, tracker, reconnects):
    """Put the per-fault report into the summary (times: seconds since the epoch, and
    offsets from the send start) and return the gate's checks: per fault, no acknowledged
    message lost, the fault carried out, delivery whole again before the run ended."""
    if schedule is None:
        return []
    now_mono, now_wall = time.monotonic(), time.time()
    results = analyse(schedule.windows, tracker.journal or {}, reconnects,
                      float(schedule.settings["whole_ms"]), float(schedule.settings["after"]), now_mono)
    for result in results:
        for key in ("start", "end"):
            result[f"{key}_offset_s"] = round(result[key] - schedule.origin, 3)
            result[key] = round(now_wall - (now_mono - result[key]), 3)
    for result, window in zip(results, schedule.windows):
        if window.start is None:
            result["error"] = "not injected: the run ended before its time"
    summary["faults"] = results
    checks = []
    for result in results:
        checks.append((f"{result['name']} acked_lost", 0, result["acknowledged_lost"],
                       result["acknowledged_lost"] == 0))
        checks.append((f"{result['name']} injected", "ok", result["error"] or "ok", not result["error"]))
        checks.append((f"{result['name']} recovered", "yes", "no" if result["recovery_s"] is None else "yes",
                       result["recovery_s"] is not None))
    return checks


def _fmt(value):
    return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def table(summary):
    """Console lines of the fault report (none without faults)."""
    results = summary.get("faults")
    if not results:
        return []
    lines = ["", f"{'fault':<22}{'window s':>13}{'acked lost':>11}{'unacked':>8}{'reconn':>7}"
             f"{'recovery s':>11}{'p99 during':>11}{'p99 after':>10}"]
    for r in results:
        window = f"{r['start_offset_s']:.1f}-{r['end_offset_s']:.1f}"
        lines.append(f"{r['name']:<22}{window:>13}{r['acknowledged_lost']:>11}{r['unacknowledged_failed']:>8}"
                     f"{r['reconnects']:>7}{_fmt(r['recovery_s']):>11}"
                     f"{_fmt(r['latency_during_ms'].get('p99')):>11}{_fmt(r['latency_after_ms'].get('p99')):>10}")
        if r["error"]:
            lines.append(f"  ! {r['error']}")
    return lines

