"""Scenarios from loadtests/scenarios.toml: defaults merged with one named scenario."""

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from habitto_chat.parsing import parse_bool

from .tracker import DEVICE_PATHS, LEGACY_PATHS

SCENARIOS_FILE = Path(__file__).with_name("scenarios.toml")

THRESHOLD_KEYS = {
    "p95_complete_ms", "p99_complete_ms", "max_error_rate", "max_lost", "max_duplicated",
    "max_out_of_order", "min_completed", "p95_rest_ms", "p99_rest_ms", "max_rest_error_rate",
    "p95_login_ms", "p99_login_ms",
}
# Tables merged key by key like `thresholds`; their keys are fixed by [defaults].
TABLES = ("faults", "validity", "regression", "capacity", "phones")
DEVICE_USER_CLASS = "DeviceConversationUser"


@dataclass
class Scenario:
    name: str
    users: int
    spawn_rate: float
    rate_per_user: float
    message_bytes: int
    duration: float
    drain: float
    workers: int
    connect_timeout: float
    receive_timeout: float
    sync_start: float = 0.0
    inbox: bool = True
    window: int = 0
    protocol: int = 1  # 2: protocol-2 sockets (acks by client_id; resends after a reconnect)
    user_class: str = "ConversationUser"  # the Locust user class of this scenario (locustfile.py)
    group: int = 2  # accounts per Locust user, each conversing with every other (v2: on one device socket)
    churn: float = 0.0  # app scenario: times a minute each phone loses its network
    churn_away: float = 0.0  # app scenario: seconds a phone stays away (mean of an exponential)
    call_log: bool = False  # app scenario: write every phone's calls to <results>/<name>_calls.jsonl
    thresholds: dict = field(default_factory=dict)
    server_env: dict = field(default_factory=dict)
    validity: dict = field(default_factory=dict)  # when the generator, not the server, is measured
    regression: dict = field(default_factory=dict)  # tolerances of the baseline comparison
    capacity: dict = field(default_factory=dict)  # the steps of capacity mode
    faults: dict = field(default_factory=dict)  # faults injected during the run (loadtests/faults.py)
    phones: dict = field(default_factory=dict)  # app scenario: the mix of phone kinds and their pace

    @property
    def reconnects(self):
        """Users reopen dropped sockets and catch up (runs with faults, or when asked)."""
        return bool(self.faults.get("inject") or self.faults.get("reconnect"))

    @property
    def resends(self):
        """Sends not acknowledged go again after a reconnect with their client_id (protocol 2
        and the device sockets, in runs that reconnect); a send that fails is not forgotten."""
        return (self.protocol == 2 or self.device) and self.reconnects

    @property
    def device(self):
        """One /ws/v2/ device socket per account (the v2 scenario) instead of room and inbox sockets."""
        return self.user_class == DEVICE_USER_CLASS

    @property
    def fanout_paths(self):
        """The delivery paths of the gate's rows (a room-only run keeps the inbox rows, empty)."""
        return DEVICE_PATHS if self.device else LEGACY_PATHS

    @property
    def expected_paths(self):
        """The paths every message is expected on."""
        if self.device:
            return DEVICE_PATHS
        return LEGACY_PATHS if self.inbox else ("sender_echo", "partner_room")

    @property
    def described(self):
        """What the Locust users are: "25 conversations" or "10 groups of 4 accounts (60 conversations)"."""
        if self.group == 2:
            return f"{self.users} conversations" + (" on device sockets" if self.device else "")
        conversations = self.users * self.group * (self.group - 1) // 2
        return f"{self.users} groups of {self.group} accounts ({conversations} conversations on device sockets)"

    @property
    def offered_rate(self):
        """Messages per second the whole run offers."""
        return self.users * self.group * self.rate_per_user

    @property
    def run_time(self):
        """Locust --run-time: ramp-up, sending, drain, and two stats report intervals."""
        ramp = self.users / self.spawn_rate if self.spawn_rate else 0
        setup = max(ramp + self.connect_timeout, self.sync_start)
        return int(setup + self.duration + self.drain + 8) + 1


def _coerce(key, value, like):
    if isinstance(like, bool):
        if isinstance(value, bool):
            return value
        try:
            return parse_bool(str(value))
        except ValueError:
            raise ValueError(f"scenario key {key}: {value!r} is not a boolean") from None
    if like is None:
        return value
    if isinstance(like, list):  # "a,b" or "[1, 3]"; numbers stay numbers
        items = value if isinstance(value, list) else [
            item.strip() for item in str(value).strip("[]").split(",") if item.strip()]
        if like and all(isinstance(item, (int, float)) for item in like):
            try:
                return [int(item) if str(item).lstrip("-").isdigit() else float(item) for item in items]
            except ValueError:
                raise ValueError(f"scenario key {key}: {value!r} is not a list of numbers") from None
        return items
    try:
        return type(like)(value)
    except (TypeError, ValueError):
        raise ValueError(f"scenario key {key}: {value!r} is not a {type(like).__name__}") from None


def load(name="default", path=SCENARIOS_FILE, overrides=None):
    """The named scenario; `overrides` ({"users": "4", "thresholds.max_lost": "0"}) win."""
    with open(path, "rb") as handle:
        doc = tomllib.load(handle)
    defaults = dict(doc.get("defaults", {}))
    scenarios = doc.get("scenario", {})
    if name not in scenarios and name != "defaults":
        raise KeyError(f"no scenario {name!r} in {path} (have: {', '.join(sorted(scenarios))})")
    chosen = dict(scenarios.get(name, {}))
    thresholds = {**defaults.pop("thresholds", {}), **chosen.pop("thresholds", {})}
    server_env = {**defaults.pop("server_env", {}), **chosen.pop("server_env", {})}
    tables = {}
    for table in TABLES:
        base, own = defaults.pop(table, {}), chosen.pop(table, {})
        if set(own) - set(base):
            raise KeyError(f"unknown {table} keys {sorted(set(own) - set(base))} in scenario {name!r}")
        tables[table] = {**base, **own}
    values = {**defaults, **chosen}
    for key, raw in (overrides or {}).items():
        table, _, sub = key.partition(".")
        if table in tables:
            if sub not in tables[table]:
                raise KeyError(f"unknown {table} key {sub!r}")
            tables[table][sub] = _coerce(key, raw, tables[table][sub])
        elif key.startswith("thresholds."):
            sub = key.split(".", 1)[1]
            if sub not in THRESHOLD_KEYS:
                raise KeyError(f"unknown threshold {sub!r}")
            thresholds[sub] = float(raw)
        elif key.startswith("server_env."):
            server_env[key.split(".", 1)[1]] = str(raw)
        elif key in values:
            values[key] = _coerce(key, raw, values[key])
        else:
            raise KeyError(f"unknown scenario key {key!r}")
    unknown = set(thresholds) - THRESHOLD_KEYS
    if unknown:
        raise KeyError(f"unknown thresholds {sorted(unknown)} in {path}")
    if values.get("churn") and values.get("user_class") != "AppConversationUser":
        raise ValueError(f"scenario {name}: churn drops and reopens sockets the app's way; "
                         "it needs user_class = \"AppConversationUser\"")
    group = values.get("group", 2)
    if group < 2 or group % 2 or (group != 2 and values.get("user_class") != DEVICE_USER_CLASS):
        raise ValueError(f"scenario {name}: group {group}: an even number of accounts, above 2 only "
                         f"with user_class = \"{DEVICE_USER_CLASS}\"")
    return Scenario(name=name, thresholds=thresholds,
                    server_env={k: str(v) for k, v in server_env.items()}, **tables, **values)


def parse_overrides(items):
    """["users=4", "thresholds.max_lost=0"] -> dict."""
    result = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects key=value, got {item!r}")
        result[key.strip()] = value.strip()
    return result


PHONE_KINDS = ("chatter", "browser", "idle")  # the app scenario's kinds of phone (loadtests/app_users.py)


def phone_kinds(weights):
    """Phone kinds in proportion to their weights, interleaved (smooth weighted round robin)."""
    weights = {kind: float(weights.get(kind, 0)) for kind in PHONE_KINDS}
    total = sum(weights.values())
    if total <= 0:
        raise ValueError("the phones mix needs a positive weight")
    current = dict.fromkeys(PHONE_KINDS, 0.0)
    while True:
        for kind in PHONE_KINDS:
            current[kind] += weights[kind]
        chosen = max(PHONE_KINDS, key=current.get)
        current[chosen] -= total
        yield chosen
