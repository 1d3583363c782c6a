"""Output of a run: a table for people, JSON for machines, and the Nagios exit code.

Table (the default) follows the monitoring-plugins output shape::

    CHAT HEALTH CRITICAL - 2 of 9 checks failing: local redis: Redis at ... ; local readiness: ...
    HOST   CHECK      STATUS    DETAIL
    local  port-ws    OK        WS port 8000 accepts TCP at 127.0.0.1:8000 (0.2 ms)
    ...
    | 'local_port_8000_connect'=0.2ms;;2000;0 ...

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
