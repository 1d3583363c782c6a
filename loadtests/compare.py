"""Regression against a baseline: this run's summary against an earlier one.

Every row is compared on p50, p95 and p99; a fan-out path also on its msgs/s, a request row
(REST calls, socket handshakes) on the requests it completed and its own error rate (its
rate follows the users' schedule and spawn, not the server); the run on its error rate and
its lost / duplicated / out-of-order counts.
A summary of `--repeat N` runs carries each run's figures ("runs"); a single run is a
list of one. For each figure, with b = the baseline runs' values and c = this run's:

    change  = median(c) - median(b)              (for msgs/s: median(b) - median(c))
    allowed = max(tolerance, spread(b), spread(c))     spread = max - min of the runs
    regression when change > allowed;  better when -change > allowed;  else ok

tolerance (loadtests/scenarios.toml, [regression]): latency max(latency * median(b),
latency_floor_ms); msgs/s throughput * median(b); error rate `error_rate`; anomaly counts
`anomalies`; completed requests like msgs/s, a row's error rate like the run's. A row with fewer than `min_samples` samples in any run of either side is
shown but not judged; a judged baseline row that this run lacks is a regression.
"""

from statistics import median

LATENCY = ("p50", "p95", "p99")
TOTALS = ("error_rate", "lost", "duplicated", "out_of_order")
THROUGHPUT = (*LATENCY, "per_second")  # a fan-out path
REQUESTS = (*LATENCY, "completed", "error_rate")  # a request row
# What must match for two runs to be compared at all.
LOAD_KEYS = ("users", "offered_per_second", "duration")


def run_rows(summary):
    """{row name: figures} of one run: the fan-out paths and every timed request row."""
    rows = {f"fanout {path}": figures for path, figures in summary["fanout"].items()}
    rows.update(summary.get("requests", {}))
    return rows


def compact(summary):
    """What a later comparison needs of one run."""
    return {
        "rows": run_rows(summary),
        "totals": {key: summary.get(key, 0) for key in TOTALS},
        "passed": summary.get("passed"),
        "valid": summary.get("valid", True),
    }


def runs_of(summary):
    return summary.get("runs") or [compact(summary)]


def figure(row, metric):
    """One figure of a row; `completed` and `error_rate` derive from count and failures."""
    if metric == "completed":
        return row["count"] - row.get("failures", 0) if "count" in row else None
    if metric == "error_rate":
        return row.get("failures", 0) / row["count"] if row.get("count") else None
    return row.get(metric)


def spread(values):
    return max(values) - min(values) if values else 0.0


def judge_change(base, current, tolerance, lower_is_worse=False):
    """The rule of the module docstring for one figure: (change, allowed, verdict)."""
    b, c = median(base), median(current)
    change = (b - c) if lower_is_worse else (c - b)
    allowed = max(tolerance, spread(base), spread(current))
    if change > allowed:
        verdict = "regression"
    elif -change > allowed:
        verdict = "better"
    else:
        verdict = "ok"
    return change, allowed, verdict


def _entry(row, metric, base, current, verdict, change=None, allowed=None):
    return {
        "row": row, "metric": metric,
        "baseline": median(base) if base else None, "current": median(current) if current else None,
        "baseline_runs": base, "current_runs": current,
        "change": change, "allowed": allowed, "verdict": verdict,
    }


def comparable(baseline, summary):
    """'' when the two runs offered the same load, else why not."""
    differences = [f"{key} {baseline.get(key)} vs {summary.get(key)}" for key in LOAD_KEYS
                   if baseline.get(key) != summary.get(key)]
    return "; ".join(differences)


def compare(baseline, summary, tolerances):
    """Every figure of `summary` against `baseline`: a list of entries (see _entry)."""
    base_runs, current_runs = runs_of(baseline), runs_of(summary)
    min_samples = tolerances["min_samples"]
    entries = []
    names = list(base_runs[0]["rows"])
    names += [name for name in current_runs[0]["rows"] if name not in names]
    for name in names:
        base_rows = [run["rows"].get(name) or {"count": 0} for run in base_runs]
        current_rows = [run["rows"].get(name) or {"count": 0} for run in current_runs]
        base_judged = min(row["count"] for row in base_rows) >= min_samples
        current_judged = min(row["count"] for row in current_rows) >= min_samples
        if base_judged and not any(row["count"] for row in current_rows):
            entries.append(_entry(name, "count", [r["count"] for r in base_rows], [0] * len(current_rows),
                                  "regression"))
            continue
        metrics = THROUGHPUT if name.startswith("fanout ") else REQUESTS
        for metric in metrics:
            base = [figure(row, metric) for row in base_rows if figure(row, metric) is not None]
            current = [figure(row, metric) for row in current_rows if figure(row, metric) is not None]
            if not (base_judged and current_judged) or not base or not current:
                entries.append(_entry(name, metric, base, current, "not judged"))
                continue
            if metric in ("per_second", "completed"):
                result = judge_change(base, current, tolerances["throughput"] * median(base), lower_is_worse=True)
            elif metric == "error_rate":
                result = judge_change(base, current, tolerances["error_rate"])
            else:
                tolerance = max(tolerances["latency"] * median(base), tolerances["latency_floor_ms"])
                result = judge_change(base, current, tolerance)
            entries.append(_entry(name, metric, base, current, result[2], *result[:2]))
    for key in TOTALS:
        base = [run["totals"].get(key, 0) for run in base_runs]
        current = [run["totals"].get(key, 0) for run in current_runs]
        tolerance = tolerances["error_rate"] if key == "error_rate" else tolerances["anomalies"]
        change, allowed, verdict = judge_change(base, current, tolerance)
        entries.append(_entry("run", key, base, current, verdict, change, allowed))
    return entries


def baseline_section(baseline, summary, tolerances, source):
    """The summary's `baseline` section: comparable?, every entry, passed."""
    reason = comparable(baseline, summary)
    entries = [] if reason else compare(baseline, summary, tolerances)
    regressions = [e for e in entries if e["verdict"] == "regression"]
    return {
        "file": str(source),
        "comparable": not reason,
        "not_comparable_because": reason,
        "runs": len(runs_of(baseline)),
        "entries": entries,
        "regressions": len(regressions),
        "passed": not reason and not regressions,
        "timeline": baseline.get("timeline"),
        "finished_at": baseline.get("finished_at"),
    }


def _fmt(value, metric):
    if value is None:
        return "-"
    if metric == "error_rate":
        return f"{value:.4%}"
    if metric == "completed":
        return f"{value:.0f}"
    if metric == "per_second":
        return f"{value:.1f}"
    return f"{value:.0f}" if metric in LATENCY or isinstance(value, int) else f"{value:.3g}"


def render(section):
    """The console table: judged figures side by side, then the verdict line."""
    if not section["comparable"]:
        return (f"baseline {section['file']}: not comparable ({section['not_comparable_because']})\n"
                f"BASELINE: FAIL")
    lines = [f"baseline {section['file']} ({section['runs']} run(s))",
             f"{'row':<26}{'figure':<14}{'baseline':>10}{'this run':>10}{'change':>10}{'allowed':>10}  verdict"]
    for e in section["entries"]:
        if e["verdict"] == "not judged":
            continue
        lines.append(f"{e['row']:<26}{e['metric']:<14}{_fmt(e['baseline'], e['metric']):>10}"
                     f"{_fmt(e['current'], e['metric']):>10}{_fmt(e['change'], e['metric']):>10}"
                     f"{_fmt(e['allowed'], e['metric']):>10}  {e['verdict']}")
    skipped = sum(1 for e in section["entries"] if e["verdict"] == "not judged")
    if skipped:
        lines.append(f"({skipped} figures with too few samples shown in the report, not judged)")
    verdict = "PASS" if section["passed"] else f"FAIL ({section['regressions']} regressions)"
    lines.append(f"BASELINE: {verdict}")
    return "\n".join(lines)
