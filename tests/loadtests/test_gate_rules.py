"""The release gate's rules without a server: the baseline comparison and its spread rule,
run validity, the generator's CPU accounting, the capacity climb, the HTML report."""

import pytest

from loadtests import capacity, compare, config, gate, monitor, report

TOLERANCES = config.load("default").regression  # latency 25 % / 10 ms, throughput 10 %


def summary_with(p50=10.0, p95=20.0, p99=30.0, rate=100.0, count=500, lost=0, error_rate=0.0, **extra):
    row = {"count": count, "failures": 0, "p50": p50, "p95": p95, "p99": p99, "max": p99, "per_second": rate}
    fanout = {path: dict(row) for path in gate.FANOUT_ROWS}
    return {"scenario": "t", "users": 10, "offered_per_second": 100.0, "duration": 30, "sent": count,
            "fanout": fanout, "requests": {"HTTP login": dict(row, count=20)}, "lost": lost, "duplicated": 0,
            "out_of_order": 0, "error_rate": error_rate, "passed": True, "valid": True, **extra}


def repeated(*runs):
    """A --repeat summary: the last run's figures plus every run's compact rows."""
    combined = dict(runs[-1])
    combined["runs"] = [compare.compact(run) for run in runs]
    return combined


def verdicts(entries, row="fanout complete"):
    return {e["metric"]: e["verdict"] for e in entries if e["row"] == row}


def test_judge_change_is_tolerance_or_spread_whichever_is_larger():
    """change > max(tolerance, spread(base), spread(current)) is a regression; inside is ok."""
    assert compare.judge_change([100], [124], 25)[2] == "ok"
    assert compare.judge_change([100], [126], 25)[2] == "regression"
    assert compare.judge_change([100], [70], 25)[2] == "better"
    # A noisy baseline (spread 60) absorbs a rise the tolerance alone would flag.
    assert compare.judge_change([70, 100, 130], [150], 25) == (50, 60, "ok")
    assert compare.judge_change([70, 100, 130], [161], 25)[2] == "regression"
    # Noise on this side counts too; medians are compared, so one outlier does not decide.
    assert compare.judge_change([100, 100, 100], [100, 105, 400], 25) == (5, 300, "ok")
    # Throughput: lower is worse.
    assert compare.judge_change([100], [85], 10, lower_is_worse=True)[2] == "regression"
    assert compare.judge_change([100], [120], 10, lower_is_worse=True)[2] == "better"


def test_a_slower_run_is_a_regression_even_within_fixed_thresholds():
    """p50 10 -> 160 ms fails the comparison; the same run against itself passes."""
    base = summary_with()
    slow = summary_with(p50=160.0, p95=170.0, p99=180.0)
    section = compare.baseline_section(base, slow, TOLERANCES, "base.json")
    assert not section["passed"] and section["comparable"]
    assert verdicts(section["entries"]) == {"p50": "regression", "p95": "regression", "p99": "regression",
                                            "per_second": "ok"}
    assert compare.baseline_section(base, summary_with(), TOLERANCES, "base.json")["passed"]
    assert "BASELINE: FAIL" in compare.render(section)


def test_latency_floor_keeps_tiny_figures_from_flagging():
    """3 -> 12 ms is +300 % but below the 10 ms floor: not a regression; 3 -> 14 ms is."""
    base = summary_with(p50=3.0, p95=3.0, p99=3.0)
    assert verdicts(compare.compare(base, summary_with(p50=12.0, p95=3.0, p99=3.0), TOLERANCES))["p50"] == "ok"
    assert verdicts(compare.compare(base, summary_with(p50=14.0, p95=3.0, p99=3.0), TOLERANCES))["p50"] == "regression"


def test_repeated_runs_compare_medians_within_their_spread():
    """Three baseline runs at 100/140/180 ms p99 (median 140, spread 80): a 210 ms run is
    inside the noise, a 230 ms run is not (the 25 % tolerance alone would flag 176 ms)."""
    base = repeated(*(summary_with(p99=value) for value in (100.0, 140.0, 180.0)))
    assert verdicts(compare.compare(base, summary_with(p99=210.0), TOLERANCES))["p99"] == "ok"
    assert verdicts(compare.compare(base, summary_with(p99=230.0), TOLERANCES))["p99"] == "regression"
    # A noisy current side widens the band just the same.
    noisy = repeated(*(summary_with(p99=value) for value in (150.0, 190.0, 300.0)))
    entry = next(e for e in compare.compare(base, noisy, TOLERANCES) if e["metric"] == "p99"
                 and e["row"] == "fanout complete")
    assert (entry["change"], entry["allowed"], entry["verdict"]) == (50.0, 150.0, "ok")  # median 190, spread 150


def test_throughput_errors_and_losses_are_compared():
    base = summary_with()
    entries = compare.compare(base, summary_with(rate=80.0, lost=2, error_rate=0.01), TOLERANCES)
    assert verdicts(entries)["per_second"] == "regression"
    assert verdicts(entries, "run") == {"error_rate": "regression", "lost": "regression",
                                        "duplicated": "ok", "out_of_order": "ok"}
    # A request row: its own error rate and the requests it completed (not its rate, which
    # follows the users' schedule).
    failing = summary_with()
    failing["requests"]["HTTP login"]["failures"] = 5
    assert verdicts(compare.compare(base, failing, TOLERANCES), "HTTP login") == {
        "p50": "ok", "p95": "ok", "p99": "ok", "completed": "regression", "error_rate": "regression"}


def test_rows_with_few_samples_are_shown_not_judged_and_missing_rows_fail():
    base = summary_with()
    slow_logins = summary_with()
    slow_logins["requests"]["HTTP login"]["count"] = 5
    slow_logins["requests"]["HTTP login"]["p50"] = 900.0
    entries = compare.compare(base, slow_logins, TOLERANCES)
    assert set(verdicts(entries, "HTTP login").values()) == {"not judged"}
    gone = summary_with()
    gone["fanout"]["partner_inbox"] = {"count": 0}
    entries = compare.compare(base, gone, TOLERANCES)
    assert verdicts(entries, "fanout partner_inbox") == {"count": "regression"}


def test_runs_of_another_load_are_not_compared():
    section = compare.baseline_section(summary_with(), summary_with(users=20), TOLERANCES, "b.json")
    assert not section["comparable"] and not section["passed"]
    assert "users 10 vs 20" in section["not_comparable_because"]


def test_validity_send_lag_and_generator_cpu():
    """Send lag over its limit or a generator busy >= the CPU limit: INVALID (exit code 3)."""
    limits = {"max_send_lag_p99_ms": 100.0, "max_generator_cpu": 0.9}
    fine = {"send_lag_p99_ms": 20, "generator_cpu": {"local": 0.4, "worker a": 0.5}}
    assert all(ok for *_, ok in gate.judge_validity(fine, limits))
    lagging = dict(fine, send_lag_p99_ms=250)
    busy = dict(fine, generator_cpu={"local": 0.4, "worker a": 0.97})
    assert [n for n, *_, ok in gate.judge_validity(lagging, limits) if not ok] == ["send_lag_p99_ms"]
    assert [n for n, *_, ok in gate.judge_validity(busy, limits) if not ok] == ["generator_cpu worker a"]
    assert gate.exit_code({"passed": True, "valid": False}) == gate.EXIT_INVALID
    assert gate.exit_code({"passed": False, "valid": False}) == gate.EXIT_INVALID
    assert gate.exit_code({"passed": False, "valid": True}) == 1


def test_busiest_cpu_window_from_cumulative_seconds():
    """A process idle, then busy for 6 s, then idle: its busiest 5 s window is ~1 core."""
    cumulative = [0, 0.1, 0.2, 2.2, 4.2, 6.2, 6.3, 6.4]
    samples = [{"t": 2.0 * i, "busy_s": {"local": value}} for i, value in enumerate(cumulative)]
    assert monitor.busiest(samples) == pytest.approx(1.0, abs=0.01)
    assert monitor.busiest(samples[:1]) is None
    assert monitor.busiest([{"t": 0, "cpu_s": {"local": 0}}, {"t": 2, "cpu_s": {"local": 0.5}}], "cpu_s") == 0.25


def test_interval_percentiles_from_histogram_difference():
    before = {10: 5, 20: 5}
    now = {10: 5, 20: 6, 30: 90, 400: 4}
    assert monitor.interval_percentiles(now, before) == {"n": 95, "p50": 30, "p95": 30, "p99": 400}
    assert monitor.interval_percentiles(before, before) is None


def test_server_figures_from_two_scrapes():
    text = ("# HELP x\nhabitto_chat_batch_commit_seconds_sum 0.5\nhabitto_chat_batch_commit_seconds_count 100\n"
            'habitto_chat_sockets_open{kind="room",protocol="legacy"} 8\n'
            'habitto_chat_sockets_open{kind="inbox",protocol="legacy"} 8\n'
            "habitto_chat_batch_size_messages_sum 300\nhabitto_chat_batch_size_messages_count 100\n"
            "habitto_chat_messages_stored_total 300\n")
    now = monitor.parse_metrics(text)
    assert now["habitto_chat_sockets_open"] == 16
    figures = monitor.server_figures(now, {}, 2.0)
    assert figures == {"commit_ms": 5.0, "batch_size": 3.0, "stored_per_s": 150.0, "sockets": 16}
    # The backend restarted between the scrapes (its counters went down): counted from zero.
    restarted = dict(now, habitto_chat_messages_stored_total=20.0)
    assert monitor.server_figures(restarted, now, 2.0)["stored_per_s"] == 10.0


def test_capacity_climbs_backs_off_and_names_the_stopper():
    """Steps 2, 4, 8, 16: 16 breaks p99; bisection tries 12 (holds) and 14 (breaks)."""
    table = {"key": "rate_per_user", "start": 2.0, "factor": 2.0, "max": 64.0, "refine": 2}
    seen = []

    def run_step(value):
        seen.append(value)
        slow = value >= 13
        s = summary_with(p99=900.0 if slow else 40.0, offered_per_second=value * 20)
        s["thresholds"] = [{"name": "p99_complete_ms", "limit": 500, "measured": s["fanout"]["complete"]["p99"],
                            "ok": not slow}]
        s["validity"] = []
        return (1 if slow else 0), s

    result = capacity.search(table, run_step, log=lambda line: None)
    assert seen == [2.0, 4.0, 8.0, 16.0, 12.0, 14.0]
    assert result["held"]["value"] == 12.0 and result["held"]["offered"] == 240.0
    assert result["stopped_by"] == ["p99_complete_ms 900.0 > 500"]
    assert "CAPACITY: 240 msgs/s offered held" in capacity.render(result)


def test_capacity_stops_on_an_invalid_step():
    table = {"key": "users", "start": 4, "factor": 2.0, "max": 16, "refine": 0}

    def run_step(value):
        s = summary_with(offered_per_second=value * 4)
        s["thresholds"] = []
        s["validity"] = [{"name": "send_lag_p99_ms", "limit": 100, "measured": 300, "ok": value < 8}]
        return (0 if value < 8 else gate.EXIT_INVALID), s

    result = capacity.search(table, run_step, log=lambda line: None)
    assert result["held"]["value"] == 4 and result["stopped_by"] == ["INVALID: send_lag_p99_ms 300 > 100"]


def test_report_is_self_contained_and_shows_the_baseline_and_the_verdicts():
    samples = [{"t": float(t), "rows": {"WS fanout complete": {"n": 50, "p50": 10, "p95": 20, "p99": 30 + t}},
                "cpu_s": {"local": 0.1 * t}, "busy_s": {"local": 0.2 * t}, "worker_cpu": {},
                "server": {"commit_ms": 2.0, "batch_size": 3.0, "stored_per_s": 50.0, "sockets": 40}}
               for t in range(0, 20, 2)]
    current = summary_with(timeline={"samples": samples, "server_metrics": "scraped", "started_at": 0.0},
                           thresholds=[{"group": "thresholds", "name": "p99_complete_ms", "limit": 500,
                                        "measured": 30, "ok": True},
                                       {"group": "faults", "name": "stop_redis@5 acked_lost", "limit": 0,
                                        "measured": 0, "ok": True}],
                           validity=[{"group": "validity", "name": "generator_cpu local", "limit": 0.9,
                                      "measured": 0.2, "ok": True}])
    base = summary_with(timeline={"samples": samples})
    current["baseline"] = compare.baseline_section(base, current, TOLERANCES, "results/baseline/t_summary.json")
    page = report.render(current)
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert page.count("<svg") >= 5 and "baseline complete" in page and "stop_redis@5 acked_lost" in page
    assert "Server: batch commit time" in page and ">PASS<" in page


def test_gate_judges_fault_checks_and_the_report_shades_their_windows(tmp_path, monkeypatch):
    """The faults' checks gate the run (group "faults"); the report shades each fault's
    wall-clock window on the timeline and lists what it did. (Locust's statistics and the
    fault report are stood in for: importing locust here would monkey-patch the test process.)"""
    from types import SimpleNamespace

    anomalies = {kind: {path: 0 for path in gate.PATHS} for kind in gate.ANOMALIES}
    figures = summary_with(anomalies=anomalies, send_failures=0, send_lag_p99_ms=3, other_requests=10,
                           other_failures=0, stray=0, late=0)
    fault = {"name": "restart_backend@5", "start": 1000.0 + 6, "end": 1000.0 + 9, "start_offset_s": 5.0,
             "end_offset_s": 8.0, "acknowledged_lost": 2, "unacknowledged_failed": 1, "reconnects": 4,
             "recovery_s": 3.5, "latency_during_ms": {"p99": 900}, "latency_after_ms": {"p99": 40}, "error": ""}

    def fault_report(summary, schedule, tracker, reconnects):
        summary["faults"] = [fault]
        return [("restart_backend@5 acked_lost", 0, 2, False)]

    monkeypatch.setattr(gate, "summarize", lambda stats, scenario: dict(figures))
    monkeypatch.setattr(gate.faults, "add_to_summary", fault_report)
    environment = SimpleNamespace(runner=SimpleNamespace(stats=None, exceptions={}), process_exit_code=None)
    summary = gate.gate(environment, config.load("smoke"), tmp_path)
    assert not summary["passed"] and summary["valid"] and environment.process_exit_code == 1
    assert {"group": "faults", "name": "restart_backend@5 acked_lost", "limit": 0, "measured": 2,
            "ok": False} in summary["thresholds"]
    assert (tmp_path / "smoke_summary.json").exists()
    summary["timeline"] = {"started_at": 1000.0, "samples": [
        {"t": float(t), "rows": {"WS fanout complete": {"n": 5, "p50": 5, "p95": 6, "p99": 7}}} for t in range(12)]}
    assert report.fault_shades(summary) == [(6.0, 9.0, "restart_backend@5")]
    page = report.render(summary)
    assert "<h2>Faults</h2>" in page and "restart_backend@5 acked_lost" in page and 'fill="#ffb74d"' in page
    assert "20 s</text>" in page and "e+" not in page  # the time axis spans the run, not the epoch
