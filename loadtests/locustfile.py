"""Locust entry point of the chat load tester (docs/loadtest.md).

    locust -f loadtests/locustfile.py --host http://127.0.0.1:8001 --ws-host ws://127.0.0.1:8000 \
        --scenario default --accounts results/accounts.json --headless

`python -m loadtests.run` (what `make loadtest` calls) provisions the accounts, starts a
server when no target is given, picks the run time and the reports, and runs this file
in one process or as a master with workers.
"""

import json
import logging
import os
import time
from pathlib import Path

import gevent

from locust import events
from locust.runners import MasterRunner, WorkerRunner

from habitto_client import ws_url_for

from loadtests import accounts as account_store
from loadtests import config, faults
from loadtests.app_users import AppConversationUser  # noqa: F401  (the app scenario's user class)
from loadtests.device_users import DeviceConversationUser  # noqa: F401  (the v2 scenario's user class)
from loadtests.gate import gate
from loadtests.monitor import RunMonitor
from loadtests.state import DONE_MESSAGE, SETUP_MESSAGE, STATE
from loadtests.users import ConversationUser  # noqa: F401  (the default user class)

logger = logging.getLogger("loadtests")


@events.init_command_line_parser.add_listener
def add_arguments(parser):
    group = parser.add_argument_group("Habitto chat load test")
    group.add_argument("--ws-host", default="", help="WebSocket base URL (default: --host with ws://)")
    group.add_argument("--scenario", default="default", help="a scenario of loadtests/scenarios.toml")
    group.add_argument("--scenario-set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a scenario key, e.g. rate_per_user=5 or thresholds.max_lost=0")
    group.add_argument("--accounts", default="", help="accounts JSON file (default: register via the API)")
    group.add_argument("--sync-start", type=float, default=0.0,
                       help="seconds after the test start at which every conversation starts sending (0: at once)")
    group.add_argument("--results-dir", default="results", help="where the gate writes its summary")
    group.add_argument("--metrics-url", action="append", default=None, metavar="URL",
                       help="a backend process whose /metrics is scraped during the run "
                            "(default: --host; repeat for several processes; 'none' to skip)")


def _ws_base(options):
    return options.ws_host or ws_url_for(options.host or "")


def _on_path(path, ms, complete_ms, _fire=None):
    fire = events.request.fire
    fire(request_type="WS", name=f"fanout {path}", response_time=ms, response_length=0,
         exception=None, context={})
    if complete_ms is not None:
        fire(request_type="WS", name="fanout complete", response_time=complete_ms,
             response_length=0, exception=None, context={})


class Anomaly(Exception):
    pass


def _on_anomaly(kind, path):
    events.request.fire(request_type="WS", name=f"{kind} {path}", response_time=0, response_length=0,
                        exception=Anomaly(f"{kind.replace('_', ' ')} delivery"), context={})


def _scenario(options):
    return config.load(options.scenario, overrides=config.parse_overrides(options.scenario_set))


@events.init.add_listener
def on_init(environment, **_):
    options = environment.parsed_options
    if options is None:
        return
    scenario = _scenario(options)
    STATE.configure(scenario, options.host or "", _ws_base(options), _on_path, _on_anomaly)
    # Run only the scenario's user class (Locust would run every class of this file).
    chosen = [cls for cls in environment.user_classes if cls.__name__ == scenario.user_class]
    if not chosen:
        raise ValueError(f"scenario {scenario.name}: no user class {scenario.user_class!r} in the locustfile")
    environment.user_classes[:] = chosen
    runner = environment.runner
    if not isinstance(runner, MasterRunner):
        runner.register_message(SETUP_MESSAGE, lambda environment, msg, **kw: STATE.accept_setup(msg.data))
    if not isinstance(runner, WorkerRunner):
        finished = {"conversations": 0}

        def on_done(environment, msg, **kw):
            finished["conversations"] += msg.data["conversations"]
            target = getattr(environment.parsed_options, "num_users", None)
            if options.headless and target and finished["conversations"] >= target:
                logger.info("all %d conversations finished; stopping the run", target)
                # Let the workers' last statistics report (every 3 s) arrive, then quit.
                delay = 0.5 if not isinstance(environment.runner, MasterRunner) else 3.5
                gevent.spawn_later(delay, environment.runner.quit)

        runner.register_message(DONE_MESSAGE, on_done)


def _busy_generator():
    """LOADTEST_TEST_BUSY_GENERATOR=1 (tests only): this process never idles, like a generator
    too slow for its scenario, so the run must come out INVALID (docs/loadtest.md)."""
    while True:
        until = time.perf_counter() + 0.005
        while time.perf_counter() < until:
            pass
        gevent.sleep(0)


@events.test_start.add_listener
def on_test_start(environment, **_):
    runner = environment.runner
    if os.environ.get("LOADTEST_TEST_BUSY_GENERATOR") == "1":
        gevent.spawn(_busy_generator)
    if isinstance(runner, WorkerRunner):
        return
    options = environment.parsed_options
    if options.accounts:
        accounts = account_store.load(options.accounts)
    else:
        needed = STATE.scenario.group * (options.num_users or STATE.scenario.users)
        logger.info("registering %d accounts through the API", needed)
        accounts = account_store.provision_api(options.host, needed, account_store.new_prefix(),
                                               account_store.new_password())
    start_at = time.time() + options.sync_start if options.sync_start else None
    urls = [url for url in (options.metrics_url or [options.host]) if url and url != "none"]
    STATE.monitor = RunMonitor(runner, urls)
    STATE.monitor.start()
    _start_faults(environment, options.sync_start)
    if isinstance(runner, MasterRunner):
        workers = sorted(client.id for client in runner.clients.all)
        for worker, part in zip(workers, account_store.slices(accounts, len(workers))):
            runner.send_message(SETUP_MESSAGE, {"accounts": part, "run_id": STATE.run_id,
                                                "start_at": start_at}, client_id=worker)
    else:
        runner.send_message(SETUP_MESSAGE, {"accounts": accounts, "run_id": STATE.run_id,
                                            "start_at": start_at})


def _start_faults(environment, sync_start):
    """The scenario's faults, timed from the send start, in this (the gating) process."""
    if not STATE.scenario.faults.get("inject"):
        return
    try:
        if isinstance(environment.runner, MasterRunner):
            raise faults.FaultError("faults need one Locust process (workers = 0): the users' journal is judged here")
        STATE.faults = faults.schedule_from(STATE.scenario)
    except (faults.FaultError, ValueError) as exc:
        logger.error("faults: %s", exc)
        environment.process_exit_code = 2
        environment.runner.quit()
        return
    STATE.faults.start(time.monotonic() + sync_start)


@events.quitting.add_listener
def on_quitting(environment, **_):
    if environment.parsed_options is None:
        return
    if STATE.call_logs:
        path = Path(environment.parsed_options.results_dir) / f"{STATE.scenario.name}_calls.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as handle:
            handle.write("".join(json.dumps(log) + "\n" for log in STATE.call_logs))
    if isinstance(environment.runner, WorkerRunner):
        return
    if STATE.faults is not None:
        STATE.faults.stop()
    gate(environment, STATE.scenario, environment.parsed_options.results_dir, STATE.monitor)
