"""The release gate's modes end to end against real server processes: a run made slower on
purpose (CHAT_TEST_DELIVERY_DELAY_MS) that passes the fixed thresholds fails the baseline
comparison and does not become the next baseline; capacity mode ends with a figure and
the threshold that stopped it; a saturated generator makes the run INVALID; the HTML
report renders in headless Chromium. No speed target is asserted here."""

import json
import struct
import zlib

import pytest

from loadtests import report
from tests.loadtests.test_gate_live import run_loadtest
from tests.support import services

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory):
    """A passing smoke run with --baseline auto: it is kept as the next baseline."""
    results = tmp_path_factory.mktemp("gate")
    code, summary, output = run_loadtest(results, "--scenario", "smoke", "--baseline", "auto")
    assert code == 0, output[-4000:]
    assert (results / "baseline" / "smoke_summary.json").exists(), output[-2000:]
    return results


def test_baseline_fails_a_slower_release_within_the_thresholds(smoke_results):
    """150 ms added to every delivery: every fixed threshold of `smoke` still holds, but the
    comparison with the kept baseline fails (exit 1), and the baseline stays the old run."""
    kept = smoke_results / "baseline" / "smoke_summary.json"
    before = kept.read_text()
    code, slow, output = run_loadtest(smoke_results, "--scenario", "smoke", "--baseline", "auto",
                                      "--server-env", "CHAT_TEST_DELIVERY_DELAY_MS=150")
    assert code == 1, output[-4000:]
    assert slow["passed"] and slow["valid"] and all(t["ok"] for t in slow["thresholds"])
    regressions = {(e["row"], e["metric"]) for e in slow["baseline"]["entries"] if e["verdict"] == "regression"}
    for path in ("sender_echo", "partner_room", "partner_inbox", "complete"):
        assert (f"fanout {path}", "p50") in regressions, (path, slow["baseline"]["entries"])
    assert "BASELINE: FAIL" in output and "VERDICT: FAIL" in output
    assert kept.read_text() == before
    # The server's /metrics was scraped during the run (loopback): sockets were open.
    assert any((sample.get("server") or {}).get("sockets") for sample in slow["timeline"]["samples"])
    page = (smoke_results / "smoke_report.html").read_text()
    assert "baseline complete" in page and "REGRESSION" in page


def test_capacity_run_ends_with_a_figure_and_what_stopped_it(tmp_path):
    """Short steps (3 s) of 4, 16, 64... msgs/s per account against a server it starts whose
    per-user send limit is 8/s: whatever the machine's speed, the climb breaks at 16 (frames
    refused with rate_limited raise the error rate), backs off once (to 10), and names the
    highest load that held."""
    code, _, output = run_loadtest(
        tmp_path, "--scenario", "capacity", "--capacity", "--set", "users=4", "--set", "capacity.start=4",
        "--set", "capacity.factor=4", "--set", "capacity.max=256", "--set", "capacity.step_duration=3",
        "--set", "capacity.step_drain=2", "--set", "capacity.refine=1",
        "--server-env", "CHAT_SEND_RATE=8", "--server-env", "CHAT_SEND_BURST=8",
        # A loaded CI machine delays the generator too; this test is about the climb.
        "--set", "validity.max_send_lag_p99_ms=1000", timeout=900)
    assert code == 0, output[-4000:]
    result = json.loads((tmp_path / "capacity_capacity.json").read_text())["capacity"]
    assert result["held"]["offered"] >= 32 and result["held"]["held"]
    assert result["stopped_by"] and not result["broken"]["held"]
    assert result["held"]["offered"] < result["broken"]["offered"] <= 128  # 16/s per account
    assert len(result["steps"]) >= 2
    assert "CAPACITY:" in output and "STOPPED BY:" in output
    assert "Highest load that held" in (tmp_path / "capacity_capacity_report.html").read_text()


def test_a_saturated_generator_marks_the_run_invalid(tmp_path, monkeypatch):
    """LOADTEST_TEST_BUSY_GENERATOR keeps the Locust process busy all the time: whatever
    the server does, the run is INVALID (exit code 3), not passed."""
    monkeypatch.setenv("LOADTEST_TEST_BUSY_GENERATOR", "1")
    code, summary, output = run_loadtest(tmp_path, "--scenario", "smoke", "--set", "validity.max_generator_cpu=0.9")
    assert code == 3, output[-4000:]
    assert summary["valid"] is False
    assert any(v["name"] == "generator_cpu local" and not v["ok"] for v in summary["validity"]), summary["validity"]
    assert "RESULT: INVALID" in output and "VERDICT: INVALID" in output
    assert "INVALID" in (tmp_path / "smoke_report.html").read_text()


def png_pixels(data):
    """(width, height, decompressed scanlines) of a PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    offset, idat = 8, b""
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        if kind == b"IDAT":
            idat += data[offset + 8:offset + 8 + length]
        offset += 12 + length
    return width, height, zlib.decompress(idat)


def test_report_screenshot_is_a_real_picture(smoke_results, tmp_path):
    """The report of a real run, rendered by headless Chromium: a PNG of the requested size
    with content (a blank page compresses to a handful of distinct bytes)."""
    browser = services.chromium_binary()
    summary = json.loads((smoke_results / "baseline" / "smoke_summary.json").read_text())
    page = report.write(summary, tmp_path / "report.html")
    png = report.screenshot(page, tmp_path / "report.png", size=(1000, 900), browser=browser)
    width, height, scanlines = png_pixels(png.read_bytes())
    assert (width, height) == (1000, 900)
    assert len(set(scanlines)) > 40
    assert sum(1 for byte in scanlines if byte) > len(scanlines) // 100
