"""Faults during a load-test run, without Docker: two real server processes on one
PostgreSQL database and a redis-server of the test's own, every conversation spanning both
processes (its accounts on different WebSocket bases), and the command driver carrying the
faults out with shell commands, as against any deployment. A Redis outage and a backend
restart lose nothing acknowledged and report a recovery time; a fault that does lose
acknowledged messages (a PostgreSQL "failover" to a copy without the latest commits:
the messages table emptied) fails the run."""

import json
import shlex
import shutil
import subprocess
import sys
import threading

import pytest

from tests.support.chat import two_servers
from tests.support.live import REPO_DIR
from tests.support.services import require

# channels_redis logs the lost connection with its traceback when Redis is stopped.
pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.slow,
              pytest.mark.server_tracebacks_expected("redis.exceptions.ConnectionError")]


def run_with_faults(results, first, second, faults, commands, *extra, timeout=240):
    """python -m loadtests.run, scenario `faults`, against the two processes with the command
    driver; returns (exit code, summary, output)."""
    args = [sys.executable, "-m", "loadtests.run", "--scenario", "faults", "--results", str(results),
            "--target", first.http_url(), "--target-ws", f"{first.ws_url()},{second.ws_url()}",
            "--set", "faults.driver=command", "--set", "faults.timeout=30", *extra]
    for fault in faults:
        args += ["--fault", fault]
    for action, command in commands.items():
        args += ["--set", f"faults.{action}={command}"]
    proc = subprocess.run(args, cwd=REPO_DIR, capture_output=True, text=True, timeout=timeout)
    output = proc.stdout + proc.stderr
    path = results / "faults_summary.json"
    return proc.returncode, json.loads(path.read_text()) if path.exists() else None, output


def assert_survived(code, summary, output, kind):
    assert code == 0, output[-6000:]
    assert "RESULT: PASS" in output
    (fault,) = summary["faults"]
    assert fault["kind"] == kind and fault["error"] == ""
    assert fault["acknowledged_lost"] == 0
    assert fault["recovery_s"] is not None and 0 <= fault["recovery_s"] < 30
    assert fault["end"] >= fault["start"] and fault["start_offset_s"] >= 4
    assert summary["lost"] == summary["duplicated"] == summary["out_of_order"] == 0
    assert summary["fanout"]["complete"]["count"] > 0
    return fault


def test_redis_stopped_for_a_few_seconds_loses_nothing_acknowledged(tmp_path, own_redis, postgres_database):
    """stop_redis for 4 s through shell commands (redis-cli shutdown, redis-server --daemonize):
    cross-process delivery waits and is repaired; zero acknowledged loss, a recovery time."""
    require("redis-cli", shutil.which("redis-cli"), "redis-cli is not on PATH")
    pidfile = tmp_path / "redis-again.pid"
    start = shlex.join([*own_redis.command(), "--daemonize", "yes", "--pidfile", str(pidfile),
                        "--logfile", str(tmp_path / "redis-again.log"), "--dir", str(tmp_path)])
    commands = {"stop_redis": f"redis-cli -p {own_redis.port} shutdown nosave", "start_redis": start}
    try:
        with two_servers(tmp_path, postgres_database, own_redis.url, "fltr") as (env, first, second, _):
            code, summary, output = run_with_faults(tmp_path / "results", first, second, ["stop_redis@4:4"],
                                                    commands)
    finally:
        subprocess.run(["redis-cli", "-p", str(own_redis.port), "shutdown", "nosave"], capture_output=True,
                       timeout=10)
    fault = assert_survived(code, summary, output, "stop_redis")
    assert 4 <= fault["end"] - fault["start"] < 10
    assert fault["disturbed"] > 0  # deliveries across the processes did wait for Redis
    assert "stop_redis@4:4" in output and "acked lost" in output


class Supervisor:
    """Restarts a server process whenever it exits (as systemd's Restart=always would) and
    keeps its pid in a file, so a fault command can restart it with `kill`."""

    def __init__(self, server, pidfile):
        self.server, self.pidfile = server, pidfile
        self.stopping = threading.Event()
        self.restarts = 0
        self.pidfile.write_text(str(server.process.pid))
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self):
        while not self.stopping.wait(0.2):
            if self.server.process.poll() is not None and not self.stopping.is_set():
                self.server.stop()
                self.server.start()
                self.restarts += 1
                self.pidfile.write_text(str(self.server.process.pid))

    def stop(self):
        self.stopping.set()
        self.thread.join(90)


@pytest.mark.parametrize("protocol", [1, 2])
def test_restarting_one_server_process_loses_nothing_acknowledged(tmp_path, own_redis, postgres_database, protocol):
    """restart_backend as `kill -TERM <pid>` of the second process (restarted by its supervisor):
    its sockets drop, the users reconnect with backoff and catch up; zero acknowledged loss.
    Legacy users cannot resend (sends meanwhile fail, reported); protocol-2 users resend
    with the same client_id, so nothing fails unacknowledged and nothing is duplicated."""
    with two_servers(tmp_path, postgres_database, own_redis.url, f"fltb{protocol}") as (env, first, second, _):
        supervisor = Supervisor(second, tmp_path / "second.pid")
        try:
            code, summary, output = run_with_faults(
                tmp_path / "results", first, second, ["restart_backend@4"],
                {"restart_backend": f"kill -TERM $(cat {tmp_path / 'second.pid'})"}, "--set", f"protocol={protocol}")
        finally:
            supervisor.stop()
    fault = assert_survived(code, summary, output, "restart_backend")
    assert supervisor.restarts == 1
    assert fault["reconnects"] >= 2  # every socket on the second process came back
    assert fault["recovery_s"] > 0
    if protocol == 2:
        assert fault["unacknowledged_failed"] == 0
        assert summary["fanout"]["complete"]["count"] == fault["messages"]
    else:
        assert fault["unacknowledged_failed"] > 0  # sent while the socket was down: failed, not hidden


def test_a_fault_that_loses_acknowledged_messages_fails_the_run(tmp_path, own_redis, postgres_database):
    """restart_postgres as a "failover" that loses committed rows (the messages table
    emptied at 4 s): every message acknowledged before is missing from the store, the report
    counts them as acknowledged losses and the gate fails (exit 1)."""
    require("psql", shutil.which("psql"), "psql is not on PATH")
    lose = f"psql {shlex.quote(postgres_database)} -q -c 'DELETE FROM habitto_chat_message'"
    with two_servers(tmp_path, postgres_database, own_redis.url, "fltl") as (env, first, second, _):
        code, summary, output = run_with_faults(tmp_path / "results", first, second, ["restart_postgres@4"],
                                                {"restart_postgres": lose})
    assert code == 1, output[-6000:]
    assert "RESULT: FAIL" in output
    (fault,) = summary["faults"]
    assert fault["error"] == "" and fault["acknowledged_lost"] > 0
    failed = {check["name"] for check in summary["thresholds"] if not check["ok"]}
    assert failed == {"restart_postgres@4 acked_lost"}
