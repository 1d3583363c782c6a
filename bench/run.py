"""`make bench`: the backend's performance targets, measured with the load tester.

    python -m bench.run --mode quick            # a few minutes, smaller numbers (default)
    python -m bench.run --mode full             # the figures of docs/benchmarks.md
    python -m bench.run --only latency,queries  # some phases
    python -m bench.run --postgres [ADMIN_URL]  # PostgreSQL (throwaway databases) instead of SQLite
    python -m bench.run --postgres --redis [URL]  # ... and the Redis channel layer: production's set-up
    python -m bench.run --only throughput --against 50beb95 --rounds 3
                                                # the same floods against another commit, alternately
                                                # (--against may be given more than once)

Phases (each on a fresh throwaway server: python -m habitto_server.serve, DEBUG=1, SQLite in a
temporary STATE_DIR, in-memory channel layer, i.e. `make run`):

  generator   the load generator's own capacity, against bench/stub_server.py
  throughput  flood (bench/flood.py: every room socket sends its N messages as fast as the
              server reads them): delivered msgs/s from one server process; every message
              delivered once and in order, and persisted. Each flood runs against
              bench/relay.py (a bare WebSocket relay) too, in every round, and every figure
              is printed also as a ratio to the relay's. The "device (v2)" flood sends the
              same messages over one /ws/v2/ device socket per account instead of room and
              inbox sockets, and is printed also as a ratio to the room + inbox flood
  latency     paced sweep: complete fan-out p50/p95/p99 against the offered rate (PNG plot),
              and at the `device_sweep` rates the same load on /ws/v2/ device sockets (the
              load tester's DeviceConversationUser: ack, sender's and partner's device)
  idle        N idle authenticated inbox sockets: server RSS per socket (with and without
              permessage-deflate), and fan-out latency at 1,000 msgs/s while they are open;
              then N idle /ws/v2/ device sockets on a server of their own: RSS per socket
  queries     M stored messages, one user with P conversations: conversation list and
              thread page times (sequential requests over one keep-alive connection)

The benchmark servers allow 1,000 sends/s per user (CHAT_SEND_RATE) so that the per-user
limit does not cap a flood, and tokens are issued directly (bench/mint_tokens.py)
instead of logging in: a login costs a password hash. Results: <out>/bench.json, the
per-run Locust reports, and fanout_latency.png. Nothing here asserts the targets.

--against COMMIT checks that commit out in a git worktree (results/bench/commits/<sha>)
with a virtualenv of its own (its requirements/base.txt, kept for later runs), and the
throughput and latency phases run the same floods against its server and this tree's,
alternating the order every round: both commits' figures come from the same run, under
the same machine load.
"""

import argparse
import http.client
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from habitto_server.processes import LocalServer, cpu_seconds_of, free_port, manage
from habitto_client import ChatError, ChatHTTP
from loadtests import accounts as account_store

REPO_DIR = Path(__file__).resolve().parents[1]

MODES = {
    "quick": {
        "duration": 8, "gen_full": [1000, 2000], "gen_room": [3000],
        "flood": [("room only", "room", 50, 100), ("room + inbox", "room+inbox", 50, 100),
                  ("device (v2)", "device", 50, 100)],
        "sweep": [250, 1000], "device_sweep": [1000],
        "idle_sockets": 1000, "idle_deflate": [False], "messages": 100_000, "partners": 100,
        "others": 100, "requests": 100,
    },
    "full": {
        "duration": 20, "gen_full": [1000, 2000, 4000, 6000], "gen_room": [3000, 6000, 10000],
        "flood": [("room only", "room", 50, 600), ("room only", "room", 200, 150),
                  ("room + inbox", "room+inbox", 50, 600), ("device (v2)", "device", 50, 600)],
        "sweep": [250, 500, 1000, 1500, 2000, 3000], "device_sweep": [1000, 2000],
        "idle_sockets": 10_000, "idle_deflate": [False, True], "messages": 1_000_000, "partners": 1000,
        "others": 2000, "requests": 300,
    },
}
PHASES = ["generator", "throughput", "latency", "idle", "queries"]
BENCH_ENV = {"CHAT_SEND_RATE": "1000", "CHAT_SEND_BURST": "1000", "ACCESS_TOKEN_MINUTES": "240",
             "LOG_LEVEL": "WARNING", "ACCESS_LOG": "0"}
CONVERSATIONS = 50  # Locust users in every paced or flood run: 100 accounts, 200 sockets
# The relay speaks what the server speaks: its WS_IMPL (the server's default when unset).
SERVER_WS_IMPL = "websockets"
ROUNDS = {"quick": 1, "full": 2}


def log(text):
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", flush=True)


# -- the machine -------------------------------------------------------------------------------

def machine():
    model = ""
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as handle:
        mem_kb = int(handle.readline().split()[1])
    versions = {}
    for name in ("Django", "channels", "uvicorn", "websockets", "uvloop", "locust", "websocket-client"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_DIR, capture_output=True,
                                text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        commit = ""
    return {"commit": commit, "nproc": os.cpu_count(), "cpu_model": model, "memory_gb": round(mem_kb / 1024 / 1024, 1),
            "python": platform.python_version(), "kernel": platform.release(), "versions": versions,
            "nofile_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0]}


def cpu_busy():
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


class Usage:
    """CPU used by the server process and by the whole machine while a block runs."""

    def __init__(self, server):
        self.server = server

    def __enter__(self):
        self.t0, self.s0, self.m0 = time.monotonic(), self.server.cpu_seconds(), cpu_busy()
        return self

    def __exit__(self, *exc):
        wall = time.monotonic() - self.t0
        busy, total = cpu_busy()
        self.result = {
            "wall_s": round(wall, 1),
            "server_cpu": round((self.server.cpu_seconds() - self.s0) / wall, 2),  # cores
            "machine_busy": round((busy - self.m0[0]) / max(1, total - self.m0[1]) * os.cpu_count(), 2),
            "loadavg_1m": os.getloadavg()[0],
        }


# -- helpers ---------------------------------------------------------------------------------------

POSTGRES = {"admin_url": None}  # --postgres: every benchmark server gets a throwaway database
REDIS = {"url": None}  # --redis: every benchmark server uses the Redis channel layer


def _database_env():
    """{"DATABASE_URL": ...} of a new throwaway PostgreSQL database, or {} for SQLite."""
    admin = POSTGRES["admin_url"]
    if not admin:
        return {}
    import uuid
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    name = f"habitto_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin.replace("postgres://", "postgresql://", 1), autocommit=True, connect_timeout=5) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(admin)
    return {"DATABASE_URL": urlunsplit((parts.scheme, parts.netloc, "/" + name, "", ""))}


def _drop_database(server):
    url = server.env.get("DATABASE_URL")
    if not url or not POSTGRES["admin_url"]:
        return
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(POSTGRES["admin_url"].replace("postgres://", "postgresql://", 1), autocommit=True,
                         connect_timeout=5) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class BenchServer(LocalServer):
    """A LocalServer that also drops its throwaway PostgreSQL database when stopped."""

    def stop(self):
        super().stop()
        _drop_database(self)


ROUTING = "stack/habitto_chat/realtime/routing.py"


class Target:
    """A commit whose server the benchmark runs: this tree (python None: this interpreter)
    or, with --against, another commit's worktree and virtualenv. `device`: its server has
    the /ws/v2/ device socket (commits before issue 15 run only the legacy sockets' floods)."""

    def __init__(self, label, commit, python=None, device=True):
        self.label, self.commit, self.python, self.device = label, commit, python, device


def has_device_socket(tree):
    """Whether the server of this worktree routes /ws/v2/."""
    routing = Path(tree) / ROUTING
    return routing.exists() and "ws/v2" in routing.read_text()


TARGETS = []  # this tree first; main() adds --against's commit


def _git(*args, cwd=REPO_DIR):
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True,
                          timeout=120).stdout.strip()


def build_virtualenv(tree):
    """tree/.venv with tree's pinned runtime requirements and tree's stack/ (editable)."""
    python = tree / ".venv" / "bin" / "python"
    subprocess.run([sys.executable, "-m", "venv", str(tree / ".venv")], check=True, timeout=300)
    for args in (["-r", str(tree / "requirements" / "base.txt")], ["--no-deps", "-e", str(tree)]):
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *args], check=True, timeout=1200)


def prepare_commit(commit, root, install=build_virtualenv):
    """A worktree of `commit` under root/<sha> with its own virtualenv (reused when there);
    returns its Target."""
    sha = _git("rev-parse", "--short", f"{commit}^{{commit}}")
    tree = Path(root) / sha
    python = tree / ".venv" / "bin" / "python"
    if not (tree / ".git").exists():
        tree.parent.mkdir(parents=True, exist_ok=True)
        _git("worktree", "add", "--detach", str(tree), sha)
    if not (tree / ".venv" / ".installed").exists():
        log(f"--against {sha}: building its virtualenv in {tree / '.venv'}")
        install(tree)
        (tree / ".venv" / ".installed").touch()
    return Target(f"commit {sha}", sha, str(python), device=has_device_socket(tree))


def _redis_env():
    """REDIS_URL, and a channel prefix of this server's own: pub/sub ignores the database
    number, so servers alive at the same time (--against's, other people's) would
    otherwise receive each other's events."""
    if not REDIS["url"]:
        return {}
    import uuid

    return {"REDIS_URL": REDIS["url"], "REDIS_CHANNEL_PREFIX": f"habitto-bench-{uuid.uuid4().hex[:10]}"}


def new_server(out, name, extra=None, target=None):
    env = {**BENCH_ENV, **_database_env(), **_redis_env(), **(extra or {})}
    return BenchServer(env, log_path=out / f"{name}_server.log", python=target and target.python)


def start_server(out, name, extra=None, target=None):
    server = new_server(out, name, extra, target)
    server.migrate()
    server.start()
    return server


def provision(server, count, out, name):
    """`count` accounts with access tokens (no logins); returns the tokens file."""
    plain = out / f"{name}_accounts.json"
    account_store.provision_local(count, account_store.new_prefix(), account_store.new_password(), plain,
                                  env=server.env, python=server.python)
    tokens = out / f"{name}_tokens.json"
    subprocess.run([sys.executable, "-m", "bench.mint_tokens", "--accounts", str(plain), "--output", str(tokens)],
                   env=server.env, cwd=REPO_DIR, check=True, timeout=600)
    return tokens


def loadtest(http_base, ws_base, accounts_file, out, label, inbox=True, rate=1000, duration=20, users=CONVERSATIONS,
             drain=15, window=0, device=False):
    """One Locust run of the `bench` scenario (device: on /ws/v2/ device sockets, the v2
    scenario's users); returns its summary (plus the exit code)."""
    results = out / label.replace(" ", "_").replace("/", "_")
    per_user = rate / (2 * users)
    cmd = [sys.executable, "-m", "loadtests.run", "--scenario", "bench", "--target", http_base,
           "--target-ws", ws_base, "--accounts", str(accounts_file), "--results", str(results),
           "--set", f"users={users}", "--set", f"rate_per_user={per_user}", "--set", f"duration={duration}",
           "--set", f"inbox={'true' if inbox else 'false'}", "--set", f"drain={drain}",
           "--set", f"spawn_rate={users}", "--set", f"window={window}"]
    if device:
        cmd += ["--set", "user_class=DeviceConversationUser"]
    proc = subprocess.run(cmd, cwd=REPO_DIR, capture_output=True, text=True,
                          timeout=duration + drain + 300)
    (results / "output.txt").parent.mkdir(parents=True, exist_ok=True)
    (results / "output.txt").write_text(proc.stdout + proc.stderr)
    summary_file = results / "bench_summary.json"
    if not summary_file.exists():
        raise RuntimeError(f"{label}: no summary (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")
    summary = json.loads(summary_file.read_text())
    summary["exit_code"] = proc.returncode
    return summary


def brief(summary):
    c = summary["fanout"]["complete"]
    partner = "partner_device" if summary.get("socket_kind") == "device" else "partner_room"
    p = summary["fanout"][partner]
    return {
        "socket_kind": summary.get("socket_kind", "room+inbox"),
        "offered": summary["offered_per_second"], "sent": summary["sent"],
        "delivered_per_s": round(p.get("per_second") or 0, 1),
        "complete_p50": c.get("p50"), "complete_p95": c.get("p95"), "complete_p99": c.get("p99"),
        "complete_max": c.get("max") and round(c["max"], 1),
        f"{partner}_p99": p.get("p99"), "send_lag_p99": summary["send_lag_p99_ms"],
        "lost": summary["lost"], "late": summary.get("late", 0), "duplicated": summary["duplicated"],
        "out_of_order": summary["out_of_order"],
        "errors": summary["other_failures"], "passed": summary["passed"],
    }


def count_messages(server):
    out = manage(server.env, "shell", "-c",
                 "from habitto_chat.models import Message; print(Message.objects.count())", python=server.python)
    return int(out.strip().splitlines()[-1])


def percentiles(samples):
    ordered = sorted(samples)

    def at(q):
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {"n": len(ordered), "p50": round(statistics.median(ordered), 2), "p95": at(0.95),
            "p99": at(0.99), "max": round(ordered[-1], 2)}


# -- phases ---------------------------------------------------------------------------------------------

def phase_generator(cfg, out):
    """Locust against the protocol stub: what one load-generator process can drive."""
    port = free_port()
    stub = subprocess.Popen([sys.executable, "-m", "bench.stub_server", "--port", str(port)], cwd=REPO_DIR,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.5)
        accounts_file = trusted_accounts(out, 2 * CONVERSATIONS + 2)
        runs = []
        for inbox, rates in ((True, cfg["gen_full"]), (False, cfg["gen_room"])):
            for rate in rates:
                label = f"generator {'room+inbox' if inbox else 'room only'} {rate}"
                log(label)
                s = loadtest(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", accounts_file, out, label,
                             inbox=inbox, rate=rate, duration=cfg["duration"], drain=10)
                runs.append({"label": label, "inbox": inbox, **brief(s)})
                log(f"  -> {runs[-1]}")
        return {"runs": runs}
    finally:
        stub.terminate()
        stub.wait(10)


def trusted_accounts(out, count):
    """Accounts for the stub and the relay, which trust the token's user_id claim."""
    accounts = [{"id": i, "username": f"stub{i}", "password": "", "access": _unsigned_jwt(i)}
                for i in range(1, count + 1)]
    accounts_file = out / f"trusted_accounts_{count}.json"
    account_store.save(accounts, accounts_file)
    return accounts_file


class RelayProcess:
    """bench/relay.py on a free port, with the WebSocket implementation the server uses."""

    def __init__(self, out, name):
        self.port = free_port()
        self.log_path = out / f"{name}_relay.log"
        self.process = None

    @property
    def base(self):
        return f"127.0.0.1:{self.port}"

    def __enter__(self):
        ws = os.environ.get("WS_IMPL") or SERVER_WS_IMPL
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen([sys.executable, "-m", "bench.relay", "--port", str(self.port), "--ws", ws],
                                            cwd=REPO_DIR, stdout=log_file, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                ChatHTTP(f"http://{self.base}", timeout=1).healthz()
                return self
            except ChatError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.__exit__()
                    raise RuntimeError(f"the relay did not start: {self.log_path.read_text()[-2000:]}") from None
                time.sleep(0.1)

    def cpu_seconds(self):
        return cpu_seconds_of(self.process.pid)

    def __exit__(self, *exc):
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(15)


def _unsigned_jwt(user_id):
    import base64

    def b64(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none'})}.{b64({'user_id': user_id})}.stub"


FLOOD_FILES = {"room": "room", "room+inbox": "inbox", "device": "device"}  # a flood's file names
LEGACY_OF_DEVICE = "room+inbox"  # the device flood's figures are also given as a ratio to this flood's


def phase_throughput(cfg, out, rounds=1):
    """Every flood against the relay and every target, `rounds` times, the targets' order
    alternating from round to round; then the means and their ratios to the relay's."""
    runs = []
    for label, sockets, users, messages in cfg["flood"]:
        kind = f"{FLOOD_FILES[sockets]}_{users}"
        targets = [t for t in TARGETS if t.device or sockets != "device"]
        for round_number in range(rounds):
            spec = {"label": label, "socket_kind": sockets, "inbox": sockets == "room+inbox", "conversations": users,
                    "messages_per_socket": messages, "round": round_number}
            runs.append(_flood_relay(out, spec, kind))
            for target in targets if round_number % 2 == 0 else targets[::-1]:
                runs.append(_flood_server(out, spec, kind, target))
    summary = throughput_summary(runs)
    for line in summary_lines(summary):
        log(line)
    return {"runs": runs, "summary": summary}


def flood(ws_base, accounts_file, spec, timeout=300):
    """One bench/flood.py run; its JSON result."""
    cmd = [sys.executable, "-m", "bench.flood", "--ws", ws_base, "--accounts", str(accounts_file),
           "--pairs", str(spec["conversations"]), "--messages", str(spec["messages_per_socket"]),
           "--timeout", str(timeout)] + (["--inbox"] if spec["inbox"] else []) \
        + (["--device"] if spec.get("socket_kind") == "device" else [])
    proc = subprocess.run(cmd, cwd=REPO_DIR, capture_output=True, text=True, timeout=timeout + 300)
    lines = proc.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f"flood: no result (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def _describe(spec, target):
    return (f"throughput flood {spec['label']}, {spec['conversations']} conversations, "
            f"{spec['messages_per_socket']} messages per socket: {target} (round {spec['round'] + 1})")


def _flood_relay(out, spec, kind):
    with RelayProcess(out, f"throughput_{kind}_relay_{spec['round']}") as relay:
        log(_describe(spec, "relay"))
        with Usage(relay) as usage:
            result = flood(f"ws://{relay.base}", trusted_accounts(out, 2 * spec["conversations"]), spec)
    run = {**spec, "target": "relay", **result, "stored": None, "stored_equals_sent": None, **usage.result,
           "cpu_us_per_message": cpu_per_message(usage.result, result)}
    log(f"  -> {run}")
    return run


def _flood_server(out, spec, kind, target):
    name = f"throughput_{kind}_{target.commit}_{spec['round']}"
    server = start_server(out, name, target=target)
    try:
        tokens = provision(server, 2 * spec["conversations"], out, name)
        before = count_messages(server)
        log(_describe(spec, target.label))
        with Usage(server) as usage:
            result = flood(server.ws_base, tokens, spec)
        stored = count_messages(server) - before
    finally:
        server.stop()
    run = {**spec, "target": target.label, "commit": target.commit, **result, "stored": stored,
           "stored_equals_sent": stored == result["sent"], **usage.result,
           "cpu_us_per_message": cpu_per_message(usage.result, result)}
    log(f"  -> {run}")
    return run


def cpu_per_message(usage, result):
    """Microseconds of server (or relay) CPU per message sent: what a message costs, less
    sensitive than msgs/s to other processes taking the machine's cores."""
    return round(usage["server_cpu"] * usage["wall_s"] / max(1, result["sent"]) * 1e6, 1)


def throughput_summary(runs):
    """Per flood: each target's mean delivered/s, its ratio to the relay's mean, and (with
    --against) every commit's ratio to the first --against commit's (the base)."""
    summary = []
    floods = {}
    for run in runs:
        floods.setdefault((run["label"], run["conversations"]), []).append(run)
    for (label, users), runs_of_flood in floods.items():
        first = runs_of_flood[0]
        sockets = first.get("socket_kind") or ("room+inbox" if first.get("inbox") else "room")
        means = {}
        for run in runs_of_flood:
            means.setdefault(run["target"], []).append(run["delivered_per_s"])
        means = {target: round(statistics.fmean(values), 1) for target, values in means.items()}
        cpu = {}
        for run in runs_of_flood:
            if run.get("cpu_us_per_message") is not None:
                cpu.setdefault(run["target"], []).append(run["cpu_us_per_message"])
        relay = means.get("relay")
        entry = {"label": label, "socket_kind": sockets, "conversations": users, "mean_delivered_per_s": means,
                 "mean_cpu_us_per_message": {t: round(statistics.fmean(v), 1) for t, v in cpu.items()},
                 "ratio_to_relay": {t: round(v / relay, 3) for t, v in means.items() if relay and t != "relay"},
                 "all_stored": all(r["stored_equals_sent"] for r in runs_of_flood if r["target"] != "relay"),
                 "all_passed": all(r["passed"] for r in runs_of_flood),
                 "lost": sum(r["lost"] for r in runs_of_flood),
                 "duplicated": sum(r["duplicated"] for r in runs_of_flood),
                 "out_of_order": sum(r["out_of_order"] for r in runs_of_flood)}
        base = TARGETS[1].label if len(TARGETS) > 1 else None
        if means.get(base):
            entry["ratio_to_base"] = {t.label: round(means[t.label] / means[base], 3)
                                      for t in TARGETS if t.label != base and t.label in means}
        summary.append(entry)
    for entry in summary:  # the device sockets against the legacy ones, same conversations
        legacy = next((e for e in summary if e["socket_kind"] == LEGACY_OF_DEVICE
                       and e["conversations"] == entry["conversations"]), None)
        if entry["socket_kind"] == "device" and legacy:
            entry["ratio_to_legacy"] = {t: round(v / legacy["mean_delivered_per_s"][t], 3)
                                        for t, v in entry["mean_delivered_per_s"].items()
                                        if legacy["mean_delivered_per_s"].get(t)}
            entry["cpu_ratio_to_legacy"] = {t: round(v / legacy["mean_cpu_us_per_message"][t], 3)
                                            for t, v in entry["mean_cpu_us_per_message"].items()
                                            if legacy["mean_cpu_us_per_message"].get(t)}
    return summary


def summary_lines(summary):
    lines = []
    for entry in summary:
        figures = ", ".join(
            f"{target} {value:,.0f}/s" + (f" ({entry['ratio_to_relay'][target]:.2f}x relay)"
                                          if target in entry["ratio_to_relay"] else "")
            for target, value in entry["mean_delivered_per_s"].items())
        base = ", ".join(f"{target} {ratio:.2f}x" for target, ratio in entry.get("ratio_to_base", {}).items())
        legacy = ", ".join(f"{target} {ratio:.2f}x" for target, ratio in entry.get("ratio_to_legacy", {}).items())
        cpu = ", ".join(f"{target} {us:,.0f} us" + (f" ({entry['cpu_ratio_to_legacy'][target]:.2f}x)"
                                                     if target in entry.get("cpu_ratio_to_legacy", {}) else "")
                        for target, us in entry.get("mean_cpu_us_per_message", {}).items())
        lines.append(f"{entry['label']} {entry['conversations']}: {figures}"
                     + (f"; against the base: {base}" if base else "")
                     + (f"; against {LEGACY_OF_DEVICE}: {legacy}" if legacy else "")
                     + (f"; CPU per message: {cpu}" if cpu else "")
                     + f"; stored = sent: {entry['all_stored']}, lost {entry['lost']}, dup {entry['duplicated']}, "
                       f"out of order {entry['out_of_order']}")
    return lines


def phase_latency(cfg, out):
    """The paced sweep, rate by rate, against every target (one server each, kept for the
    sweep), the targets' order alternating from rate to rate; at the `device_sweep` rates
    each target with /ws/v2/ carries the same load on device sockets right after."""
    servers, runs = {}, []
    try:
        for target in TARGETS:
            name = f"latency_{target.commit}"
            server = servers[target.label] = start_server(out, name, target=target)
            server.tokens = provision(server, 2 * CONVERSATIONS + 2, out, name)
        for index, rate in enumerate(cfg["sweep"]):
            for target in TARGETS if index % 2 == 0 else TARGETS[::-1]:
                server = servers[target.label]
                with_device = target.device and rate in cfg.get("device_sweep", ())
                for device in (False, True) if with_device else (False,):
                    sockets = "device (v2)" if device else "room + inbox"
                    log(f"latency: {rate} msgs/s paced, {sockets}: {target.label}")
                    with Usage(server) as usage:
                        s = loadtest(server.http_base, server.ws_base, server.tokens, out,
                                     f"latency {rate} {'device ' if device else ''}{target.commit}", rate=rate,
                                     duration=cfg["duration"] + 10, device=device)
                    runs.append({"rate": rate, "target": target.label, **brief(s), **usage.result,
                                 "paths_p99": {p: s["fanout"][p].get("p99") for p in s["fanout"]}})
                    log(f"  -> {runs[-1]}")
    finally:
        for server in servers.values():
            server.stop()
    plot_latency([r for r in runs if r["target"] == TARGETS[0].label], out / "fanout_latency.png")
    return {"runs": runs, "plot": str(out / "fanout_latency.png")}


def latency_lines(latency):
    """Each rate with device runs: the legacy and the device sockets' figures side by side."""
    lines = []
    for run in latency["runs"]:
        if run.get("socket_kind") != "device":
            continue
        legacy = next((r for r in latency["runs"] if r["rate"] == run["rate"] and r["target"] == run["target"]
                       and r.get("socket_kind", "room+inbox") != "device"), None)
        if legacy:
            lines.append(f"paced {run['rate']:g} msgs/s, {run['target']}: complete fan-out p50/p99 "
                         f"room + inbox {legacy['complete_p50']}/{legacy['complete_p99']} ms "
                         f"(server CPU {legacy['server_cpu']} cores), device (v2) "
                         f"{run['complete_p50']}/{run['complete_p99']} ms (server CPU {run['server_cpu']} cores); "
                         f"lost {legacy['lost']} / {run['lost']}")
    return lines


def plot_latency(runs, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    devices = [r for r in runs if r.get("socket_kind") == "device"]
    runs = [r for r in runs if r.get("socket_kind") != "device"]
    rates = [r["rate"] for r in runs]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for key, style in (("complete_p50", "o-"), ("complete_p95", "s-"), ("complete_p99", "^-")):
        left.plot(rates, [r[key] for r in runs], style, label=key.replace("complete_", ""))
    if devices:
        left.plot([r["rate"] for r in devices], [r["complete_p99"] for r in devices], "kx", markersize=9,
                  label="p99, /ws/v2/ device sockets")
    left.axhline(50, color="red", linestyle="--", linewidth=1, label="target p99 ≤ 50 ms at 1,000/s")
    left.axvline(1000, color="grey", linestyle=":", linewidth=1)
    left.set(xlabel="offered messages/s (paced, 100 senders)", ylabel="complete fan-out latency (ms)",
             title="Complete fan-out (all 4 deliveries)")
    left.set_yscale("log")
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    delivered = [r["delivered_per_s"] for r in runs]
    right.plot(rates, delivered, "o-", label="delivered to partner room")
    right.plot(rates, rates, ":", color="grey", label="offered")
    right.set(xlabel="offered messages/s", ylabel="messages/s", title="Delivered vs offered")
    right.legend(fontsize=8)
    right.grid(alpha=0.3)
    fig.suptitle("Habitto chat, one server process (SQLite, in-memory layer), generator on the same 2-core machine",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def phase_idle(cfg, out):
    results = []
    count = cfg["idle_sockets"]
    for deflate in cfg["idle_deflate"]:
        name = f"idle_{'deflate' if deflate else 'plain'}"
        server = start_server(out, name, {"WS_PER_MESSAGE_DEFLATE": "1" if deflate else "0"})
        try:
            tokens = provision(server, count + 2 * CONVERSATIONS + 2, out, name)
            everyone = json.loads(tokens.read_text())
            active = out / f"{name}_active.json"
            account_store.save(everyone[count:], active)
            _warm_up(server, everyone[:20])
            time.sleep(1)
            rss0 = server.rss_bytes()
            log(f"idle: opening {count} inbox sockets (deflate={deflate})")
            holder = subprocess.Popen(
                [sys.executable, "-m", "bench.idle", "--accounts", str(tokens), "--ws", server.ws_base,
                 "--count", str(count), "--hold", "900"] + (["--deflate"] if deflate else []),
                cwd=REPO_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            )
            opened = json.loads(_readline(holder, 600))
            time.sleep(3)
            rss1 = server.rss_bytes()
            per_socket = (rss1 - rss0) / max(1, opened["opened"])
            log(f"  opened {opened}, RSS {rss0 / 2**20:.0f} -> {rss1 / 2**20:.0f} MiB, {per_socket / 1024:.1f} KiB/socket")
            with Usage(server) as usage:
                s = loadtest(server.http_base, server.ws_base, active, out, f"{name} latency 1000", rate=1000,
                             duration=cfg["duration"] + 10)
            rss2 = server.rss_bytes()
            holder.stdin.close()
            closed = json.loads(_readline(holder, 120))
            holder.wait(60)
            results.append({
                "deflate": deflate, "sockets": opened["opened"], "failed": opened["failed"],
                "open_seconds": opened["seconds"], "handshakes_per_s": opened["per_second"],
                "negotiated_deflate_sample": opened["negotiated_deflate"],
                "rss_before_mib": round(rss0 / 2**20, 1), "rss_open_mib": round(rss1 / 2**20, 1),
                "rss_after_run_mib": round(rss2 / 2**20, 1), "kib_per_socket": round(per_socket / 1024, 2),
                "closed_by_server": closed["closed_by_server_meanwhile"], "latency_1000": brief(s), **usage.result,
            })
            log(f"  -> {results[-1]}")
        finally:
            server.stop()
    if TARGETS[0].device:
        results.append(idle_devices(count, out))
    return {"runs": results}


def idle_devices(count, out):
    """`count` idle /ws/v2/ device sockets on a server of their own: RSS per socket, opened
    the way the inbox sockets are (no deflate; no latency run beside them)."""
    name = "idle_device"
    server = start_server(out, name, {"WS_PER_MESSAGE_DEFLATE": "0"})
    try:
        tokens = provision(server, count + 2, out, name)
        _warm_up(server, json.loads(tokens.read_text())[count:count + 2], device=True)
        time.sleep(1)
        rss0 = server.rss_bytes()
        log(f"idle: opening {count} /ws/v2/ device sockets")
        holder = subprocess.Popen(
            [sys.executable, "-m", "bench.idle", "--accounts", str(tokens), "--ws", server.ws_base,
             "--count", str(count), "--hold", "900", "--device"],
            cwd=REPO_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        opened = json.loads(_readline(holder, 600))
        time.sleep(3)
        rss1 = server.rss_bytes()
        holder.stdin.close()
        closed = json.loads(_readline(holder, 120))
        holder.wait(60)
        per_socket = (rss1 - rss0) / max(1, opened["opened"])
        result = {"socket_kind": "device", "deflate": False, "sockets": opened["opened"], "failed": opened["failed"],
                  "open_seconds": opened["seconds"], "handshakes_per_s": opened["per_second"],
                  "rss_before_mib": round(rss0 / 2**20, 1), "rss_open_mib": round(rss1 / 2**20, 1),
                  "kib_per_socket": round(per_socket / 1024, 2),
                  "closed_by_server": closed["closed_by_server_meanwhile"]}
        log(f"  -> {result}")
        return result
    finally:
        server.stop()


def idle_lines(idle):
    """Memory per idle socket, inbox and device side by side."""
    return [f"idle {r.get('socket_kind', 'inbox')} sockets{' (deflate)' if r['deflate'] else ''}: "
            f"{r['sockets']} open, {r['kib_per_socket']} KiB each (RSS {r['rss_before_mib']} -> "
            f"{r['rss_open_mib']} MiB), handshakes {r['handshakes_per_s']}/s" for r in idle["runs"]]


def _readline(proc, timeout):
    import selectors

    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    if not selector.select(timeout):
        proc.kill()
        raise RuntimeError(f"no answer from {proc.args[2]} within {timeout} s")
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"{proc.args[2]} exited with {proc.wait(5)}")
    return line


def _warm_up(server, accounts, device=False):
    """Open and close a few sockets and send a message so every code path is loaded."""
    from habitto_client import ChatSocket, DeviceSocket, inbox_url, room_url

    a, b = accounts[0], accounts[1]
    if device:
        with DeviceSocket.connect(server.ws_base, a["access"], timeout=10) as sock:
            sock.send_message(b["id"], "warm-up", client_id="warm-up")
            sock.expect("ack", 10, client_id="warm-up")
        DeviceSocket.connect(server.ws_base, b["access"], timeout=10).close()
        return
    with ChatSocket.open(room_url(server.ws_base, a["id"], b["id"], a["access"]), timeout=10) as room:
        room.send_message(a["id"], b["id"], "warm-up")
        room.recv_json(10)
    for account in accounts:
        ChatSocket.open(inbox_url(server.ws_base, account["id"], account["access"]), timeout=10).close()


def phase_queries(cfg, out):
    server = new_server(out, "queries")
    try:
        server.migrate()
        users = out / "queries_accounts.json"
        count = 1 + cfg["partners"] + cfg["others"]
        account_store.provision_local(count, account_store.new_prefix(), account_store.new_password(), users,
                                      env=server.env)
        log(f"queries: seeding {cfg['messages']} messages, {cfg['partners']} conversations for one user")
        seed_out = out / "queries_seed.json"
        subprocess.run([sys.executable, "-m", "bench.seed", "--users", str(users), "--messages",
                        str(cfg["messages"]), "--partners", str(cfg["partners"]), "--output", str(seed_out)],
                       env=server.env, cwd=REPO_DIR, check=True, timeout=1800)
        seed = json.loads(seed_out.read_text())
        server.start()
        tokens = out / "queries_tokens.json"
        first = out / "queries_first.json"
        account_store.save([a for a in json.loads(users.read_text()) if a["id"] == seed["user_id"]], first)
        subprocess.run([sys.executable, "-m", "bench.mint_tokens", "--accounts", str(first), "--output",
                        str(tokens)], env=server.env, cwd=REPO_DIR, check=True, timeout=300)
        token = json.loads(tokens.read_text())[0]["access"]
        db = server.state_dir / "db.sqlite3"
        big, small = seed["big_partner_id"], seed["small_partner_id"]
        probe = _get(server, token, f"/api/messages/thread/?other_user_id={big}&page=1&page_size=50")
        middle = probe["data"]["results"][-1]["id"] - 20_000
        cases = [
            ("reference: GET /api/users/me/ (auth + one row)", "/api/users/me/"),
            ("conversation list (app: first page, no params)", "/api/messages/conversations/"),
            ("conversation list, page 20 of 50", "/api/messages/conversations/?page=20&page_size=50"),
            (f"thread page 1 (50), {seed['big_thread_messages']}-message thread",
             f"/api/messages/thread/?other_user_id={big}&page=1&page_size=50"),
            ("thread page 1 (50), 100-message thread", f"/api/messages/thread/?other_user_id={small}&page=1&page_size=50"),
            ("thread before_id cursor (50), big thread", f"/api/messages/thread/?other_user_id={big}&before_id={middle}&page_size=50"),
        ]
        measured = []
        for label, path in cases:
            samples, body = _time_requests(server, token, path, cfg["requests"])
            data = body["data"]
            measured.append({"case": label, "path": path, **percentiles(samples),
                             "items": len(data["results"]) if "results" in data else None,
                             "count": data.get("count")})
            log(f"  {label}: {measured[-1]}")
        size = round(db.stat().st_size / 2**20, 1) if db.exists() else None
        return {"seed": seed, "db_mib": size, "cases": measured}
    finally:
        server.stop()


def _get(server, token, path):
    host, port = "127.0.0.1", int(server.http_base.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        response = conn.getresponse()
        return json.loads(response.read())
    finally:
        conn.close()


def _time_requests(server, token, path, n):
    """n sequential GETs over one keep-alive connection (after 5 warm-ups); ms each."""
    port = int(server.http_base.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {token}"}
    samples, body = [], None
    try:
        for i in range(n + 5):
            started = time.perf_counter()
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            raw = response.read()
            elapsed = (time.perf_counter() - started) * 1000
            if response.status != 200:
                raise RuntimeError(f"GET {path}: {response.status} {raw[:300]!r}")
            if i >= 5:
                samples.append(elapsed)
            body = raw
    finally:
        conn.close()
    return samples, json.loads(body)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=sorted(MODES), default="quick")
    parser.add_argument("--only", default=",".join(PHASES), help=f"comma-separated phases of {PHASES}")
    parser.add_argument("--out", default=None, help="results folder (default results/bench/<mode>)")
    parser.add_argument("--postgres", nargs="?", const=os.environ.get("TEST_POSTGRES_URL",
                        "postgres://postgres@127.0.0.1:5432/postgres"), default=None, metavar="ADMIN_URL",
                        help="PostgreSQL instead of SQLite: a throwaway database per server on this admin URL")
    parser.add_argument("--redis", nargs="?", const=os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
                        default=None, metavar="URL", help="the Redis channel layer (REDIS_URL) for every server")
    parser.add_argument("--against", metavar="COMMIT", action="append", default=[],
                        help="run the throughput and latency phases against this commit too, alternately "
                             "(repeatable; the first is the base of the ratios)")
    parser.add_argument("--conversations", type=int, default=None,
                        help="throughput: only the floods with this many conversations")
    parser.add_argument("--rounds", type=int, default=None,
                        help="throughput: each flood this many times per target (default: quick 1, full 2)")
    args = parser.parse_args(argv)
    phases = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = set(phases) - set(PHASES)
    if unknown:
        parser.error(f"unknown phases {sorted(unknown)}")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # servers and holders inherit it
    cfg = MODES[args.mode]
    POSTGRES["admin_url"] = args.postgres
    REDIS["url"] = args.redis
    database = ("postgres" if args.postgres else "sqlite") + ("-redis" if args.redis else "")
    out = Path(args.out or REPO_DIR / "results" / "bench" / f"{args.mode}-{database}")
    out.mkdir(parents=True, exist_ok=True)
    report_file = out / "bench.json"
    report = json.loads(report_file.read_text()) if report_file.exists() else {}
    report.update({"mode": args.mode, "database": database, "machine": machine(), "config": cfg})
    log(f"machine: {report['machine']}")
    TARGETS[:] = [Target(f"this tree {report['machine']['commit']}", report["machine"]["commit"] or "head",
                         device=has_device_socket(REPO_DIR))]
    for commit in args.against:
        TARGETS.append(prepare_commit(commit, REPO_DIR / "results" / "bench" / "commits"))
    if args.conversations:
        cfg = {**cfg, "flood": [f for f in cfg["flood"] if f[2] == args.conversations]}
        report["config"] = cfg
    report["targets"] = [{"label": t.label, "commit": t.commit} for t in TARGETS]
    rounds = args.rounds or ROUNDS[args.mode]
    for phase in phases:
        started = time.monotonic()
        if phase == "throughput":
            report[phase] = phase_throughput(cfg, out, rounds)
        else:
            report[phase] = globals()[f"phase_{phase}"](cfg, out)
        report[phase]["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        report[phase]["commit"] = report["machine"]["commit"]
        report[phase]["seconds"] = round(time.monotonic() - started, 1)
        report_file.write_text(json.dumps(report, indent=1))
    if "throughput" in phases:
        for line in summary_lines(report["throughput"]["summary"]):
            print(line)
    if "latency" in phases:
        for line in latency_lines(report["latency"]):
            print(line)
    if "idle" in phases:
        for line in idle_lines(report["idle"]):
            print(line)
    log(f"done: {report_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
