"""`make loadtest`: the headless release gate.

    python -m loadtests.run [--scenario default] [--target http://host:8001 --target-ws ws://host:8000]
                            [--workers N] [--set key=value ...] [--server-env NAME=VALUE ...]

Without --target it starts a throwaway server itself (python -m habitto_server.serve, DEBUG=1,
temporary STATE_DIR, migrated) on free loopback ports and provisions the accounts with
`manage.py create_loadtest_users`; with --target it registers them through the API
(never a shell on the server) and clears the run's conversations afterwards.
Locust runs headless in one process, or as one master and N workers (--workers or the
scenario's `workers`). Reports: <results>/<scenario>_stats.csv ..., <scenario>.html,
<scenario>_summary.json. Exit code: 0 pass, 1 a threshold exceeded, 2 the target does not
answer or the run overran its time budget.

Compose roles (loadtests/compose.yaml): --role master | --role worker.
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from habitto_client import ChatError, ChatHTTP, ws_url_for
from habitto_server.processes import LocalServer, free_port

from . import accounts as account_store
from . import config, faults

REPO_DIR = Path(__file__).resolve().parents[1]
LOCUSTFILE = Path(__file__).with_name("locustfile.py")


def build_parser():
    parser = argparse.ArgumentParser(description="Headless Locust release gate for the chat backend")
    parser.add_argument("--scenario", default=os.environ.get("LOADTEST_SCENARIO", "default"))
    parser.add_argument("--target", default=os.environ.get("LOADTEST_HTTP", ""),
                        help="HTTP base URL of the server under test (default: start one)")
    parser.add_argument("--target-ws", default=os.environ.get("LOADTEST_WS", ""),
                        help="WebSocket base URL (default: the --target with ws://)")
    parser.add_argument("--workers", type=int, default=None, help="Locust workers (0: one process)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a scenario key (users=4, thresholds.p99_complete_ms=80)")
    parser.add_argument("--fault", action="append", default=[], metavar="KIND@SECONDS[:DOWN]",
                        help="inject a fault during the run: restart_backend@10, stop_redis@8:5, "
                             "restart_postgres@12 (replaces the scenario's faults.inject)")
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for the server this tool starts")
    parser.add_argument("--results", default=os.environ.get("LOADTEST_RESULTS", str(REPO_DIR / "results")))
    parser.add_argument("--accounts", default="", help="use this accounts file instead of provisioning")
    parser.add_argument("--keep", action="store_true",
                        help="keep the server state / the run's conversations (no cleanup)")
    parser.add_argument("--role", choices=["run", "master", "worker"], default="run")
    parser.add_argument("--expect-workers", type=int, default=2)
    parser.add_argument("--master-host", default=os.environ.get("LOADTEST_MASTER_HOST", "127.0.0.1"))
    parser.add_argument("--master-port", type=int, default=int(os.environ.get("LOADTEST_MASTER_PORT", "5557")))
    parser.add_argument("--loglevel", default=os.environ.get("LOADTEST_LOGLEVEL", "WARNING"))
    return parser


def locust_env():
    """Locust runs from the repository root (cwd), where `loadtests` imports from."""
    return dict(os.environ, PYTHONUNBUFFERED="1")


def common_args(args, scenario, http_base, ws_base):
    extra = [f"--scenario-set={item}" for item in args.set]
    return ["-f", str(LOCUSTFILE), "--host", http_base, "--ws-host", ws_base,
            "--scenario", scenario.name, *extra, "--loglevel", args.loglevel]


def master_args(args, scenario, accounts_file):
    results = Path(args.results)
    stem = str(results / scenario.name)
    return ["--headless", "-u", str(scenario.users), "-r", str(scenario.spawn_rate),
            "--run-time", f"{scenario.run_time}s", "--stop-timeout", "0", "--only-summary",
            "--accounts", str(accounts_file), "--sync-start", str(scenario.sync_start),
            "--results-dir", str(results), "--csv", stem, "--html", f"{stem}.html"]


def run_locust(args, scenario, http_base, ws_base, accounts_file, workers):
    """Run Locust (one process, or master + workers); returns the master's exit code."""
    base = [sys.executable, "-m", "locust", *common_args(args, scenario, http_base, ws_base)]
    env = locust_env()
    budget = scenario.run_time + 120
    if not workers:
        return _wait([subprocess.Popen(base + master_args(args, scenario, accounts_file), env=env, cwd=REPO_DIR)],
                     budget)[0]
    port = free_port()
    master = subprocess.Popen(
        base + master_args(args, scenario, accounts_file)
        + ["--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
           "--expect-workers", str(workers), "--expect-workers-max-wait", "60"],
        env=env, cwd=REPO_DIR,
    )
    procs = [master] + [
        subprocess.Popen(base + ["--worker", "--master-host", "127.0.0.1", "--master-port", str(port)],
                         env=env, cwd=REPO_DIR)
        for _ in range(workers)
    ]
    codes = _wait(procs, budget)
    if any(code not in (0, None) for code in codes[1:]) and codes[0] == 0:
        print(f"loadtest: a worker exited with {codes[1:]}", file=sys.stderr)
        return 1
    return codes[0]


def _wait(procs, budget):
    """Wait for every process, at most `budget` seconds in all; kill what is left."""
    deadline = time.monotonic() + budget
    codes = []
    for proc in procs:
        try:
            codes.append(proc.wait(max(1, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            print(f"loadtest: process {proc.pid} still running after {budget} s, killing it", file=sys.stderr)
            proc.kill()
            proc.wait(10)
            codes.append(2)
    return codes


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.fault:
        args.set.append("faults.inject=" + ",".join(args.fault))
    scenario = config.load(args.scenario, overrides=config.parse_overrides(args.set))
    workers = scenario.workers if args.workers is None else args.workers
    try:  # a fault that cannot be carried out stops the run before it starts
        faults.schedule_from(scenario)
    except (faults.FaultError, ValueError) as exc:
        print(f"loadtest: {exc}", file=sys.stderr)
        return 2
    if scenario.faults.get("inject") and workers:
        print("loadtest: faults need one Locust process (--workers 0)", file=sys.stderr)
        return 2
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    if args.role == "worker":
        http_base = args.target or "http://127.0.0.1:8001"
        ws_base = args.target_ws or ws_url_for(http_base)
        cmd = [sys.executable, "-m", "locust", *common_args(args, scenario, http_base, ws_base),
               "--worker", "--master-host", args.master_host, "--master-port", str(args.master_port)]
        code = subprocess.run(cmd, env=locust_env(), cwd=REPO_DIR).returncode
        # In Compose, `up --exit-code-from locust-master` stops everything when the first
        # container exits: a worker lingers so the master can finish its summary first.
        time.sleep(float(os.environ.get("LOADTEST_WORKER_LINGER", "0")))
        return code

    server = None
    accounts_needed = 2 * (scenario.users + max(workers, 1))
    try:
        if args.target:
            http_base = args.target.rstrip("/")
            ws_base = (args.target_ws or ws_url_for(http_base)).rstrip("/")
        else:
            env_extra = dict(scenario.server_env)
            env_extra.update(config.parse_overrides(args.server_env))
            server = LocalServer(env_extra, keep=args.keep, log_path=results / f"{scenario.name}_server.log")
            print(f"loadtest: starting a server ({server.state_dir}) with {env_extra or 'default settings'}",
                  flush=True)
            server.migrate()
            server.start()
            http_base, ws_base = server.http_base, server.ws_base
        try:
            ChatHTTP(http_base, timeout=10).healthz()
        except ChatError as exc:
            print(f"loadtest: the target {http_base} does not answer: {exc}", file=sys.stderr)
            return 2
        accounts_file = Path(args.accounts) if args.accounts else results / f"{scenario.name}_accounts.json"
        prefix = account_store.new_prefix()
        if not args.accounts:
            password = account_store.new_password()
            if server:
                account_store.provision_local(accounts_needed, prefix, password, accounts_file, env=server.env)
            else:
                account_store.save(account_store.provision_api(http_base, accounts_needed, prefix, password),
                                   accounts_file)
        print(f"loadtest: scenario {scenario.name}: {scenario.users} conversations, "
              f"{scenario.offered_rate:g} msgs/s offered, {workers or 'no'} workers, "
              f"target {http_base} / {ws_base}", flush=True)
        if args.role == "master":
            cmd = [sys.executable, "-m", "locust", *common_args(args, scenario, http_base, ws_base),
                   *master_args(args, scenario, accounts_file), "--master",
                   "--master-bind-host", args.master_host, "--master-bind-port", str(args.master_port), "--expect-workers", str(args.expect_workers),
                   "--expect-workers-max-wait", "120"]
            code = _wait([subprocess.Popen(cmd, env=locust_env(), cwd=REPO_DIR)], scenario.run_time + 240)[0]
        else:
            code = run_locust(args, scenario, http_base, ws_base, accounts_file, workers)
        if args.target and not args.keep and not args.accounts:
            failures = account_store.clear_conversations(http_base, account_store.load(accounts_file))
            print(f"loadtest: cleared the run's conversations ({failures} failures); "
                  f"accounts {prefix}* remain registered", flush=True)
        return code
    finally:
        if server:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
