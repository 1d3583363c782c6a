"""Settings of the on-call checks: defaults < fabric.yml `oncall:` < a YAML file < ONCALL_*.

    oncall:                     # in fabric.yml (committed, no secrets) or the ONCALL_CONFIG file
      hosts: [local]            # "local" = this machine; anything else is an SSH host
      ws_port: 8000
      http_port: 8001
      redis_url: redis://127.0.0.1:6379/0    # as seen from the checked host; "" = no Redis
      redis_password: ...                    # secret: ONCALL_REDIS_PASSWORD
      probe_users: [{username: probe_1, password: ...}, {username: probe_2, password: ...}]
      probe_warn_ms: 1000
      timeouts: {connect: 2, http: 3, login: 5, ws: 3, redis: 2, ssh: 5, docker: 5, probe: 5, host: 8}
      demo_users: true          # no probe accounts configured: use `make run`'s demo users
                                # (STATE_DIR/demo-credentials.txt) for the local host's checks
      compose_project: habitto-chat
      compose_services: []      # services that must exist; [] = whatever the project runs
      backends: []              # behind a proxy on ws_port/http_port: the backends' host:port
                                # (ONCALL_BACKENDS); [] = discovered from Compose, else none
      backend_service: backend  # Compose service counted for discovery ("" = no discovery)
      backend_port_base: 18100  # its containers listen on base .. base+count-1
      metrics: {commit_p99_warn_ms: 250, http_5xx_ratio_warn: 0.01, layer_errors_warn: 1, interval: 2}
      metrics_token: ...        # secret: ONCALL_METRICS_TOKEN (the servers' METRICS_TOKEN)

Secrets (probe passwords, the Redis password, a password inside the Redis URL, the
metrics token) come from
the file named by ONCALL_CONFIG or from environment variables, never from fabric.yml, and
are never printed: `redacted()` is what any output shows.
"""

import json
import os
import urllib.parse
from dataclasses import dataclass, field, replace
from pathlib import Path

LOCAL = "local"
LOCAL_NAMES = {LOCAL, "localhost", "127.0.0.1"}

DEFAULT_TIMEOUTS = {
    "connect": 2.0,  # TCP connect to a port
    "http": 3.0,  # one HTTP request (healthz, readyz, clear)
    "login": 5.0,  # a probe login: the password hash is deliberately slow (PBKDF2)
    "ws": 3.0,  # one WebSocket handshake or close
    "redis": 2.0,  # Redis connect and PING
    "ssh": 5.0,  # SSH connect and authentication
    "docker": 5.0,  # one Docker API call
    "probe": 5.0,  # how long the probe waits for its message to arrive
    "host": 8.0,  # everything one host's task may take, SSH login included (each check's
    #               own timeout is cut to what is left of it)
}
# Where `make run` (manage.py seed_demo_users) keeps the dev server's demo users, by the
# same rule as the server's settings: $STATE_DIR, else var/ in the repository.
REPO_DIR = Path(__file__).resolve().parents[2]
DEMO_CREDENTIALS = "demo-credentials.txt"
# Thresholds read from the backends' /metrics (the same numbers as the Prometheus alerts of
# deploy/prometheus and docs/metrics.md; ops/oncall/metrics.py says how they are measured).
DEFAULT_METRICS = {
    "commit_p99_warn_ms": 250.0,  # WARNING above: p99 of habitto_chat_batch_commit_seconds
    "http_5xx_ratio_warn": 0.01,  # WARNING above: share of habitto_http_responses_total with 5xx
    "layer_errors_warn": 1.0,  # WARNING at or above: new channel-layer publish + receive errors
    "interval": 2.0,  # seconds between the two scrapes whose difference is measured
}


class ConfigError(Exception):
    """The configuration cannot be used; the checks report UNKNOWN (exit 3) with this text."""


@dataclass(frozen=True)
class ProbeUser:
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class OncallConfig:
    hosts: tuple = (LOCAL,)
    ws_port: int = 8000
    http_port: int = 8001
    redis_url: str = field(default="", repr=False)
    redis_password: str = field(default="", repr=False)
    probe_users: tuple = field(default=(), repr=False)
    probe_warn_ms: float = 1000.0
    timeouts: dict = field(default_factory=lambda: dict(DEFAULT_TIMEOUTS))
    compose_project: str = "habitto-chat"
    compose_services: tuple = ()
    backends: tuple = ()  # ("host", port) of each backend behind the proxy; () = no proxy
    backend_service: str = "backend"
    backend_port_base: int = 18100
    metrics: dict = field(default_factory=lambda: dict(DEFAULT_METRICS))
    metrics_token: str = field(default="", repr=False)
    # The dev server's demo users (alice, bob): used by the local host's checks when no
    # probe accounts are configured; never over SSH, never by the probe (it clears its chat).
    demo_users: tuple = field(default=(), repr=False)
    demo_source: str = ""
    sources: tuple = ()  # where settings came from (for `--json` and error messages)

    def timeout(self, name):
        return float(self.timeouts[name])

    def with_hosts(self, hosts):
        return replace(self, hosts=tuple(hosts) or (LOCAL,))

    def redis_target(self):
        """(host, port, db, username, password) of the Redis URL, password from config first."""
        if not self.redis_url:
            return None
        parts = urllib.parse.urlsplit(self.redis_url)
        db = parts.path.strip("/") or "0"
        password = self.redis_password or urllib.parse.unquote(parts.password or "") or None
        username = urllib.parse.unquote(parts.username) if parts.username else None
        return parts.hostname or "127.0.0.1", parts.port or 6379, int(db), username, password

    def redacted(self):
        """Everything, with secrets replaced by '***' (the only form that is ever printed)."""
        return {
            "hosts": list(self.hosts),
            "ws_port": self.ws_port,
            "http_port": self.http_port,
            "redis_url": redact_url(self.redis_url),
            "redis_password": "***" if self.redis_password else "",
            "probe_users": [{"username": u.username, "password": "***"} for u in self.probe_users],
            "probe_warn_ms": self.probe_warn_ms,
            "timeouts": dict(self.timeouts),
            "compose_project": self.compose_project,
            "compose_services": list(self.compose_services),
            "backends": [f"{host}:{port}" for host, port in self.backends],
            "backend_service": self.backend_service,
            "backend_port_base": self.backend_port_base,
            "metrics": dict(self.metrics),
            "metrics_token": "***" if self.metrics_token else "",
            "demo_users": [u.username for u in self.demo_users],
            "demo_source": self.demo_source,
            "sources": list(self.sources),
        }


def redact_url(url):
    """The URL with any password replaced by '***'."""
    if not url:
        return url
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def is_local(host):
    return host in LOCAL_NAMES


# -- loading ------------------------------------------------------------------------------

ENV_SCALARS = {
    "ONCALL_WS_PORT": "ws_port",
    "ONCALL_HTTP_PORT": "http_port",
    "ONCALL_REDIS_URL": "redis_url",
    "ONCALL_REDIS_PASSWORD": "redis_password",
    "ONCALL_PROBE_WARN_MS": "probe_warn_ms",
    "ONCALL_COMPOSE_PROJECT": "compose_project",
    "ONCALL_DEMO_USERS": "demo_users",
    "ONCALL_BACKENDS": "backends",
    "ONCALL_BACKEND_SERVICE": "backend_service",
    "ONCALL_BACKEND_PORT_BASE": "backend_port_base",
    "ONCALL_METRICS_TOKEN": "metrics_token",
}
KNOWN_KEYS = {
    "hosts", "ws_port", "http_port", "redis_url", "redis_password", "probe_users",
    "probe_accounts_file", "probe_warn_ms", "timeouts", "compose_project", "compose_services",
    "demo_users", "backends", "backend_service", "backend_port_base", "metrics", "metrics_token",
}


def load(fabric_section=None, env=None, config_file=None):
    """Build the configuration; raises ConfigError with a message fit for the on-call person.

    fabric_section: the `oncall:` mapping of the Fabric config (fabric.yml), if any.
    config_file: a YAML file (default: $ONCALL_CONFIG), either keys directly or under `oncall:`.
    """
    env = os.environ if env is None else env
    merged, sources = {}, ["defaults"]
    if fabric_section:
        _merge(merged, _plain(fabric_section), "fabric.yml")
        sources.append("fabric.yml")
    path = config_file or env.get("ONCALL_CONFIG", "").strip()
    if path:
        _merge(merged, _read_yaml(path), path)
        sources.append(path)
    env_values = _from_env(env)
    if env_values:
        names = env_values.pop("_names")
        probe_password = env_values.pop("_probe_password", None)
        _merge(merged, env_values, "environment")
        if probe_password is not None:
            merged["_probe_password"] = probe_password
        sources.append("environment (" + ", ".join(sorted(set(names))) + ")")
    cfg = _build(merged, tuple(sources))
    if not cfg.probe_users and _flag(merged.get("demo_users", True), "demo_users"):
        path = Path(env.get("STATE_DIR") or REPO_DIR / "var") / DEMO_CREDENTIALS
        users = read_demo_credentials(path)
        if users:
            cfg = replace(cfg, demo_users=users, demo_source=str(path))
    return cfg


def _plain(value):
    """Fabric/Invoke DataProxy trees -> plain dicts and lists."""
    if hasattr(value, "keys") and not isinstance(value, (str, bytes)):
        return {str(k): _plain(value[k]) for k in value.keys()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _read_yaml(path):
    import yaml

    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}".splitlines()[0]) from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings")
    if isinstance(data.get("oncall"), dict):
        data = data["oncall"]
    return data


def _merge(into, data, origin):
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: the oncall settings must be a mapping")
    unknown = sorted(set(data) - KNOWN_KEYS)
    if unknown:
        raise ConfigError(f"{origin}: unknown setting(s) {', '.join(unknown)}")
    for key, value in data.items():
        if key in ("timeouts", "metrics") and isinstance(value, dict):
            into.setdefault(key, {}).update(value)
        else:
            into[key] = value


def _from_env(env):
    values, names = {}, []
    for name, key in ENV_SCALARS.items():
        if env.get(name, "") != "":
            values[key] = env[name]
            names.append(name)
    if env.get("ONCALL_HOSTS", "").strip():
        values["hosts"] = env["ONCALL_HOSTS"]
        names.append("ONCALL_HOSTS")
    if env.get("ONCALL_COMPOSE_SERVICES", "").strip():
        values["compose_services"] = env["ONCALL_COMPOSE_SERVICES"]
        names.append("ONCALL_COMPOSE_SERVICES")
    for key in DEFAULT_TIMEOUTS:
        name = f"ONCALL_TIMEOUT_{key.upper()}"
        if env.get(name, "").strip():
            values.setdefault("timeouts", {})[key] = env[name]
            names.append(name)
    for key in DEFAULT_METRICS:
        name = f"ONCALL_METRICS_{key.upper()}"
        if env.get(name, "").strip():
            values.setdefault("metrics", {})[key] = env[name]
            names.append(name)
    if env.get("ONCALL_PROBE_ACCOUNTS_FILE", "").strip():
        values["probe_accounts_file"] = env["ONCALL_PROBE_ACCOUNTS_FILE"].strip()
        names.append("ONCALL_PROBE_ACCOUNTS_FILE")
    users = env.get("ONCALL_PROBE_USERS", "").strip()
    password = env.get("ONCALL_PROBE_PASSWORD", "")
    if users:
        names.append("ONCALL_PROBE_USERS")
        values["probe_users"] = [{"username": u.strip(), "password": password}
                                 for u in users.split(",") if u.strip()]
    elif password:
        values["_probe_password"] = password
    if password:
        names.append("ONCALL_PROBE_PASSWORD")
    if values:
        values["_names"] = names
    return values


def _build(data, sources):
    try:
        timeouts = dict(DEFAULT_TIMEOUTS)
        for key, value in (data.get("timeouts") or {}).items():
            if key not in DEFAULT_TIMEOUTS:
                raise ConfigError(f"unknown timeout {key!r} (known: {', '.join(DEFAULT_TIMEOUTS)})")
            timeouts[key] = _positive(value, f"timeouts.{key}")
        metrics = dict(DEFAULT_METRICS)
        for key, value in (data.get("metrics") or {}).items():
            if key not in DEFAULT_METRICS:
                raise ConfigError(f"unknown metrics setting {key!r} (known: {', '.join(DEFAULT_METRICS)})")
            metrics[key] = _at_least_zero(value, f"metrics.{key}")
        hosts = _hosts(data.get("hosts"))
        probe_password = data.pop("_probe_password", "")
        probe_users = _probe_users(data, probe_password)
        compose_services = data.get("compose_services") or ()
        if isinstance(compose_services, str):
            compose_services = [s.strip() for s in compose_services.split(",") if s.strip()]
        redis_url = str(data.get("redis_url") or "").strip()
        if redis_url and urllib.parse.urlsplit(redis_url).scheme not in {"redis", "rediss"}:
            raise ConfigError(f"redis_url must start with redis:// or rediss://, got {redact_url(redis_url)!r}")
        return OncallConfig(
            hosts=hosts,
            ws_port=_port(data.get("ws_port", 8000), "ws_port"),
            http_port=_port(data.get("http_port", 8001), "http_port"),
            redis_url=redis_url,
            redis_password=str(data.get("redis_password") or ""),
            probe_users=probe_users,
            probe_warn_ms=_positive(data.get("probe_warn_ms", 1000), "probe_warn_ms"),
            timeouts=timeouts,
            compose_project=str(data.get("compose_project") or "habitto-chat"),
            compose_services=tuple(str(s) for s in compose_services),
            backends=_backends(data.get("backends")),
            backend_service=str(data.get("backend_service", "backend") or ""),
            backend_port_base=_port(data.get("backend_port_base", 18100), "backend_port_base"),
            metrics=metrics,
            metrics_token=str(data.get("metrics_token") or ""),
            sources=sources,
        )
    except ConfigError as exc:
        raise ConfigError(f"bad on-call configuration (from {', '.join(sources)}): {exc}") from None


def parse_hosts(value):
    """'a,b' or ['a','b'] -> ('a','b'); empty -> ('local',)."""
    return _hosts(value)


def _hosts(value):
    if value in (None, "", []):
        return (LOCAL,)
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, (list, tuple)):
        raise ConfigError("hosts must be a list or a comma-separated string")
    hosts = tuple(str(h).strip() for h in value if str(h).strip())
    return hosts or (LOCAL,)


def _port(value, name):
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a TCP port number, got {value!r}") from None
    if not 0 < port < 65536:
        raise ConfigError(f"{name} must be between 1 and 65535, got {port}")
    return port


def _backends(value):
    """'127.0.0.1:18100,127.0.0.1:18101' or a list of such -> (("127.0.0.1", 18100), ...)."""
    if value in (None, "", []):
        return ()
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, (list, tuple)):
        raise ConfigError("backends must be a list of host:port or a comma-separated string")
    backends = []
    for item in (str(v).strip() for v in value):
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep or not host:
            raise ConfigError(f"each backend must be host:port, got {item!r}")
        backends.append((host.strip("[]"), _port(port, f"the port of backend {item!r}")))
    return tuple(dict.fromkeys(backends))


def _number(value, name):
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None


def _at_least_zero(value, name):
    number = _number(value, name)
    if number < 0:
        raise ConfigError(f"{name} must not be negative, got {value!r}")
    return number


def _positive(value, name):
    number = _number(value, name)
    if number <= 0:
        raise ConfigError(f"{name} must be greater than 0, got {value!r}")
    return number


def _probe_users(data, fallback_password=""):
    users = data.get("probe_users") or []
    path = data.get("probe_accounts_file")
    if path and not users:
        users = read_accounts_file(path)
    if not isinstance(users, list):
        raise ConfigError("probe_users must be a list of {username, password}")
    result = []
    for item in users:
        if isinstance(item, str):
            item = {"username": item}
        if not isinstance(item, dict) or not item.get("username"):
            raise ConfigError("each probe user needs a username")
        password = str(item.get("password") or fallback_password or "")
        result.append(ProbeUser(str(item["username"]), password))
    return tuple(result)


def _flag(value, name):
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"bad on-call configuration: {name} must be true or false, got {value!r}")


def read_demo_credentials(path):
    """alice and bob from seed_demo_users' file (`username password` lines); () when absent."""
    try:
        text = Path(path).read_text()
    except OSError:
        return ()
    pairs = dict(line.split()[:2] for line in text.splitlines()
                 if not line.startswith("#") and len(line.split()) >= 2)
    return tuple(ProbeUser(name, pairs[name]) for name in ("alice", "bob") if name in pairs)


def read_accounts_file(path):
    """Accounts written by `manage.py create_loadtest_users --output FILE`.

    Accepted forms: a JSON list of {username, password}, a JSON object with such a list
    under "users" or "accounts", or CSV lines `username,password` (a header line is skipped).
    """
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read probe accounts file {path}: {exc.strerror or exc}") from None
    stripped = text.lstrip()
    if stripped[:1] in "[{":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"probe accounts file {path} is not valid JSON: {exc}") from None
        if isinstance(data, dict):
            data = data.get("users") or data.get("accounts") or []
        if not isinstance(data, list):
            raise ConfigError(f"probe accounts file {path}: expected a list of accounts")
        return [{"username": a.get("username"), "password": a.get("password")}
                for a in data if isinstance(a, dict)]
    users = []
    for line in text.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 2 or not fields[0] or fields[0].lower() == "username":
            continue
        users.append({"username": fields[0], "password": fields[1]})
    return users
