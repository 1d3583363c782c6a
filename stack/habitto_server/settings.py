"""Settings of the standalone chat server: every value that varies by deployment is read
from the environment here, and nowhere else.

Development defaults are safe on a laptop (SQLite, in-memory channel layer, a generated
secret kept in a git-ignored file). With DEBUG off the server refuses to start unless
the production essentials (SECRET_KEY, ALLOWED_HOSTS) are given.
"""

import os
import re
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from habitto_chat import parsing

STACK_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = STACK_DIR.parent


def env_str(name, default=""):
    return os.environ.get(name, default).strip()


def _env(name, default, parse, kind):
    """The parsed variable, `default` when unset or blank; a bad value refuses to start."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return parse(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be {kind}, got {raw!r}") from None


def env_bool(name, default=False):
    return _env(name, default, parsing.parse_bool, "a boolean (1/0, true/false, yes/no, on/off)")


def env_int(name, default, minimum=0):
    value = _env(name, default, parsing.parse_int, "an integer")
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    return value


def env_float(name, default, minimum=0.0):
    value = _env(name, default, parsing.parse_float, "a number")
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    return value


def env_ports(name, default):
    return _env(name, parsing.parse_ports(default), parsing.parse_ports, "comma-separated TCP ports (1-65535)")


def env_list(name, default=()):
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)
# Where development state lives (SQLite file, generated secret, uploads).
STATE_DIR = Path(env_str("STATE_DIR") or REPO_DIR / "var")


def _development_secret_key():
    """A per-checkout random key, generated once and kept in a git-ignored file."""
    path = STATE_DIR / "secret_key"
    if not path.exists():
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is required when DEBUG is off; refusing to start. "
            "Set SECRET_KEY (50+ random characters) or DEBUG=1 for development."
        )
    SECRET_KEY = _development_secret_key()
elif not DEBUG and len(SECRET_KEY) < 50:
    raise ImproperlyConfigured("SECRET_KEY must be at least 50 characters when DEBUG is off.")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
if not DEBUG and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS is required when DEBUG is off; refusing to start.")

# Browser origins allowed to open sockets (native apps send no Origin and are allowed).
ALLOWED_ORIGINS = env_list(
    "ALLOWED_ORIGINS",
    ["http://localhost", "http://127.0.0.1"] if DEBUG else [],
)
CSRF_TRUSTED_ORIGINS = [o for o in ALLOWED_ORIGINS if o.startswith(("http://", "https://"))]

# No admin, sessions or messages: every client authenticates with bearer tokens, and each
# middleware costs a thread hop per request under ASGI (docs/benchmarks.md).
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "channels",
    "habitto_accounts",
    "habitto_chat",
    "habitto_chat.realtime",  # the sockets; subscribes the hub to the chat's events
    "habitto_web",  # the browser client at /
]

MIDDLEWARE = [
    "habitto_server.metrics.ResponseMetricsMiddleware",  # outermost: counts every response
    "habitto_server.middleware.api_errors_as_json",  # sees every /api/ answer
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "habitto_server.urls"
ASGI_APPLICATION = "habitto_server.asgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
            ]
        },
    }
]

# --- Database --------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL") or f"sqlite:///{STATE_DIR / 'db.sqlite3'}"
_database = dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))
_database["CONN_HEALTH_CHECKS"] = True
if _database["ENGINE"] == "django.db.backends.sqlite3":
    if _database["NAME"] != ":memory:":
        Path(_database["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    _database["OPTIONS"] = {
        # WAL lets readers run beside the writer; IMMEDIATE takes the write lock up
        # front so two writers wait (timeout) instead of failing on lock upgrade.
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
elif _database["ENGINE"] == "django.db.backends.postgresql":
    _database.setdefault("OPTIONS", {})["connect_timeout"] = env_int("DB_CONNECT_TIMEOUT", 5, 1)
    if env_bool("DB_POOL", True):
        # asgiref runs each request's sync code in a thread of its own, so Django's
        # per-thread persistent connections would open a PostgreSQL session per request
        # (measured: docs/benchmarks.md). A process-wide pool reuses them instead.
        _database["CONN_MAX_AGE"] = 0  # required with a pool
        _database["OPTIONS"]["pool"] = {
            "min_size": env_int("DB_POOL_MIN", 2, 1),
            "max_size": env_int("DB_POOL_MAX", 10, 1),
            "timeout": env_int("DB_POOL_TIMEOUT", 10, 1),
        }
DATABASES = {"default": _database}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Channel layer ---------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL")
REDIS_TIMEOUT = env_float("REDIS_TIMEOUT", 2.0, 0.1)
if REDIS_URL:
    # The pub/sub layer: one PUBLISH per fan-out batch, subscriptions that never
    # expire, and it resubscribes by itself after Redis comes back (docs/realtime.md).
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "socket_connect_timeout": REDIS_TIMEOUT,
                        "socket_keepalive": True,
                        "health_check_interval": 10,
                    }
                ],
                # Pub/sub ignores the database number in REDIS_URL: deployments sharing
                # one Redis must differ here, or they would receive each other's events.
                "prefix": env_str("REDIS_CHANNEL_PREFIX") or "habitto-chat",
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- Auth ------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
    {"NAME": "habitto_accounts.passwords.VisibleCharactersValidator"},
]

# 60 minutes as the old backend issued: the shipped app holds on to its access token.
ACCESS_TOKEN_MINUTES = env_int("ACCESS_TOKEN_MINUTES", 60, 1)
# Seconds, when set, win over the minutes: a load test of a few seconds can then make the
# app's phones meet a 401 and refresh (docs/loadtest.md).
ACCESS_TOKEN_SECONDS = env_int("ACCESS_TOKEN_SECONDS", ACCESS_TOKEN_MINUTES * 60, 1)
REFRESH_TOKEN_DAYS = env_int("REFRESH_TOKEN_DAYS", 7, 1)
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(seconds=ACCESS_TOKEN_SECONDS),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=REFRESH_TOKEN_DAYS),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": False,
    "ALGORITHM": "HS256",
    "SIGNING_KEY": env_str("JWT_SIGNING_KEY") or SECRET_KEY,
    "USER_ID_CLAIM": "user_id",
    "AUTH_HEADER_TYPES": ("Bearer",),
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["habitto_chat.api.authentication.JWTAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["habitto_chat.api.envelope.EnvelopeJSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "habitto_chat.api.parsers.BoundedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "EXCEPTION_HANDLER": "habitto_chat.api.envelope.envelope_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Habitto chat API",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
}

# --- The chat app's own settings (see habitto_chat/conf.py for every key) ---------
HABITTO_CHAT = {
    "MAX_CONTENT_LENGTH": env_int("CHAT_MAX_CONTENT_LENGTH", 4000, 1),
    "MAX_FRAME_BYTES": env_int("CHAT_MAX_FRAME_BYTES", 65536, 1024),
    "SEND_RATE_PER_SECOND": env_float("CHAT_SEND_RATE", 20.0, 0.01),
    "SEND_BURST": env_int("CHAT_SEND_BURST", 40, 1),
    "MAX_SOCKETS_PER_USER": env_int("CHAT_MAX_SOCKETS_PER_USER", 20, 1),
    # Frames queued for a socket that does not read before it is closed with 4408.
    "OUTBOX_FRAMES": env_int("CHAT_OUTBOX_FRAMES", 1000, 1),
    # Seconds a legacy socket's token is honoured past its expiry (docs/protocol.md).
    "SOCKET_TOKEN_GRACE": env_int("CHAT_SOCKET_TOKEN_GRACE", REFRESH_TOKEN_DAYS * 86400),
    "ALLOWED_ORIGINS": ALLOWED_ORIGINS,
    "USER_CARDS": "habitto_accounts.cards.user_cards",
    "REDIS_URL": REDIS_URL,
    "REDIS_TIMEOUT": REDIS_TIMEOUT,
    "PRESENCE_KEY_PREFIX": env_str("REDIS_PRESENCE_PREFIX") or "habitto-chat:presence:",
    # Test-only: delay every live delivery by this many ms (the load tester's self-test).
    "DELIVERY_DELAY_MS": env_int("CHAT_TEST_DELIVERY_DELAY_MS", 0),
}

# --- Accounts ----------------------------------------------------------------------
MAX_UPLOAD_BYTES = env_int("MAX_UPLOAD_BYTES", 2 * 1024 * 1024, 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = MAX_UPLOAD_BYTES
MEDIA_ROOT = Path(env_str("MEDIA_ROOT") or STATE_DIR / "media")
MEDIA_URL = "/media/"
STATIC_URL = "/static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT") or STATE_DIR / "static")

# --- HTTP edge: request bodies, throttling (README's settings table) -----------------
# Every request body is refused with 413 once past its limit, before it is read whole
# (habitto_server.bodylimit); only the routes that take a picture allow an upload's size,
# plus room for the multipart framing and the other fields.
MAX_BODY_BYTES = env_int("MAX_BODY_BYTES", 1024 * 1024, 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_BODY_BYTES
UPLOAD_BODY_BYTES = MAX_UPLOAD_BYTES + 64 * 1024
# Keys are regular expressions matched against the whole path: every route that takes a
# `profile_picture` (registration, both upload paths, and the profile writes the app sends
# as multipart: update_me, me, <id>).
BODY_LIMITS = {
    r"/api/users/": UPLOAD_BODY_BYTES,
    r"/api/profiles/(me/picture|upload_profile_picture|update_me|me|[0-9]+)/": UPLOAD_BODY_BYTES,
}


def env_rate(name, default):
    """A DRF throttle rate, "N/period" with an optional multiplier: 30/m, 10/15m, 20/h."""
    raw = env_str(name) or default
    if not re.fullmatch(r"\d+/\d*[smhd]", raw):
        raise ImproperlyConfigured(f"{name} must be a rate like 30/m or 10/15m, got {raw!r}")
    return raw


REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] = {
    "login": env_rate("THROTTLE_LOGIN", "30/m"),  # per client address
    "login_failures": env_rate("THROTTLE_LOGIN_FAILURES", "10/15m"),  # per account, then locked
    "register": env_rate("THROTTLE_REGISTER", "20/h"),  # per client address
    "refresh": env_rate("THROTTLE_REFRESH", "120/m"),  # per client address
}
# The client address is REMOTE_ADDR, which uvicorn sets from X-Forwarded-For only when the
# request comes from a proxy listed in FORWARDED_ALLOW_IPS (habitto_server/serve.py);
# DRF must not read the header itself, or any client could pick its own address.
REST_FRAMEWORK["NUM_PROXIES"] = 0
# Proxies whose X-Forwarded-For/-Proto uvicorn believes ("*": any peer, only where nothing
# but the proxy can reach the server). A trusted hop's header names the client address.
FORWARDED_ALLOW_IPS = env_list("FORWARDED_ALLOW_IPS", ["127.0.0.1"])
# Throttle counters: in Redis when REDIS_URL is set, so limits hold across processes
# and ports (the database number in REDIS_URL applies); per process otherwise.
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("REDIS_CACHE_PREFIX") or "habitto-chat",
            "OPTIONS": {"socket_connect_timeout": REDIS_TIMEOUT, "socket_timeout": REDIS_TIMEOUT},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Metrics (habitto_server/metrics.py, docs/metrics.md) ----------------------------
# /metrics answers loopback peers that came without a proxy; a scraper elsewhere (another
# container, Prometheus on another host) sends `Authorization: Bearer <METRICS_TOKEN>`.
METRICS_TOKEN = env_str("METRICS_TOKEN")
if METRICS_TOKEN and not DEBUG and len(METRICS_TOKEN) < 32:
    raise ImproperlyConfigured("METRICS_TOKEN must be at least 32 characters when DEBUG is off.")

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Security (production) ---------------------------------------------------------
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
if not DEBUG:
    # TLS terminates at the proxy in front (docs/deployment.md). SECURE_SSL_REDIRECT
    # may be turned off where a plain-HTTP health port is probed directly.
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

# --- The server process (habitto_server/serve.py; its options override these) ------
SERVE_HOST = env_str("HOST") or "127.0.0.1"
SERVE_PORTS = env_ports("PORTS", "8000,8001")
# One replica of several (the scaled Compose stack, docs/docker.md): instead of PORTS, the
# first free port of PORT_BASE .. PORT_BASE+PORT_COUNT-1, written to PORT_FILE when set.
SERVE_PORT_BASE = env_int("PORT_BASE", 0)
SERVE_PORT_COUNT = env_int("PORT_COUNT", 1, 1)
SERVE_PORT_FILE = env_str("PORT_FILE")
WS_IMPLEMENTATIONS = ("websockets", "websockets-sansio", "wsproto")  # uvicorn's
WS_IMPL = env_str("WS_IMPL") or "websockets"
if WS_IMPL not in WS_IMPLEMENTATIONS:
    raise ImproperlyConfigured(f"WS_IMPL must be one of {', '.join(WS_IMPLEMENTATIONS)}, got {WS_IMPL!r}")
# permessage-deflate costs memory per socket (docs/benchmarks.md).
WS_PER_MESSAGE_DEFLATE = env_bool("WS_PER_MESSAGE_DEFLATE", False)
ACCESS_LOG = env_bool("ACCESS_LOG", True)

# The server process's garbage-collector policy (habitto_server/gcwatch.py); 0 disables it.
GC_FREEZE_SECONDS = env_float("GC_FREEZE_SECONDS", 10.0)
GC_RELEASE_SECONDS = env_float("GC_RELEASE_SECONDS", 3600.0, 1.0)

LOG_LEVEL = env_str("LOG_LEVEL") or "INFO"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "redact_tokens": {"()": "habitto_server.logfilters.RedactTokens"},
        "once_per_minute": {"()": "habitto_server.logfilters.OncePerInterval", "seconds": 60},
    },
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["redact_tokens"],
        },
        "console_once_per_minute": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["redact_tokens", "once_per_minute"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "uvicorn.access": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "uvicorn.error": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "django.db.backends": {"level": "INFO"},
        # While Redis is down the pub/sub layer logs a traceback every second. Filtered on
        # the handler, not the logger: the hub's own handler must see every failure
        # (each one may have dropped events: realtime/gaps.py).
        "channels_redis.pubsub": {"handlers": ["console_once_per_minute"], "propagate": False},
        "habitto_chat.throttling": {"filters": ["once_per_minute"]},
    },
}
