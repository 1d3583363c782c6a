"""Settings from the environment (habitto_server/settings.py), each case in a fresh process
with a clean environment: production refuses to start without its essentials, passes
Django's deployment checks, SQLite runs in WAL mode, the development key file."""

import os
import secrets
import stat
import subprocess
import sys

import pytest

from tests.support.live import REPO_DIR, STACK_DIR, free_port

PROD_KEY = secrets.token_urlsafe(50)  # 67 random characters


def clean_env(state_dir, **values):
    """Only what Python needs, plus the given variables: nothing leaks from this shell."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(state_dir),
        "PYTHONPATH": f"{STACK_DIR}{os.pathsep}{REPO_DIR}",
        "DJANGO_SETTINGS_MODULE": "habitto_server.settings",
        "STATE_DIR": str(state_dir),
    }
    env.update({k: str(v) for k, v in values.items()})
    return env


def production_env(state_dir, **values):
    return clean_env(state_dir, **{"DEBUG": "0", "SECRET_KEY": PROD_KEY, "ALLOWED_HOSTS": "chat.example.com", **values})


def run_python(env, code, timeout=60):
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO_DIR
    )


def manage(env, *args, timeout=120):
    return subprocess.run(
        [sys.executable, str(STACK_DIR / "manage.py"), *args],
        env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO_DIR,
    )


def setting(env, expression):
    """Evaluate an expression after django.setup() in a fresh process; returns its repr text."""
    result = run_python(env, f"import django; django.setup(); from django.conf import settings; print(repr({expression}))")
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


# --- production refuses to start -------------------------------------------------------


def test_no_secret_key_without_debug_refuses_to_start(tmp_path):
    """DEBUG unset and no SECRET_KEY: setup fails with ImproperlyConfigured naming SECRET_KEY."""
    result = run_python(clean_env(tmp_path), "import django; django.setup()")
    assert result.returncode != 0
    assert "ImproperlyConfigured: SECRET_KEY is required when DEBUG is off; refusing to start." in result.stderr
    assert not (tmp_path / "secret_key").exists()


def test_manage_check_refuses_without_secret_key(tmp_path):
    """manage.py check with DEBUG=0 and no SECRET_KEY exits non-zero with the message."""
    result = manage(clean_env(tmp_path, DEBUG="0", ALLOWED_HOSTS="chat.example.com"), "check")
    assert result.returncode != 0
    assert "SECRET_KEY is required when DEBUG is off" in result.stderr


def test_server_refuses_to_start_without_secret_key(tmp_path):
    """python -m habitto_server.serve exits non-zero before listening when SECRET_KEY is missing."""
    port = free_port()
    result = subprocess.run(
        [sys.executable, "-m", "habitto_server.serve", "--host", "127.0.0.1", "--ports", str(port)],
        env=clean_env(tmp_path, DEBUG="0", ALLOWED_HOSTS="chat.example.com"),
        capture_output=True, text=True, timeout=60, cwd=REPO_DIR,
    )
    assert result.returncode != 0
    assert "SECRET_KEY is required when DEBUG is off" in result.stderr


def test_blank_secret_key_counts_as_missing(tmp_path):
    """A whitespace-only SECRET_KEY is no key."""
    result = run_python(clean_env(tmp_path, DEBUG="0", SECRET_KEY="   ", ALLOWED_HOSTS="x"), "import django; django.setup()")
    assert result.returncode != 0
    assert "SECRET_KEY is required" in result.stderr


def test_short_secret_key_refused_in_production(tmp_path):
    """DEBUG off with a SECRET_KEY under 50 characters refuses to start."""
    env = production_env(tmp_path, SECRET_KEY="x" * 49)
    result = run_python(env, "import django; django.setup()")
    assert result.returncode != 0
    assert "SECRET_KEY must be at least 50 characters when DEBUG is off." in result.stderr


def test_allowed_hosts_required_in_production(tmp_path):
    """DEBUG off without ALLOWED_HOSTS refuses to start."""
    env = clean_env(tmp_path, DEBUG="0", SECRET_KEY=PROD_KEY)
    result = run_python(env, "import django; django.setup()")
    assert result.returncode != 0
    assert "ALLOWED_HOSTS is required when DEBUG is off; refusing to start." in result.stderr


def test_allowed_hosts_of_only_commas_is_missing(tmp_path):
    """ALLOWED_HOSTS=',' names no host and is refused too."""
    env = clean_env(tmp_path, DEBUG="0", SECRET_KEY=PROD_KEY, ALLOWED_HOSTS=" , ")
    result = run_python(env, "import django; django.setup()")
    assert result.returncode != 0
    assert "ALLOWED_HOSTS is required" in result.stderr


@pytest.mark.parametrize("name,value", [("DEBUG", "maybe"), ("ACCESS_TOKEN_MINUTES", "abc"), ("ACCESS_TOKEN_MINUTES", "0"),
                                        ("CHAT_SOCKET_TOKEN_GRACE", "-1")])
def test_malformed_values_refuse_to_start(tmp_path, name, value):
    """A malformed boolean or integer is an error naming the variable, not a silent default."""
    env = clean_env(tmp_path, **{"DEBUG": "1", name: value})
    result = run_python(env, "import django; django.setup()")
    assert result.returncode != 0
    assert f"ImproperlyConfigured: {name} must be" in result.stderr


def test_production_passes_deploy_checks(tmp_path):
    """manage.py check --deploy --fail-level WARNING reports no issues in production."""
    result = manage(production_env(tmp_path), "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_development_fails_deploy_checks(tmp_path):
    """The same check is not vacuous: DEBUG=1 does not pass it."""
    result = manage(clean_env(tmp_path, DEBUG="1"), "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode != 0
    assert "security.W018" in result.stderr + result.stdout  # DEBUG on in deployment


def test_a_short_metrics_token_refuses_to_start_in_production(tmp_path):
    result = run_python(production_env(tmp_path, METRICS_TOKEN="too-short"), "import django; django.setup()")
    assert result.returncode != 0 and "METRICS_TOKEN must be at least 32 characters" in result.stderr
    assert setting(production_env(tmp_path, METRICS_TOKEN="t" * 32), "len(settings.METRICS_TOKEN)") == "32"


def test_production_security_settings(tmp_path):
    """Production turns on HTTPS redirect, HSTS and secure cookies; health and metrics paths stay plain."""
    env = production_env(tmp_path)
    assert setting(env, "settings.DEBUG") == "False"
    assert setting(env, "(settings.SECURE_SSL_REDIRECT, settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE)") == "(True, True, True)"
    assert setting(env, "settings.SECURE_HSTS_SECONDS") == "31536000"
    assert setting(env, "settings.SECURE_REDIRECT_EXEMPT") == "['^healthz$', '^readyz$', '^metrics$']"
    assert setting(env, "settings.ALLOWED_HOSTS") == "['chat.example.com']"


# --- databases and layers ---------------------------------------------------------------


def test_sqlite_runs_in_wal_mode(tmp_path):
    """A real connection to the default SQLite file reports journal_mode=wal."""
    code = (
        "import django; django.setup()\n"
        "from django.db import connection\n"
        "with connection.cursor() as c:\n"
        "    c.execute('PRAGMA journal_mode'); print(c.fetchone()[0])\n"
        "    c.execute('PRAGMA synchronous'); print(c.fetchone()[0])\n"
        "print(connection.settings_dict['NAME'])\n"
    )
    result = run_python(clean_env(tmp_path, DEBUG="1"), code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["wal", "1", str(tmp_path / "db.sqlite3")]
    assert (tmp_path / "db.sqlite3").exists()


def test_database_url_selects_postgresql(tmp_path):
    """DATABASE_URL=postgres://... selects PostgreSQL with a connect timeout and a pool."""
    env = clean_env(tmp_path, DEBUG="1", DATABASE_URL="postgres://chat:pw@db.example:5433/chatdb")
    expression = "{k: settings.DATABASES['default'][k] for k in ('ENGINE', 'NAME', 'HOST', 'PORT', 'USER')}"
    assert setting(env, expression) == (
        "{'ENGINE': 'django.db.backends.postgresql', 'NAME': 'chatdb', 'HOST': 'db.example', 'PORT': 5433, 'USER': 'chat'}"
    )
    assert setting(env, "settings.DATABASES['default']['OPTIONS']") == (
        "{'connect_timeout': 5, 'pool': {'min_size': 2, 'max_size': 10, 'timeout': 10}}"
    )
    assert setting(env, "settings.DATABASES['default']['CONN_MAX_AGE']") == "0"
    unpooled = clean_env(tmp_path, DEBUG="1", DATABASE_URL="postgres://chat:pw@db.example:5433/chatdb", DB_POOL="0")
    assert setting(unpooled, "settings.DATABASES['default']['OPTIONS']") == "{'connect_timeout': 5}"


def test_channel_layer_follows_redis_url(tmp_path):
    """REDIS_URL unset: the in-memory layer; set: Redis pub/sub, and readiness checks Redis."""
    backend = "settings.CHANNEL_LAYERS['default']['BACKEND']"
    assert setting(clean_env(tmp_path, DEBUG="1"), backend) == "'channels.layers.InMemoryChannelLayer'"
    env = clean_env(tmp_path, DEBUG="1", REDIS_URL="redis://127.0.0.1:6390/2")
    assert setting(env, backend) == "'channels_redis.pubsub.RedisPubSubChannelLayer'"
    assert setting(env, "settings.HABITTO_CHAT['REDIS_URL']") == "'redis://127.0.0.1:6390/2'"


def test_content_limit_from_environment(tmp_path):
    """CHAT_MAX_CONTENT_LENGTH defaults to 4000 and can be set."""
    expression = "settings.HABITTO_CHAT['MAX_CONTENT_LENGTH']"
    assert setting(clean_env(tmp_path, DEBUG="1"), expression) == "4000"
    assert setting(clean_env(tmp_path, DEBUG="1", CHAT_MAX_CONTENT_LENGTH="10"), expression) == "10"


def test_token_lifetimes_and_socket_grace_from_environment(tmp_path):
    """Access tokens last 60 minutes as the old backend's did; the legacy sockets' token
    grace defaults to the refresh-token lifetime and can be set (seconds, 0 allowed)."""
    access = "settings.SIMPLE_JWT['ACCESS_TOKEN_LIFETIME'].total_seconds()"
    grace = "settings.HABITTO_CHAT['SOCKET_TOKEN_GRACE']"
    assert setting(clean_env(tmp_path, DEBUG="1"), access) == "3600.0"
    assert setting(clean_env(tmp_path, DEBUG="1"), grace) == str(7 * 86400)
    assert setting(clean_env(tmp_path, DEBUG="1", REFRESH_TOKEN_DAYS="2"), grace) == str(2 * 86400)
    assert setting(clean_env(tmp_path, DEBUG="1", CHAT_SOCKET_TOKEN_GRACE="0"), grace) == "0"


# --- the development secret key ---------------------------------------------------------


def test_dev_secret_key_file_created_once_with_mode_0600(tmp_path):
    """DEBUG=1 without SECRET_KEY generates STATE_DIR/secret_key (0600), reused by the next start."""
    state = tmp_path / "state"
    env = clean_env(state, DEBUG="1")
    first = setting(env, "settings.SECRET_KEY")
    key_file = state / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    content = key_file.read_text()
    assert first == repr(content.strip())
    assert len(content.strip()) >= 50
    mtime = key_file.stat().st_mtime_ns
    assert setting(env, "settings.SECRET_KEY") == first
    assert key_file.read_text() == content and key_file.stat().st_mtime_ns == mtime


def test_dev_secret_key_differs_per_state_dir(tmp_path):
    """Each checkout (STATE_DIR) gets its own random key."""
    one = setting(clean_env(tmp_path / "a", DEBUG="1"), "settings.SECRET_KEY")
    two = setting(clean_env(tmp_path / "b", DEBUG="1"), "settings.SECRET_KEY")
    assert one != two


def test_given_secret_key_writes_no_file(tmp_path):
    """With SECRET_KEY set, no key file is created and the given key is used."""
    env = clean_env(tmp_path, DEBUG="1", SECRET_KEY="given-key")
    assert setting(env, "settings.SECRET_KEY") == "'given-key'"
    assert not (tmp_path / "secret_key").exists()


def test_jwt_signing_key_defaults_to_secret_key(tmp_path):
    """Tokens are signed with SECRET_KEY unless JWT_SIGNING_KEY is given (no hard-coded key)."""
    assert setting(production_env(tmp_path), "settings.SIMPLE_JWT['SIGNING_KEY']") == repr(PROD_KEY)
    env = production_env(tmp_path, JWT_SIGNING_KEY="jwt-" + "k" * 60)
    assert setting(env, "settings.SIMPLE_JWT['SIGNING_KEY']") == repr("jwt-" + "k" * 60)


def test_default_state_dir_is_git_ignored():
    """The default state folder (var/: key file, SQLite) is ignored by git."""
    result = subprocess.run(
        ["git", "check-ignore", "var/secret_key", "var/db.sqlite3"],
        cwd=REPO_DIR, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["var/secret_key", "var/db.sqlite3"]


def test_repeating_log_errors_are_let_through_once_per_interval():
    """The layer's once-a-second traceback during a Redis outage is logged once a minute."""
    import logging

    from habitto_server.logfilters import OncePerInterval

    limiter = OncePerInterval(seconds=60)
    record = lambda: logging.LogRecord("channels_redis.pubsub", logging.ERROR, __file__, 1, "Unexpected exception in receive task", None, None)
    results = [limiter.filter(record()) for _ in range(5)]
    assert results == [True, False, False, False, False]
    limiter._last = {k: (v[0] - 61, v[1]) for k, v in limiter._last.items()}
    again = record()
    assert limiter.filter(again) is True
    assert "and 4 more like it" in again.msg


# --- the server entry point's settings ----------------------------------------------


def test_server_options_come_from_settings(tmp_path):
    """HOST, PORTS, WS_IMPL and WS_PER_MESSAGE_DEFLATE are read by settings; serve.py's
    options default to them."""
    env = clean_env(tmp_path, DEBUG="1", HOST="0.0.0.0", PORTS="9000, 9001", WS_IMPL="wsproto", WS_PER_MESSAGE_DEFLATE="on")
    code = ("import django; django.setup(); from django.conf import settings; "
            "from habitto_server.serve import build_parser; a = build_parser(settings).parse_args([]); "
            "print(repr((a.host, a.ports, a.ws, a.per_message_deflate)))")
    result = run_python(env, code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "('0.0.0.0', [9000, 9001], 'wsproto', True)"


@pytest.mark.parametrize(
    "name,value", [("PORTS", "8000,70000"), ("PORTS", "http"), ("WS_IMPL", "tornado"), ("WS_PER_MESSAGE_DEFLATE", "maybe")]
)
def test_malformed_server_options_refuse_to_start(tmp_path, name, value):
    result = run_python(clean_env(tmp_path, **{"DEBUG": "1", name: value}), "import django; django.setup()")
    assert result.returncode != 0
    assert f"ImproperlyConfigured: {name} must be" in result.stderr


def test_serve_refuses_a_bad_ports_option(tmp_path):
    """--ports is parsed by the same parser: a bad port is a usage error (exit 2), not a crash."""
    result = subprocess.run(
        [sys.executable, "-m", "habitto_server.serve", "--ports", "8000,0"],
        env=clean_env(tmp_path, DEBUG="1"), capture_output=True, text=True, timeout=60, cwd=REPO_DIR,
    )
    assert result.returncode == 2
    assert "not a TCP port: '0'" in result.stderr
