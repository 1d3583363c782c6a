"""Capacity mode: raise the load step by step until a threshold breaks, back off, and report
the highest load that held and what stopped it.

The scenario's [capacity] table (loadtests/scenarios.toml) names the key that rises
(`rate_per_user` or `users`), `start`, `factor`, `max`, and each step's `step_duration`
and `step_drain`. Steps are start, start*factor, ... up to max, each a run of its own
against the same server. The first step that fails a threshold, or is INVALID (the
generator saturated: its figures say nothing about the server), or hangs, ends the climb;
then `refine` bisection steps between the highest step that held and the lowest that
broke narrow the figure down. A step holds when its run passed and was valid.
"""

from .gate import EXIT_INVALID


def ladder(table):
    """The climbing steps: start, start*factor, ... up to max."""
    value, steps = float(table["start"]), []
    while value <= float(table["max"]) + 1e-9 and len(steps) < 50:
        steps.append(value)
        value *= float(table["factor"])
    return steps


def step_value(key, value):
    return int(round(value)) if key == "users" else round(value, 3)


def describe(value, code, summary):
    """One step's line in the capacity result."""
    if summary is None:
        return {"value": value, "offered": None, "held": False, "code": code,
                "failed": ["no summary (the run hung or did not start)"]}
    complete = summary["fanout"]["complete"]
    failed = [f"{t['name']} {t['measured']} > {t['limit']}" if not t["name"].startswith("min_")
              else f"{t['name']} {t['measured']} < {t['limit']}"
              for t in summary["thresholds"] if not t["ok"]]
    failed += [f"INVALID: {v['name']} {v['measured']} > {v['limit']}" for v in summary.get("validity", []) if not v["ok"]]
    if code not in (0, 1, EXIT_INVALID) and not failed:
        failed.append(f"exit code {code}")
    return {"value": value, "offered": summary["offered_per_second"], "held": not failed and code == 0,
            "code": code, "failed": failed, "p50": complete.get("p50"), "p95": complete.get("p95"),
            "p99": complete.get("p99"), "lost": summary["lost"], "send_lag_p99_ms": summary.get("send_lag_p99_ms")}


def search(table, run_step, log=print):
    """Climb, then bisect. `run_step(value)` runs one step and returns (exit code, summary
    or None). Returns {key, held, broken, stopped_by, steps, summaries}."""
    key = table["key"]
    steps, summaries = [], {}
    held = broken = None

    def attempt(value):
        value = step_value(key, value)
        code, summary = run_step(value)
        step = describe(value, code, summary)
        steps.append(step)
        summaries[value] = summary
        log(f"capacity: {key}={value:g} ({step['offered'] or 0:g} msgs/s offered): "
            f"{'held' if step['held'] else 'broke: ' + '; '.join(step['failed'])}")
        return step

    for value in ladder(table):
        step = attempt(value)
        if not step["held"]:
            broken = step
            break
        held = step
    if held is not None and broken is not None:
        low, high = held["value"], broken["value"]
        for _ in range(int(table["refine"])):
            middle = step_value(key, (low + high) / 2)
            if middle in (low, high):
                break
            step = attempt(middle)
            if step["held"]:
                held, low = step, middle
            else:
                broken, high = step, middle
    return {
        "key": key,
        "held": held,
        "broken": broken,
        "stopped_by": broken["failed"] if broken else [],
        "steps": steps,
        "summaries": summaries,
    }


def render(result):
    held, broken = result["held"], result["broken"]
    lines = [f"{'step':>4}  {result['key']:>14}{'offered/s':>11}{'p50 ms':>8}{'p99 ms':>8}{'lost':>6}  result"]
    for index, step in enumerate(result["steps"], 1):
        lines.append(f"{index:>4}  {step['value']:>14g}{step['offered'] or 0:>11g}{step.get('p50') or 0:>8.0f}"
                     f"{step.get('p99') or 0:>8.0f}{step.get('lost', 0):>6}  "
                     f"{'held' if step['held'] else '; '.join(step['failed'])}")
    if held:
        lines.append(f"CAPACITY: {held['offered']:g} msgs/s offered held ({result['key']}={held['value']:g})")
    else:
        lines.append("CAPACITY: not even the first step held")
    lines.append("STOPPED BY: " + ("; ".join(broken["failed"]) if broken else
                                  "nothing: the highest step held (raise [capacity] max)"))
    return "\n".join(lines)
