"""Fault injection of the load tester without servers: fault specs, the command driver
(real shell commands), the Docker driver against a fake Docker SDK client, the schedule,
the per-fault report and the tracker's catch-up and store reconciliation."""

import pytest

from loadtests import config, faults
from loadtests.faults import CommandDriver, DockerDriver, Fault, FaultError, FaultSchedule, Window
from loadtests.tracker import Fate, Tracker, make_content


def test_fault_specs_parse_and_refuse_nonsense():
    """kind@at[:seconds]; stop_redis defaults to 5 s down; bad specs are refused."""
    assert faults.parse_fault("restart_backend@10") == Fault("restart_backend", 10.0, 0.0)
    assert faults.parse_fault("stop_redis@8:3.5") == Fault("stop_redis", 8.0, 3.5)
    assert faults.parse_fault("stop_redis@8").seconds == faults.DEFAULT_DOWN_SECONDS
    assert faults.parse_fault("stop_redis@8:3").name == "stop_redis@8:3"
    for bad in ("reboot@3", "restart_backend", "restart_backend@x", "restart_postgres@3:2", "stop_redis@-1"):
        with pytest.raises(ValueError):
            faults.parse_fault(bad)
    assert [f.at for f in faults.parse_faults(["stop_redis@9:1", "restart_backend@2"])] == [2.0, 9.0]


def test_scenario_faults_table_and_overrides():
    """The faults table merges like thresholds; --set faults.inject=a,b gives a list; faults turn reconnects on."""
    scenario = config.load("faults", overrides={"faults.inject": "stop_redis@4:3, restart_backend@9",
                                                "faults.driver": "command"})
    assert scenario.faults["inject"] == ["stop_redis@4:3", "restart_backend@9"]
    assert scenario.faults["driver"] == "command" and scenario.reconnects
    assert not config.load("smoke").reconnects
    assert config.load("smoke", overrides={"faults.reconnect": "true"}).reconnects
    with pytest.raises(KeyError):
        config.load("smoke", overrides={"faults.nonsense": "1"})


def test_command_driver_runs_commands_and_reports_failures(tmp_path):
    """Each action runs its shell command; a non-zero exit or a hang is a FaultError; missing commands are refused up front."""
    log = tmp_path / "log"
    driver = CommandDriver({"stop_redis": f"echo stop >> {log}", "start_redis": f"echo start >> {log}",
                            "restart_backend": "echo broken >&2; exit 3", "restart_postgres": "sleep 5"}, timeout=0.5)
    fault = Fault("stop_redis", 0, 0.1)
    driver.run("stop_redis", fault)
    driver.run("start_redis", fault)
    assert log.read_text() == "stop\nstart\n"
    with pytest.raises(FaultError, match="exited 3: broken"):
        driver.run("restart_backend", Fault("restart_backend", 0))
    with pytest.raises(FaultError, match="did not finish within 0.5 s"):
        driver.run("restart_postgres", Fault("restart_postgres", 0))
    with pytest.raises(FaultError, match="faults.start_redis"):
        CommandDriver({"stop_redis": "true", "start_redis": ""}, 1).check([fault])


class FakeContainer:
    def __init__(self, name, project, service, health=None, unhealthy_reloads=0):
        self.name = name
        self.labels = {"com.docker.compose.project": project, "com.docker.compose.service": service}
        self.status = "running"
        self.health = health
        self.unhealthy_reloads = unhealthy_reloads
        self.calls = []
        self.attrs = {}
        self.reload()

    def restart(self, timeout):
        self.calls.append(("restart", timeout))

    def stop(self, timeout):
        self.calls.append(("stop", timeout))
        self.status = "exited"

    def start(self):
        self.calls.append(("start",))
        self.status = "running"

    def reload(self):
        state = {"Status": self.status}
        if self.health:
            state["Health"] = {"Status": "starting" if self.unhealthy_reloads > 0 else self.health}
            self.unhealthy_reloads -= 1
        self.attrs = {"State": state}


class FakeClient:
    """The part of docker.DockerClient the driver uses: containers.list(all=, filters=)."""

    def __init__(self, containers):
        self.all = containers
        self.containers = self

    def list(self, filters, **options):
        wanted = dict(label.split("=", 1) for label in filters["label"])
        return [c for c in self.all if (options.get("all") or c.status == "running")
                and wanted.items() <= c.labels.items()]


def test_docker_driver_restarts_backends_in_turn_and_waits_for_health():
    """restart_backend: one replica of `backend` of this project per fault, in turn; postgres is restarted and awaited healthy."""
    backends = [FakeContainer(f"habitto-chat-backend-{n}", "habitto-chat", "backend") for n in (2, 1, 3)]
    other = FakeContainer("other-backend-1", "other", "backend")
    postgres = FakeContainer("habitto-chat-postgres-1", "habitto-chat", "postgres", "healthy", unhealthy_reloads=2)
    driver = DockerDriver(FakeClient([*backends, other, postgres]), "habitto-chat", timeout=30)
    driver.check([Fault("restart_backend", 1), Fault("restart_postgres", 2)])
    for _ in range(4):
        driver.run("restart_backend", Fault("restart_backend", 1))
    by_name = {c.name: len(c.calls) for c in backends}
    assert by_name == {"habitto-chat-backend-1": 2, "habitto-chat-backend-2": 1, "habitto-chat-backend-3": 1}
    assert other.calls == [] and backends[1].calls[0] == ("restart", 10)
    driver.run("restart_postgres", Fault("restart_postgres", 2))
    assert postgres.calls == [("restart", 10)] and postgres.unhealthy_reloads < 0


def test_docker_driver_uses_the_default_stacks_backend_services_and_stops_redis():
    """Without a `backend` service it restarts backend-ws/backend-http; stop_redis stops, start_redis starts and waits."""
    ws = FakeContainer("habitto-chat-backend-ws-1", "habitto-chat", "backend-ws")
    redis = FakeContainer("habitto-chat-redis-1", "habitto-chat", "redis", "healthy", unhealthy_reloads=1)
    driver = DockerDriver(FakeClient([ws, redis]), "habitto-chat", timeout=30)
    driver.run("restart_backend", Fault("restart_backend", 1))
    assert ws.calls == [("restart", 10)]
    driver.run("stop_redis", Fault("stop_redis", 1, 2))
    assert redis.status == "exited"
    driver.run("start_redis", Fault("stop_redis", 1, 2))
    assert redis.calls == [("stop", 10), ("start",)] and redis.status == "running"


def test_docker_driver_refuses_a_missing_service_and_a_container_that_never_gets_healthy():
    """No container of the project: FaultError naming the services; unhealthy past the timeout: FaultError."""
    driver = DockerDriver(FakeClient([]), "habitto-chat", timeout=1)
    with pytest.raises(FaultError, match="no backend/backend-ws/backend-http container"):
        driver.check([Fault("restart_backend", 1)])
    sick = FakeContainer("habitto-chat-postgres-1", "habitto-chat", "postgres", "healthy", unhealthy_reloads=10**6)
    with pytest.raises(FaultError, match="not healthy within 1 s"):
        DockerDriver(FakeClient([sick]), "habitto-chat", timeout=1).run("restart_postgres", Fault("restart_postgres", 0))


class RecordingDriver:
    def __init__(self, fail=None):
        self.calls = []
        self.fail = fail

    def run(self, action, fault):
        import time

        self.calls.append((action, time.monotonic()))
        if action == self.fail:
            raise FaultError("boom")


def test_schedule_keeps_redis_down_for_its_seconds_and_records_errors():
    """stop_redis: stop, then start `seconds` later, the window spanning both; a failing driver is recorded, not raised."""
    settings = {"timeout": 5}
    driver = RecordingDriver()
    schedule = FaultSchedule([Fault("stop_redis", 0, 0.3)], driver, settings)
    window = schedule.windows[0]
    schedule.inject(window)
    (stop, stopped_at), (start, started_at) = driver.calls
    assert (stop, start) == ("stop_redis", "start_redis")
    assert window.start <= stopped_at and started_at - window.start >= 0.3  # down for at least its seconds
    assert window.end >= started_at and window.error == ""
    failing = FaultSchedule([Fault("restart_backend", 0)], RecordingDriver(fail="restart_backend"), settings)
    failing.inject(failing.windows[0])
    assert failing.windows[0].error == "FaultError: boom"


def fate(intended, outcome="complete", latency=0.05, acked=True, stored=True):
    f = Fate(intended, "c")
    f.outcome = outcome
    f.acked_at = intended + 0.01 if acked else None
    f.complete_at = intended + latency if outcome == "complete" else None
    f.stored = stored
    return f


def test_report_counts_losses_failures_reconnects_and_recovery_per_fault():
    """Per fault: acknowledged losses, unacknowledged failures, reconnects, latency during/after,
    and recovery = when the last disturbed message completed, from the fault's start."""
    journal = {
        1: fate(1.0), 2: fate(9.0),                                 # before: fine
        3: fate(10.5, "send_failed", acked=False, stored=None),     # during the first fault
        4: fate(11.0, "unacknowledged", acked=False, stored=False),
        5: fate(11.5, latency=3.0),                                 # completes at 14.5: last disturbed
        6: fate(12.5), 7: fate(13.0),
        8: fate(20.5, "lost"),                                      # second fault: an acked loss
        9: fate(21.0, stored=False),                                # echoed and delivered, then not stored
        10: fate(22.0),
    }
    windows = [Window(Fault("stop_redis", 10, 2), 10.0, 12.0), Window(Fault("restart_backend", 20), 20.0, 20.4)]
    first, second = faults.analyse(windows, journal, [(10.9, "room"), (20.6, "inbox"), (20.7, "room")],
                                   whole_ms=1000, after_s=10, run_end=30.0)
    assert first["messages"] == 7 and first["acknowledged_lost"] == 0
    assert first["unacknowledged_failed"] == 2 and first["send_failed"] == 1
    assert first["reconnects"] == 1 and first["disturbed"] == 3
    assert first["recovery_s"] == pytest.approx(4.5)
    assert first["latency_during_ms"]["count"] == 1 and first["latency_during_ms"]["max"] == 3000.0
    assert first["latency_after_ms"]["count"] == 2
    assert second["acknowledged_lost"] == 2 and second["reconnects"] == 2
    assert second["recovery_s"] == pytest.approx(1.05)


def test_report_says_not_recovered_when_delivery_never_became_whole():
    """Disturbed up to the last message: recovery is None, which the gate fails."""
    journal = {1: fate(1.0), 2: fate(5.0, "lost"), 3: fate(6.0, latency=5.0)}
    (result,) = faults.analyse([Window(Fault("restart_postgres", 4), 4.0, 4.5)], journal, [], 1000, 10, 9.0)
    assert result["recovery_s"] is None and result["acknowledged_lost"] == 1
    (calm,) = faults.analyse([Window(Fault("restart_postgres", 4), 4.0, 4.5)], {1: fate(5.0)}, [], 1000, 10, 9.0)
    assert calm["recovery_s"] == 0 and calm["disturbed"] == 0


def test_add_to_summary_gates_acked_loss_and_failed_injection():
    """The checks: per fault no acknowledged loss, injected, recovered; times become epoch seconds and offsets."""
    class Journal:
        journal = {1: fate(100.5, "lost")}

    schedule = FaultSchedule([Fault("restart_backend", 0.5)], None, {"whole_ms": 1000, "after": 10})
    schedule.origin = 100.0
    schedule.windows[0].start, schedule.windows[0].end = 100.5, 101.0
    schedule.windows[0].error = "FaultError: boom"
    summary = {}
    checks = {name: ok for name, _, _, ok in faults.add_to_summary(summary, schedule, Journal, [])}
    assert checks == {"restart_backend@0.5 acked_lost": False, "restart_backend@0.5 injected": False,
                      "restart_backend@0.5 recovered": False}
    (result,) = summary["faults"]
    assert result["start_offset_s"] == 0.5 and result["end"] - result["start"] == pytest.approx(0.5, abs=0.01)
    assert "restart_backend@0.5" in "\n".join(faults.table(summary))
    assert faults.add_to_summary({}, None, Journal, []) == []


def make_journal_tracker():
    arrivals, anomalies = [], []
    tracker = Tracker("run", lambda p, ms, done: arrivals.append(p), lambda kind, p: anomalies.append((kind, p)),
                      journal=True)
    return tracker, arrivals, anomalies


def test_catch_up_after_a_reconnect_fills_gaps_without_reorders_or_duplicates():
    """Messages fetched after a reconnect fill the socket's gap; their live frames, if they still come, are ignored."""
    tracker, arrivals, anomalies = make_journal_tracker()
    content = [make_content("run", 1, seq, 10) for seq in range(4)]
    for seq in range(4):
        tracker.expect(1, seq, 0.0, "c")
    tracker.arrived("b-room", "partner_room", content[0], 0.1)
    tracker.arrived("b-room", "partner_room", content[3], 0.5)  # live again after the reconnect
    for seq in (1, 2, 3):
        tracker.repaired("b-room", "partner_room", content[seq], 0.6)
    tracker.arrived("b-room", "partner_room", content[2], 0.7)  # the live frame after the catch-up
    assert anomalies == [] and arrivals.count("partner_room") == 4
    tracker.repaired("b-room", "partner_room", content[0], 0.8)
    assert arrivals.count("partner_room") == 4 and anomalies == []


def test_reconcile_separates_failed_sends_from_acknowledged_losses():
    """Against the stored thread: never echoed and not stored = unacknowledged (not lost);
    echoed but not stored = an acknowledged loss, even when every path had it."""
    tracker, _, _ = make_journal_tracker()
    for seq in range(4):
        tracker.expect(1, seq, 0.0, "c")
    tracker.forget(1, 3)  # never left
    for path in ("sender_echo", "partner_room", "sender_inbox", "partner_inbox"):
        tracker.arrived(f"x-{path}", path, make_content("run", 1, 0, 10), 0.1)
    tracker.arrived("a-room", "sender_echo", make_content("run", 1, 1, 10), 0.1)
    unacked, not_stored = tracker.reconcile("c", stored={(1, 1)})
    assert (unacked, not_stored) == (1, 1)
    lost, messages = tracker.give_up("c")
    assert messages == 1 and lost["partner_room"] == 1 and lost["sender_echo"] == 0
    fates = tracker.journal
    assert [fates[(1, s)].outcome for s in range(4)] == ["complete", "lost", "unacknowledged", "send_failed"]
    assert [fates[(1, s)].acknowledged_lost for s in range(4)] == [True, True, False, False]


def test_unacknowledged_messages_are_resent_and_their_late_arrival_is_not_a_reorder():
    """Protocol 2 after a reconnect: the sender's messages without an echo, in order; when
    they arrive after later ones, that is not counted out of order."""
    tracker, arrivals, anomalies = make_journal_tracker()
    for seq in range(3):
        tracker.expect(1, seq, 0.0, "c")
    tracker.expect(2, 0, 0.0, "c")
    tracker.arrived("a-room", "sender_echo", make_content("run", 1, 0, 10), 0.1)
    assert tracker.unacknowledged(1, "c") == [1, 2] and tracker.unacknowledged(1, "other") == []
    tracker.arrived("b-room", "partner_room", make_content("run", 1, 2, 10), 0.2)
    tracker.arrived("b-room", "partner_room", make_content("run", 1, 1, 10), 0.3)
    assert anomalies == []
    tracker.arrived("b-room", "partner_room", make_content("run", 1, 1, 10), 0.4)
    assert anomalies == [("duplicate", "partner_room")]
