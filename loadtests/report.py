"""The run's own HTML report (besides Locust's): one self-contained page, inline SVG, no
script and nothing fetched from the network.

    python -m loadtests.report results/default_summary.json [--output results/default_report.html]
                               [--screenshot docs/loadtest-report.png]

Drawn from the summary JSON alone: latency over time per row (p99 per sample interval)
with the baseline's complete fan-out overlaid and fault windows shaded, delivered msgs/s,
the server's /metrics during the run (commit time, batch size, sockets open), the
generator's CPU, the rows side by side with the baseline, and the verdict table
(thresholds, validity, regressions, the faults' checks), and the per-fault table of a run
with faults. Capacity runs get the table of their steps.
"""

import argparse
import html
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .compare import run_rows
from .gate import result_line

WIDTH, HEIGHT = 900, 240
LEFT, RIGHT, TOP, BOTTOM = 64, 170, 28, 34
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f"]
BASELINE_COLOR = "#9a9a9a"
COMPLETE = "WS fanout complete"

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
.verdict{display:inline-block;padding:6px 14px;border-radius:4px;font-weight:700;color:#fff;font-size:18px}
.PASS{background:#2e7d32}.FAIL{background:#c62828}.INVALID{background:#6d4c41}
table{border-collapse:collapse;font-size:13px;margin:6px 0} td,th{padding:3px 9px;border-bottom:1px solid #eee;
text-align:right} th{background:#f5f5f5} td:first-child,th:first-child,.text td:nth-child(2){text-align:left}
.bad{color:#c62828;font-weight:700}.good{color:#2e7d32}.muted{color:#888}
svg{background:#fff;border:1px solid #e5e5e5;margin:4px 0} .meta{color:#555;font-size:13px}
"""


def esc(value):
    return html.escape(str(value))


def fmt(value, digits=0):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) >= 10 or digits else f"{value:.3g}"
    return str(value)


def tick(value):
    """An axis label: 2.5, 750, 10,000."""
    return f"{value:,.0f}" if value >= 1000 else f"{value:.4g}"


def _nice_max(value):
    """The smallest 1, 2, 2.5 or 5 times a power of ten at or above value (axis ends)."""
    if value <= 0:
        return 1.0
    candidates = [step * 10.0 ** e for e in range(-3, 9) for step in (1, 2, 2.5, 5)]
    return min((c for c in candidates if c >= value), default=value)


def line_chart(title, series, unit, shades=(), limit=None, t_max=None, x_unit=" s", height=HEIGHT):
    """An SVG chart: series [(label, [(t, value)], color, dashed)], shaded windows
    [(start, end, label)], an optional horizontal limit line."""
    points = [p for _, data, _, _ in series for p in data if p[1] is not None]
    if not points:
        return f'<p class="muted">{esc(title)}: no data</p>'
    t_max = _nice_max(t_max or max(t for t, _ in points) or 1.0)
    y_max = _nice_max(max([v for _, v in points] + ([limit] if limit else [])) * 1.05)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, height - TOP - BOTTOM

    def x(t):
        return LEFT + plot_w * min(max(t, 0), t_max) / t_max

    def y(v):
        return TOP + plot_h * (1 - min(v, y_max) / y_max)

    out = [f'<svg width="{WIDTH}" height="{height}" '
           f'viewBox="0 0 {WIDTH} {height}" font-size="11" font-family="sans-serif">',
           f'<text x="{LEFT}" y="16" font-size="13" font-weight="bold">{esc(title)}</text>']
    for start, end, label in shades:
        out.append(f'<rect x="{x(start):.1f}" y="{TOP}" width="{max(x(end) - x(start), 2):.1f}" height="{plot_h}" '
                   f'fill="#ffb74d" fill-opacity="0.25"/><text x="{x(start) + 3:.1f}" y="{TOP + 12}" '
                   f'fill="#e65100">{esc(label)}</text>')
    for i in range(5):
        value = y_max * i / 4
        out.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(value):.1f}" y2="{y(value):.1f}" stroke="#eee"/>'
                   f'<text x="{LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{tick(value)}'
                   f'</text>')
        t = t_max * i / 4
        out.append(f'<text x="{x(t):.1f}" y="{height - BOTTOM + 16}" text-anchor="middle">{t:g}{x_unit}</text>')
    out.append(f'<text x="14" y="{TOP + plot_h / 2:.0f}" transform="rotate(-90 14 {TOP + plot_h / 2:.0f})" '
               f'text-anchor="middle">{esc(unit)}</text>')
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#ccc"/>')
    if limit is not None:
        out.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(limit):.1f}" y2="{y(limit):.1f}" '
                   f'stroke="#c62828" stroke-dasharray="2 3"/><text x="{LEFT + plot_w - 4}" y="{y(limit) - 4:.1f}" '
                   f'text-anchor="end" fill="#c62828">limit {fmt(limit)}</text>')
    for index, (label, data, color, dashed) in enumerate(series):
        path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in data if v is not None)
        dash = ' stroke-dasharray="6 4"' if dashed else ""
        if path:
            out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.8"{dash}/>')
        if len(data) <= 40:  # sparse series: mark the samples (a single one has no line)
            out += [f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="2.5" fill="{color}"/>' for t, v in data if v is not None]
        legend_y = TOP + 12 + 15 * index
        out.append(f'<line x1="{WIDTH - RIGHT + 10}" x2="{WIDTH - RIGHT + 30}" y1="{legend_y - 4}" y2="{legend_y - 4}" '
                   f'stroke="{color}" stroke-width="2"{dash}/><text x="{WIDTH - RIGHT + 35}" y="{legend_y}">'
                   f'{esc(label)}</text>')
    out.append("</svg>")
    return "".join(out)


def row_series(timeline, row, figure="p99"):
    return [(s["t"], s["rows"][row][figure]) for s in timeline.get("samples", []) if row in s["rows"]]


def rate_series(timeline, row):
    samples = timeline.get("samples", [])
    return [(s["t"], s["rows"].get(row, {}).get("n", 0) / (s["t"] - p["t"]))
            for p, s in zip(samples, samples[1:]) if s["t"] > p["t"]]


def share_series(timeline, key):
    samples = [s for s in timeline.get("samples", []) if "local" in s.get(key, {})]
    return [(s["t"], (s[key]["local"] - p[key]["local"]) / (s["t"] - p["t"]))
            for p, s in zip(samples, samples[1:]) if s["t"] > p["t"]]


def cpu_series(timeline):
    series = [("on a CPU", share_series(timeline, "cpu_s"), COLORS[0], False)]
    if any(s.get("busy_s") for s in timeline.get("samples", [])):
        series.append(("CPU + run queue", share_series(timeline, "busy_s"), COLORS[4], True))
    workers = sorted({name for s in timeline.get("samples", []) for name in s.get("worker_cpu", {})})
    for index, name in enumerate(workers, 1):
        series.append((name, [(s["t"], s["worker_cpu"][name]) for s in timeline["samples"]
                              if name in s.get("worker_cpu", {})], COLORS[index % len(COLORS)], False))
    return series


def fault_shades(summary):
    """(start, end, name) of every fault in seconds of the timeline (faults carry wall-clock
    windows; the timeline's t=0 is its started_at)."""
    origin = (summary.get("timeline") or {}).get("started_at")
    if origin is None:
        return []
    return [(f["start"] - origin, f["end"] - origin, f["name"]) for f in summary.get("faults", [])
            if f.get("start") is not None and f.get("end") is not None]


def faults_table(summary):
    """Per fault: what it did to the users (loadtests/faults.py)."""
    rows = "".join(
        f'<tr><td>{esc(f["name"])}</td><td>{fmt(f.get("start_offset_s"), 1)}–{fmt(f.get("end_offset_s"), 1)}</td>'
        f'<td class="{"bad" if f["acknowledged_lost"] else ""}">{f["acknowledged_lost"]}</td>'
        f'<td>{f["unacknowledged_failed"]}</td><td>{f["reconnects"]}</td>'
        f'<td class="{"bad" if f["recovery_s"] is None else ""}">{fmt(f["recovery_s"], 1) if f["recovery_s"] is not None else "never"}</td>'
        f'<td>{fmt(f["latency_during_ms"].get("p99"))}</td><td>{fmt(f["latency_after_ms"].get("p99"))}</td>'
        f'<td class="bad">{esc(f.get("error") or "")}</td></tr>'
        for f in summary.get("faults", []))
    return ("<table><tr><th>fault</th><th>window s (from the send start)</th><th>acknowledged lost</th>"
            "<th>unacknowledged failed</th><th>reconnects</th><th>recovery s</th><th>p99 during ms</th>"
            f"<th>p99 after ms</th><th>error</th></tr>{rows}</table>")


def latency_charts(summary):
    timeline = summary.get("timeline") or {}
    baseline = (summary.get("baseline") or {}).get("timeline") or {}
    shades = fault_shades(summary)
    names = sorted({row for s in timeline.get("samples", []) for row in s["rows"]})
    fanout = [n for n in names if n.startswith("WS fanout ")]
    requests = [n for n in names if n not in fanout and n != "WS send"]
    t_max = max([s["t"] for s in timeline.get("samples", [])] + [s["t"] for s in baseline.get("samples", [])]
                + [end for _, end, _ in shades] + [1.0])
    limit = next((t["limit"] for t in summary.get("thresholds", []) if t["name"] == "p99_complete_ms"), None)
    charts = []
    series = [(n.removeprefix("WS fanout "), row_series(timeline, n), COLORS[i % len(COLORS)], False)
              for i, n in enumerate(fanout)]
    if baseline:
        series.append(("baseline complete", row_series(baseline, COMPLETE), BASELINE_COLOR, True))
    charts.append(line_chart("Fan-out latency, p99 per interval", series, "ms", shades,
                             limit if limit is not None and limit < 60000 else None, t_max))
    if requests:
        series = [(n, row_series(timeline, n), COLORS[i % len(COLORS)], False) for i, n in enumerate(requests)]
        charts.append(line_chart("Requests and handshakes, p99 per interval", series, "ms", shades, None, t_max))
    series = [("complete", rate_series(timeline, COMPLETE), COLORS[0], False)]
    if baseline:
        series.append(("baseline complete", rate_series(baseline, COMPLETE), BASELINE_COLOR, True))
    charts.append(line_chart("Delivered messages per second (complete fan-out)", series, "msgs/s", shades, None, t_max))
    server = [s for s in timeline.get("samples", []) if s.get("server")]
    if server:
        for key, title, unit in (("commit_ms", "Server: batch commit time (mean per interval)", "ms"),
                                 ("batch_size", "Server: messages per group-commit batch (mean)", "messages"),
                                 ("sockets", "Server: sockets open", "sockets")):
            series = [(key, [(s["t"], s["server"].get(key)) for s in server], COLORS[0], False)]
            charts.append(line_chart(title, series, unit, shades, None, t_max, height=170))
    else:
        charts.append(f'<p class="muted">Server metrics: {esc(timeline.get("server_metrics", "not scraped"))}</p>')
    cpu_limit = next((v["limit"] for v in summary.get("validity", []) if v["name"].startswith("generator_cpu")), None)
    charts.append(line_chart("Load generator: CPU and CPU demand (cores)", cpu_series(timeline), "cores", shades, cpu_limit, t_max,
                             height=170))
    return charts


def rows_table(summary):
    current = run_rows(summary)
    base_entries = {(e["row"], e["metric"]): e for e in (summary.get("baseline") or {}).get("entries", [])}
    has_base = bool(base_entries)
    head = "<tr><th>row</th><th>count</th>" + "".join(
        f"<th>{m}</th>" + ("<th>baseline</th>" if has_base else "") for m in ("p50 ms", "p95 ms", "p99 ms", "msgs/s")
    ) + "<th>failures</th></tr>"
    body = []
    for name, row in current.items():
        cells = [f"<td>{esc(name)}</td><td>{row.get('count', 0)}</td>"]
        for metric in ("p50", "p95", "p99", "per_second"):
            entry = base_entries.get((name, metric))
            css = "bad" if entry and entry["verdict"] == "regression" else ("good" if entry and entry["verdict"] == "better" else "")
            cells.append(f'<td class="{css}">{fmt(row.get(metric), 1 if metric == "per_second" else 0)}</td>')
            if has_base:
                cells.append(f'<td class="muted">{fmt(entry and entry["baseline"], 1 if metric == "per_second" else 0)}</td>')
        cells.append(f"<td>{row.get('failures', '-')}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table>{head}{''.join(body)}</table>"


def verdict_rows(summary):
    rows = list(summary.get("thresholds", [])) + list(summary.get("validity", []))
    base = summary.get("baseline")
    if base:
        if not base["comparable"]:
            rows.append({"group": "baseline", "name": "comparable", "limit": "same load",
                         "measured": base["not_comparable_because"], "ok": False})
        for e in base["entries"]:
            if e["verdict"] in ("regression", "better") or e["row"] == "fanout complete":
                rows.append({"group": "baseline", "name": f"{e['row']} {e['metric']}",
                             "limit": f"±{fmt(e['allowed'], 2)}" if e["allowed"] is not None else "-",
                             "measured": f"{fmt(e['baseline'], 1)} → {fmt(e['current'], 1)}",
                             "ok": e["verdict"] != "regression", "note": e["verdict"]})
    if summary.get("repeat"):
        passed = sum(1 for run in summary["runs"] if run["passed"])
        rows.append({"group": "repeat", "name": "runs passed", "limit": summary["repeat"],
                     "measured": passed, "ok": passed == summary["repeat"]})
    return rows


def verdict_table(summary):
    body = []
    for row in verdict_rows(summary):
        state = "ok" if row["ok"] else ("SATURATED" if row["group"] == "validity" else "EXCEEDED")
        if row["group"] == "baseline":
            state = row.get("note", state).upper() if not row["ok"] else row.get("note", "ok")
        body.append(f'<tr><td>{esc(row["group"])}</td><td>{esc(row["name"])}</td><td>{esc(fmt(row["limit"], 2))}</td>'
                    f'<td>{esc(fmt(row["measured"], 2))}</td><td class="{"" if row["ok"] else "bad"}">{esc(state)}</td></tr>')
    return ("<table class='text'><tr><th>group</th><th>check</th><th>limit</th><th>measured</th><th>result</th></tr>"
            + "".join(body) + "</table>")


def capacity_section(result):
    held = result.get("held")
    lines = [f"<p><b>Highest load that held:</b> {esc(fmt(held and held['offered'], 1))} msgs/s offered "
             f"({esc(result['key'])} = {esc(fmt(held and held['value'], 2))})"
             f"; <b>stopped by:</b> {esc(', '.join(result.get('stopped_by') or ['nothing: the last step held']))}</p>"]
    rows = "".join(
        f'<tr><td>{i + 1}</td><td>{fmt(s["value"], 2)}</td><td>{fmt(s["offered"], 1)}</td><td>{fmt(s.get("p50"))}</td>'
        f'<td>{fmt(s.get("p99"))}</td><td>{s.get("lost", "-")}</td><td class="{"" if s["held"] else "bad"}">'
        f'{"held" if s["held"] else esc(", ".join(s["failed"]))}</td></tr>'
        for i, s in enumerate(result["steps"]))
    lines.append(f"<table><tr><th>step</th><th>{esc(result['key'])}</th><th>offered msgs/s</th><th>p50 ms</th>"
                 f"<th>p99 ms</th><th>lost</th><th>result</th></tr>{rows}</table>")
    ordered = sorted(result["steps"], key=lambda s: s["offered"])
    lines.append(line_chart("Complete fan-out p99 by offered load (x: msgs/s offered)",
                            [("p99", [(s["offered"], s.get("p99")) for s in ordered], COLORS[1], False),
                             ("p50", [(s["offered"], s.get("p50")) for s in ordered], COLORS[0], False)],
                            "ms", t_max=max(s["offered"] for s in ordered), x_unit=""))
    return "".join(lines)


def render(summary):
    verdict = result_line(summary).split()[1]
    if summary.get("baseline") and not summary["baseline"]["passed"] and verdict == "PASS":
        verdict = "FAIL"
    title = f"Load test {summary['scenario']}"
    meta = (f"{summary['users']} conversations, {summary['offered_per_second']:g} msgs/s offered for "
            f"{summary['duration']:g} s; sent {summary['sent']}, lost {summary['lost']}, duplicated "
            f"{summary['duplicated']}, out of order {summary['out_of_order']}, error rate {summary['error_rate']:.4%}")
    if summary.get("repeat"):
        meta += f"; {summary['repeat']} runs (figures of the last run, verdicts over all)"
    base = summary.get("baseline")
    if base:
        meta += f"; baseline {base['file']} ({base['runs']} run(s))"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>"
             f"<style>{STYLE}</style></head><body>",
             f"<h1>{esc(title)} <span class='verdict {verdict}'>{verdict}</span></h1>",
             f"<p class='meta'>{esc(meta)}</p>"]
    if summary.get("capacity"):
        parts += ["<h2>Capacity</h2>", capacity_section(summary["capacity"])]
    heading = "Verdict" + (" of the highest step that held" if summary.get("capacity") else "")
    if summary.get("faults"):
        parts += ["<h2>Faults</h2>", faults_table(summary)]
    parts += [f"<h2>{heading}</h2>", verdict_table(summary),
              "<h2>Over time</h2>"
              + ("<p class='meta'>Shaded: fault windows. Dashed grey: the baseline run.</p>" if base or
                 summary.get("faults") else ""),
              *latency_charts(summary),
              "<h2>Rows" + (" (this run, baseline beside it)" if base else "") + "</h2>", rows_table(summary),
              "</body></html>"]
    return "\n".join(parts)


def write(summary, path):
    path = Path(path)
    path.write_text(render(summary))
    return path


def screenshot(html_path, png_path, size=(1150, 1500), browser=None, timeout=120):
    """A PNG of the page by headless Chromium (Debian's `chromium` package)."""
    browser = browser or shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        raise FileNotFoundError("no chromium binary (apt-get install chromium)")
    png_path = Path(png_path).resolve()
    cmd = [browser, "--headless", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           f"--screenshot={png_path}", f"--window-size={size[0]},{size[1]}", Path(html_path).resolve().as_uri()]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
    subprocess.run(cmd, check=True, capture_output=True, timeout=timeout)
    return png_path


def main(argv=None):
    parser = argparse.ArgumentParser(description="HTML report of a load test summary")
    parser.add_argument("summary")
    parser.add_argument("--output", default="")
    parser.add_argument("--screenshot", default="", metavar="PNG", help="also take a screenshot with headless Chromium")
    args = parser.parse_args(argv)
    summary_path = Path(args.summary)
    output = args.output or str(summary_path).replace("_summary.json", "_report.html")
    print(write(json.loads(summary_path.read_text()), output))
    if args.screenshot:
        print(screenshot(output, args.screenshot))
    return 0


if __name__ == "__main__":
    sys.exit(main())
