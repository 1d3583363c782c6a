"""The release gate: Locust's statistics against the scenario's thresholds.

Runs on the master (or the only process) when Locust quits; prints the summary table,
writes <results>/<scenario>_summary.json and sets the process exit code: 0 passed, 1 a
threshold was exceeded, 3 INVALID (the load generator itself was saturated, so the
figures measure it rather than the server; neither passed nor failed).
"""

import json
import time
from pathlib import Path

from . import faults
from .state import STATE
from .tracker import PATHS

ANOMALIES = ("lost", "duplicate", "out_of_order", "stray", "late")
FANOUT_ROWS = [*PATHS, "complete"]
INFORMATIVE = ("acknowledged stored", "dropped before echo", *(f"excused {p}" for p in PATHS))  # counts, not requests
REST_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")  # the app scenario's rows, one per route
EXIT_INVALID = 3
# Timed rows besides the fan-out: REST calls, socket handshakes. "WS send" is the
# generator's own lag (a validity figure, not the server's latency).
LOGIN_ROUTE = "POST /api/login/"  # judged apart from the other REST rows (see judge)
NOT_A_REQUEST_ROW = {("send", "WS"), ("late start", "WS")}


def _entry(stats, name, method="WS"):
    return stats.entries.get((name, method))


def row_figures(e):
    """count, failures, p50/p95/p99/max (ms) and per-second rate of one Locust row."""
    span = max(e.last_request_timestamp - e.start_time, 1e-9)
    return {
        "count": e.num_requests,
        "failures": e.num_failures,
        "p50": e.get_response_time_percentile(0.50),
        "p95": e.get_response_time_percentile(0.95),
        "p99": e.get_response_time_percentile(0.99),
        "max": e.max_response_time,
        "per_second": e.num_requests / span,
    }


def summarize(stats, scenario):
    """A JSON-safe dict of everything the gate judges."""
    rows = {}
    for path in [*scenario.fanout_paths, "complete"]:
        e = _entry(stats, f"fanout {path}")
        if e is None or not e.num_requests:
            rows[path] = {"count": 0}
            continue
        rows[path] = row_figures(e)
    send = _entry(stats, "send")
    sent_ok = send.num_requests - send.num_failures if send else 0
    anomalies = {kind: {path: 0 for path in PATHS} for kind in ANOMALIES}
    for (name, method), e in stats.entries.items():
        kind, _, path = name.partition(" ")
        if method == "WS" and kind in anomalies and path in anomalies[kind]:
            anomalies[kind][path] = e.num_failures
    counted = ({f"{k} {p}" for k in ANOMALIES for p in PATHS} | {f"fanout {p}" for p in FANOUT_ROWS}
               | set(INFORMATIVE))
    requests = failures = 0
    timed = {}
    for (name, method), e in stats.entries.items():
        if name in counted:
            continue
        requests += e.num_requests
        failures += e.num_failures
        if (name, method) not in NOT_A_REQUEST_ROW and e.num_requests > e.num_failures and e.max_response_time:
            timed[f"{method} {name}"] = row_figures(e)
    return {
        "scenario": scenario.name,
        "users": scenario.users,
        "described": scenario.described,
        "offered_per_second": scenario.offered_rate,
        "socket_kind": "device" if scenario.device else "room+inbox" if scenario.inbox else "room",
        "duration": scenario.duration,
        "sent": sent_ok,
        "send_failures": send.num_failures if send else 0,
        "send_lag_p99_ms": send.get_response_time_percentile(0.99) if send and send.num_requests else None,
        "fanout": rows,
        "requests": dict(sorted(timed.items())),
        "lost": sum(anomalies["lost"].values()),
        "duplicated": sum(anomalies["duplicate"].values()),
        "out_of_order": sum(anomalies["out_of_order"].values()),
        "stray": sum(anomalies["stray"].values()),
        "late": sum(anomalies["late"].values()),
        "anomalies": anomalies,
        "other_requests": requests,
        "other_failures": failures,
        "error_rate": failures / requests if requests else 0.0,
        "rest": rest_rows(stats),
        "excused": {p: _count(stats, f"excused {p}") for p in PATHS},
        "dropped_before_echo": _count(stats, "dropped before echo"),
        "acknowledged_stored": _count(stats, "acknowledged stored"),
        "lost_store": _count(stats, "lost store"),
    }


def _count(stats, name):
    e = _entry(stats, name)
    return e.num_requests if e else 0


def rest_rows(stats):
    """{"GET /api/...": {count, failures, error_rate, p50, p95, p99, ...}} for every REST row."""
    rows = {}
    for (name, method), e in sorted(stats.entries.items()):
        if method in REST_METHODS and e.num_requests:
            rows[f"{method} {name}"] = {**row_figures(e),
                                        "error_rate": e.num_failures / e.num_requests}
    return rows


def judge(summary, thresholds):
    """[(name, limit, measured, ok)] for every configured threshold."""
    complete = summary["fanout"]["complete"]
    measured = {
        "p95_complete_ms": complete.get("p95"),
        "p99_complete_ms": complete.get("p99"),
        "max_error_rate": summary["error_rate"],
        "max_lost": summary["lost"],
        "max_duplicated": summary["duplicated"],
        "max_out_of_order": summary["out_of_order"],
        "min_completed": complete.get("count", 0),
    }
    # REST rows: the worst route is what a threshold judges (every route must hold). The
    # login hashes a password on purpose (hundreds of ms): its times have limits of their
    # own; its errors count like any route's.
    rows = summary.get("rest", {})
    timed = [row for route, row in rows.items() if route != LOGIN_ROUTE]
    for name, key in (("p95_rest_ms", "p95"), ("p99_rest_ms", "p99")):
        measured[name] = max((row[key] for row in timed), default=0)
    measured["max_rest_error_rate"] = max((row["error_rate"] for row in rows.values()), default=0)
    login = rows.get(LOGIN_ROUTE, {})
    measured["p95_login_ms"], measured["p99_login_ms"] = login.get("p95", 0), login.get("p99", 0)
    checks = []
    for name, limit in sorted(thresholds.items()):
        value = measured[name]
        if name.startswith("min_"):
            ok = value is not None and value >= limit
        else:
            ok = value is not None and value <= limit
        checks.append((name, limit, value, ok))
    return checks


def _fmt(value):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def render(summary, checks, validity=()):
    """The console summary: rows, thresholds, validity and the verdict line."""
    lines = [
        f"Load test '{summary['scenario']}': {summary.get('described') or str(summary['users']) + ' conversations'}, "
        f"{summary['offered_per_second']:g} msgs/s offered for {summary['duration']:g} s",
        "",
        f"{'fan-out path':<15}{'count':>9}{'msgs/s':>9}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}{'max ms':>8}"
        f"{'lost':>6}{'dup':>5}{'ooo':>5}",
    ]
    for path in summary["fanout"]:
        row = summary["fanout"][path]
        a = summary["anomalies"]
        lines.append(
            f"{path:<15}{row['count']:>9}{_fmt(row.get('per_second')):>9}{_fmt(row.get('p50')):>8}"
            f"{_fmt(row.get('p95')):>8}{_fmt(row.get('p99')):>8}{_fmt(row.get('max')):>8}"
            f"{_fmt(a['lost'].get(path, '')):>6}{_fmt(a['duplicate'].get(path, '')):>5}"
            f"{_fmt(a['out_of_order'].get(path, '')):>5}"
        )
    lines += [
        "",
        f"sent {summary['sent']} (send failures {summary['send_failures']}), "
        f"generator send lag p99 {_fmt(summary['send_lag_p99_ms'])} ms; "
        f"other requests {summary['other_requests']}, failures {summary['other_failures']} "
        f"(error rate {summary['error_rate']:.4%}); stray frames {summary['stray']}, "
        f"arrived after the drain (counted lost) {summary['late']}",
        *_rest_lines(summary),
    ]
    lines += faults.table(summary)
    width = max([20] + [len(name) + 1 for name, *_ in checks])
    lines += ["", f"{'threshold':<{width}}{'limit':>10}{'measured':>12}  result"]
    for name, limit, value, ok in checks:
        lines.append(f"{name:<{width}}{_fmt(limit):>10}{_fmt(value):>12}  {'ok' if ok else 'EXCEEDED'}")
    if validity:
        lines += ["", f"{'validity (generator)':<24}{'limit':>10}{'measured':>12}  result"]
        for name, limit, value, ok in validity:
            lines.append(f"{name:<24}{_fmt(limit):>10}{_fmt(value):>12}  {'ok' if ok else 'SATURATED'}")
    lines += ["", result_line(summary)]
    return "\n".join(lines)


def _rest_lines(summary):
    rest = summary.get("rest")
    if not rest:
        return []
    excused = sum(summary["excused"].values())
    lines = ["", f"{'REST route':<58}{'count':>7}{'fail':>6}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}"]
    for name, row in rest.items():
        lines.append(f"{name:<58}{row['count']:>7}{row['failures']:>6}{_fmt(row.get('p50')):>8}"
                     f"{_fmt(row.get('p95')):>8}{_fmt(row.get('p99')):>8}")
    lines.append(f"deliveries excused (their socket closed or dropped first) {excused}; sends whose room "
                 f"socket went before the echo {summary['dropped_before_echo']}; acknowledged and stored "
                 f"{summary['acknowledged_stored']}, acknowledged but not stored "
                 f"{summary['lost_store']} (failures)")
    return lines


def judge_validity(summary, limits):
    """[(name, limit, measured, ok)]: was the load generator able to keep its schedule?"""
    checks = []
    if "max_send_lag_p99_ms" in limits:
        lag = summary.get("send_lag_p99_ms")
        checks.append(("send_lag_p99_ms", limits["max_send_lag_p99_ms"], lag,
                       lag is None or lag <= limits["max_send_lag_p99_ms"]))
    if "max_generator_cpu" in limits:
        for process, share in sorted(summary.get("generator_cpu", {}).items()):
            checks.append((f"generator_cpu {process}", limits["max_generator_cpu"], round(share, 3),
                           share < limits["max_generator_cpu"]))
    return checks


def result_line(summary):
    """RESULT: PASS, FAIL or INVALID (the generator was saturated: neither)."""
    if not summary.get("valid", True):
        return "RESULT: INVALID (the load generator was saturated: these figures measure it, not the server)"
    return f"RESULT: {'PASS' if summary['passed'] else 'FAIL'}"


def exit_code(summary):
    if not summary.get("valid", True):
        return EXIT_INVALID
    return 0 if summary["passed"] else 1


def as_rows(checks, group):
    return [{"group": group, "name": n, "limit": limit, "measured": v, "ok": ok} for n, limit, v, ok in checks]


def gate(environment, scenario, results_dir=None, monitor=None):
    """Judge, print, write the summary JSON; set environment.process_exit_code.

    `monitor` (loadtests.monitor.RunMonitor) adds the timeline and the generator's CPU; the
    faults of the run (loadtests/faults.py) add their report (`faults`: each with its
    wall-clock window, which the HTML report shades) and their checks (group "faults").
    """
    summary = summarize(environment.runner.stats, scenario)
    if STATE.faults is None:
        # An acknowledged message the store lacks is lost (with faults: acked_lost per fault).
        summary["lost"] += summary.get("lost_store", 0)
    if monitor is not None:
        summary["timeline"] = monitor.stop()
        summary["generator_cpu"] = monitor.generator_cpu()
    checks = judge(summary, scenario.thresholds)
    exceptions = len(getattr(environment.runner, "exceptions", {}) or {})
    checks.append(("user_exceptions", 0, exceptions, exceptions == 0))
    fault_checks = faults.add_to_summary(summary, STATE.faults, STATE.tracker, STATE.reconnects)
    validity = judge_validity(summary, scenario.validity)
    summary["passed"] = all(ok for *_, ok in checks + fault_checks)
    summary["valid"] = all(ok for *_, ok in validity)
    print("\n" + render(summary, checks + fault_checks, validity) + "\n", flush=True)
    summary["thresholds"] = as_rows(checks, "thresholds") + as_rows(fault_checks, "faults")
    summary["validity"] = as_rows(validity, "validity")
    summary["finished_at"] = time.time()
    if results_dir:
        path = Path(results_dir) / f"{scenario.name}_summary.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(summary, indent=1))
    code = exit_code(summary)
    # 2 (the run could not be carried out, e.g. a fault driver failed) stays.
    if environment.process_exit_code != 2 and (code or environment.process_exit_code is None):
        environment.process_exit_code = code
    return summary
