"""make bench's /ws/v2/ device path beside the legacy sockets (bench/run.py, bench/flood.py
--device, bench/idle.py --device): the device flood and its ratios, the paced device run,
idle device sockets' memory, against the relay and against a real server."""

import json

import pytest

from bench import run
from bench.report import render
from tests.bench.test_relay import flood as flood_run
from tests.loadtests.test_gate_live import run_loadtest
from tests.loadtests.test_v2_scenario import assert_complete

pytestmark = pytest.mark.e2e


@pytest.fixture
def relay(tmp_path):
    with run.RelayProcess(tmp_path, "device") as process:
        yield f"ws://{process.base}"


def device_spec(conversations, messages):
    return {"label": "device (v2)", "socket_kind": "device", "inbox": False, "conversations": conversations,
            "messages_per_socket": messages}


def test_device_flood_against_the_relay_counts_acks_and_both_devices(relay, tmp_path):
    result = run.flood(relay, run.trusted_accounts(tmp_path, 4), device_spec(2, 20), timeout=20)
    assert result["passed"], result
    assert (result["sockets"], result["sent"], result["delivered"], result["echoes"], result["own_frames"]) == \
        (4, 80, 80, 80, 80)
    assert result["lost"] == result["duplicated"] == result["out_of_order"] == result["stray"] == 0


def test_device_floods_skip_targets_without_the_device_socket(monkeypatch, tmp_path):
    """A commit before /ws/v2/ runs the legacy floods only; the device flood is given as a
    ratio to the relay and to the room + inbox flood of the same conversations."""
    order = []
    monkeypatch.setattr(run, "TARGETS", [run.Target("this tree", "new"), run.Target("commit old", "old", device=False)])
    # As the real ones: the spec, then the flood's result (whose "sockets" is a count).
    monkeypatch.setattr(run, "_flood_relay", lambda out, spec, kind: order.append(("relay", kind))
                        or {**spec, **flood_run(spec["label"], "relay", 1000), "sockets": 100,
                            "cpu_us_per_message": 50})
    monkeypatch.setattr(run, "_flood_server", lambda out, spec, kind, target: order.append((target.commit, kind))
                        or {**spec, **flood_run(spec["label"], target.label,
                                                300 if spec["socket_kind"] == "device" else 200), "sockets": 100,
                            "cpu_us_per_message": 150 if spec["socket_kind"] == "device" else 100})
    cfg = {"flood": [("room + inbox", "room+inbox", 50, 100), ("device (v2)", "device", 50, 100)]}
    result = run.phase_throughput(cfg, tmp_path)
    assert order == [("relay", "inbox_50"), ("new", "inbox_50"), ("old", "inbox_50"),
                     ("relay", "device_50"), ("new", "device_50")]
    legacy, device = result["summary"]
    assert device["socket_kind"] == "device" and device["ratio_to_relay"] == {"this tree": 0.3}
    assert device["ratio_to_legacy"] == {"relay": 1.0, "this tree": 1.5} and "ratio_to_legacy" not in legacy
    assert device["cpu_ratio_to_legacy"] == {"relay": 1.0, "this tree": 1.5}
    line = run.summary_lines(result["summary"])[1]
    assert "against room+inbox: relay 1.00x, this tree 1.50x" in line
    assert "CPU per message: relay 50 us (1.00x), this tree 150 us (1.50x)" in line
    machine = {"nproc": 2, "cpu_model": "x", "memory_gb": 1, "kernel": "k", "python": "3", "versions": {},
               "nofile_limit": 1}
    runs = [{**r, "round": 0, "sent": 10, "stored": 10, "p50_ms": 1, "p99_ms": 2, "server_cpu": 1,
             "machine_busy": 1} for r in result["runs"]]
    text = render({"machine": machine, "throughput": {"runs": runs, "summary": result["summary"]},
                   "idle": {"runs": [{"socket_kind": "device", "deflate": False, "sockets": 5, "failed": 0,
                                      "handshakes_per_s": 9, "rss_before_mib": 1, "rss_open_mib": 2,
                                      "kib_per_socket": 3.5, "closed_by_server": 0}]}})
    assert "| device (v2) | 50 | this tree | 300 | 0.3 | - | 1.5 | 150 | 1.5 |" in text
    assert "| device | off | 5 | 0 | 9 | 1 | 2 | 3.5 | 0 | - | - | - |" in text


def test_v2_smoke_against_the_relay(tmp_path):
    """Two groups of four accounts on the relay's device sockets: every message acked and on
    both devices, nothing lost, duplicated or reordered; the summary has the device rows."""
    with run.RelayProcess(tmp_path, "v2") as relay:
        accounts = run.trusted_accounts(tmp_path, 8)
        code, summary, output = run_loadtest(
            tmp_path / "results", "--scenario", "v2_smoke", "--target", f"http://{relay.base}",
            "--target-ws", f"ws://{relay.base}", "--accounts", str(accounts), "--set", "duration=3")
    assert code == 0, output[-4000:]
    assert_complete(summary, 2 * 4 * 2 * 3)
    assert "partner_device" in output and "RESULT: PASS" in output


def test_paced_device_run_against_the_relay_reports_the_device_paths(relay, tmp_path):
    """The latency phase's device run: the load tester's DeviceConversationUser, brief() with
    the device sockets' partner path."""
    accounts = run.trusted_accounts(tmp_path, 10)
    base = relay.removeprefix("ws://")
    summary = run.loadtest(f"http://{base}", relay, accounts, tmp_path, "latency 40 device", rate=40, duration=3,
                           users=4, drain=3, device=True)
    figures = run.brief(summary)
    assert figures["socket_kind"] == "device" and figures["passed"], summary
    assert figures["sent"] == 120 and figures["lost"] == 0 and figures["partner_device_p99"] is not None
    lines = run.latency_lines({"runs": [{"rate": 40, "target": "t", **figures, "server_cpu": 0.1},
                                        {"rate": 40, "target": "t", **figures, "socket_kind": "room+inbox",
                                         "server_cpu": 0.2}]})
    assert lines and "room + inbox" in lines[0] and "device (v2)" in lines[0]


@pytest.mark.slow
def test_device_flood_and_idle_device_sockets_against_a_server(monkeypatch, tmp_path):
    """A real server: the device flood stores every message once and delivers it to both
    devices; idle device sockets open, are held and their memory is measured."""
    monkeypatch.setattr(run, "TARGETS", [run.Target("this tree", "head", device=run.has_device_socket(run.REPO_DIR))])
    assert run.TARGETS[0].device
    spec = {**device_spec(4, 30), "round": 0}
    result = run._flood_server(tmp_path, spec, "device_4", run.TARGETS[0])
    assert result["passed"] and result["stored_equals_sent"], result
    assert result["stored"] == result["sent"] == 240 and result["own_frames"] == 240
    idle = run.idle_devices(30, tmp_path)
    assert (idle["socket_kind"], idle["sockets"], idle["failed"], idle["closed_by_server"]) == ("device", 30, 0, 0)
    assert idle["rss_open_mib"] >= idle["rss_before_mib"] > 0
    assert json.loads(json.dumps(idle)) == idle
