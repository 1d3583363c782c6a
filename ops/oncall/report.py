"""Output of a run: a table for people, JSON for machines, and the Nagios exit code.

Table (the default) follows the monitoring-plugins output shape (`fab health` against a
server on 8000/8001 with no probe account configured; long lines cut at "...")::

    CHAT HEALTH UNKNOWN - 2 of 9 checks not OK on 1 host: local ws-token: needs 1 probe account(s), ...
    HOST   CHECK        STATUS   DETAIL
    local  port-ws      OK       WS port 8000 accepts TCP at 127.0.0.1:8000 (0.4 ms)
    local  port-http    OK       HTTP port 8001 accepts TCP at 127.0.0.1:8001 (0.4 ms)
    local  liveness     OK       GET /healthz: ok in 9.0 ms
    local  readiness    OK       GET /readyz: ready (database 4.5 ms, channel_layer 1.7 ms)
    local  ws-token     UNKNOWN  needs 1 probe account(s), 0 configured (set ONCALL_PROBE_USERS and ...
    local  ws-device    UNKNOWN  needs 1 probe account(s), 0 configured (set ONCALL_PROBE_USERS and ...
    local  ws-no-token  OK       socket without token refused with close code 4401
    local  redis        OK       Redis at 127.0.0.1:6379: PONG in 0.9 ms
    local  compose      N/A      no container of Compose project 'habitto-chat' here (...)
    | 'local_port_ws_connect'=0.4ms;;2000;0 'local_port_http_connect'=0.4ms;;2000;0 'local_healthz'=9ms;;3000;0 ...

Line 1 is the one-line status a monitoring system shows; the table is the long output;
the last line carries the perfdata after '|'. The exit code is the status:
0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
"""

import json

from .results import Status

SERVICE = "CHAT"


def summary(run):
    """The one status line: SERVICE TASK STATUS - text."""
    head = f"{SERVICE} {run.task.upper()} {run.status.name}"
    if run.error:
        return f"{head} - {run.error}"
    results = run.results
    bad = [r for r in results if r.status != Status.OK]
    hosts = len(run.hosts)
    where = f"{hosts} host" + ("s" if hosts != 1 else "")
    if not bad:
        applicable = sum(1 for r in results if r.applicable)
        return f"{head} - all {applicable} checks OK on {where}"
    bad.sort(key=lambda r: -r.status.severity)
    first = "; ".join(f"{r.host} {r.check}: {r.text}" for r in bad[:3])
    more = f" (+{len(bad) - 3} more)" if len(bad) > 3 else ""
    return f"{head} - {len(bad)} of {len(results)} checks not OK on {where}: {first}{more}"


def perfdata(run):
    return " ".join(p.render() for r in run.results for p in r.perfdata)


def table(run):
    lines = [summary(run)]
    if run.error:
        return "\n".join(lines)
    rows = [("HOST", "CHECK", "STATUS", "DETAIL")]
    rows += [(r.host, r.check, r.status_label, r.text) for r in run.results]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3])
    perf = perfdata(run)
    if perf:
        lines.append(f"| {perf}")
    return "\n".join(lines)


def as_json(run):
    document = {
        "task": run.task,
        "status": run.status.name,
        "code": int(run.status),
        "summary": summary(run),
        "config_sources": list(run.config_sources),
        "hosts": [
            {
                "host": h.host,
                "status": h.status.name,
                "seconds": round(h.seconds, 3),
                "results": [r.as_dict() for r in h.results],
            }
            for h in run.hosts
        ],
        "perfdata": perfdata(run),
    }
    if run.error:
        document["error"] = run.error
    return json.dumps(document, indent=2)


def render(run, json_output=False):
    return as_json(run) if json_output else table(run)


def exit_code(run):
    return int(run.status)
