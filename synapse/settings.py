"""Django settings for Synapse; every knob is an environment variable (see README)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from synapse.logs import logging_config
from synapse.pg_connection import BridgedConnection

BASE_DIR = Path(__file__).resolve().parent.parent
DEV_SECRET_KEY = "synapse-development-secret-do-not-use-in-production"

env = environ.Env()

DEBUG = env.bool("SYNAPSE_DEBUG", default=False)
SECRET_KEY = env.str("SYNAPSE_SECRET_KEY", default=DEV_SECRET_KEY)
if not DEBUG and SECRET_KEY == DEV_SECRET_KEY:
    raise ImproperlyConfigured(
        "SYNAPSE_SECRET_KEY is the development secret and SYNAPSE_DEBUG is off: "
        "set SYNAPSE_SECRET_KEY to a long random value (make run generates one)."
    )

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "synapse",
    "teams",
    "routing",
    "dlp",
    "audit",
    "alerts",
    "axes",  # console login throttling (django-axes)
]

# Every middleware here is async-capable: one sync-only middleware would push every
# /v1 request through a thread hop.
MIDDLEWARE = [
    "synapse.middleware.request_id_middleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: answers a locked-out login with its 429.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "synapse.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]
WSGI_APPLICATION = "synapse.wsgi.application"
ASGI_APPLICATION = "synapse.asgi.application"

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # psycopg 3's pool: one pool per worker process, connections re-used across requests.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # Recover at once: a pooled connection that sat unused is checked (one empty round trip)
    # before it is handed out, and one broken by a database restart is replaced instead of used
    # and failed; one handed out within the last second is not (synapse/pool_check.py puts that
    # check in place of Django's check-every-checkout).
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    _options = DATABASES["default"].setdefault("OPTIONS", {})
    # Fail fast: a database that does not answer is a 503 within ~2 s, not a queue of waiting
    # requests (the audit is fail-closed anyway, so waiting longer serves nobody).
    _options.setdefault("connect_timeout", env.int("SYNAPSE_DB_CONNECT_TIMEOUT", default=2))
    # Prepared statements for the per-request reads (routing/rows.py): planning their joins
    # took longer than running them. Off (SYNAPSE_DB_PREPARED_STATEMENTS=false) behind a
    # PgBouncer in transaction mode older than 1.21, which cannot keep them.
    _options.setdefault("prepare_threshold", 5 if env.bool("SYNAPSE_DB_PREPARED_STATEMENTS", default=True) else None)
    _options["pool"] = {
        "min_size": env.int("SYNAPSE_DB_POOL_MIN", default=2),
        "max_size": env.int("SYNAPSE_DB_POOL_MAX", default=20),
        "timeout": env.float("SYNAPSE_DB_POOL_TIMEOUT", default=1.5),
        # psycopg's connection, able to wait for its socket on the event loop (synapse/loop_db.py).
        "connection_class": BridgedConnection,
    }
    # Two roles (synapse/db_roles.py): migrations run as the tables' owner, requests as
    # DATABASE_URL's role, which each `migrate_locked` grants rows but no way around the triggers.
    if _admin_url := env.str("DATABASE_ADMIN_URL", default=""):
        DATABASES["admin"] = {**env.db_url_config(_admin_url), "TEST": {"MIRROR": "default"}}
elif DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL + a busy timeout let the quick start's two workers share the file.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )

# Console login throttling (django-axes): a username is locked out from one address after
# SYNAPSE_LOGIN_FAILURE_LIMIT wrong passwords in a row, for SYNAPSE_LOGIN_COOLOFF_MINUTES,
# even if the right password then follows. Per username + address, so a stranger cannot lock
# the administrators out from elsewhere.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("SYNAPSE_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("SYNAPSE_LOGIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# The same client address the audit rows use (SYNAPSE_TRUSTED_PROXIES decides which
# X-Forwarded-For entry is believed).
AXES_CLIENT_IP_CALLABLE = "synapse.views.request_client_ip"

# Behind a TLS-terminating proxy (the production path): SYNAPSE_SECURE_PROXY_SSL_HEADER names
# the header the proxy sets and its HTTPS value ("X-Forwarded-Proto=https"). Set, the console's
# cookies are Secure, plain HTTP is redirected and HSTS is sent, unless turned off one by one.
_tls_header = env.str("SYNAPSE_SECURE_PROXY_SSL_HEADER", default="")
if _tls_header:
    _name, _, _value = _tls_header.partition("=")
    if not _name.strip() or not _value.strip():
        raise ImproperlyConfigured("SYNAPSE_SECURE_PROXY_SSL_HEADER is written '<header>=<value>', e.g. X-Forwarded-Proto=https")
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + _name.strip().upper().replace("-", "_"), _value.strip())
_behind_tls = bool(_tls_header)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env.bool("SYNAPSE_SECURE_COOKIES", default=_behind_tls)
SECURE_SSL_REDIRECT = env.bool("SYNAPSE_SSL_REDIRECT", default=_behind_tls)
SECURE_HSTS_SECONDS = env.int("SYNAPSE_HSTS_SECONDS", default=31_536_000 if _behind_tls else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SYNAPSE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("SYNAPSE_HSTS_PRELOAD", default=False)
# Preloading is a commitment of the whole domain to browsers' HSTS lists: the domain's owner
# opts in with SYNAPSE_HSTS_PRELOAD=1; its absence is not a misconfiguration of the gateway.
SILENCED_SYSTEM_CHECKS = ["security.W021"]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("SYNAPSE_TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.path("SYNAPSE_STATIC_ROOT", default=BASE_DIR / ".synapse" / "static")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The console's bound (synapse/console_body.py refuses larger bodies before Django reads them;
# this is Django's own check behind it). The /v1 views read their bodies themselves
# (`request.read()`), bounded by SYNAPSE_MAX_BODY_BYTES while reading (synapse/lean_asgi.py).
CONSOLE_MAX_BODY_BYTES = env.int("SYNAPSE_CONSOLE_MAX_BODY_BYTES", default=10 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = CONSOLE_MAX_BODY_BYTES

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "synapse.errors.drf_exception_handler",
}

SYNAPSE = {
    "UPSTREAM_TIMEOUT": env.float("SYNAPSE_UPSTREAM_TIMEOUT", default=120.0),
    "MAX_BODY_BYTES": env.int("SYNAPSE_MAX_BODY_BYTES", default=8 * 1024 * 1024),
    # Seconds a /v1 or /mcp request body may take to arrive; a slower one is refused with a 408.
    "CONSOLE_MAX_BODY_BYTES": CONSOLE_MAX_BODY_BYTES,
    "BODY_READ_TIMEOUT": env.float("SYNAPSE_BODY_READ_TIMEOUT", default=30.0),
    # Circuit breaker: consecutive failures that take a backend out, and for how many seconds.
    "CIRCUIT_FAILURES": env.int("SYNAPSE_CIRCUIT_FAILURES", default=5),
    "CIRCUIT_COOLDOWN": env.float("SYNAPSE_CIRCUIT_COOLDOWN", default=30.0),
    # Completion tokens held for a request that sets no max_tokens on a key with no ceiling.
    "DEFAULT_COMPLETION_RESERVE": env.int("SYNAPSE_DEFAULT_COMPLETION_RESERVE", default=1024),
    # A key's in-flight slot (max_concurrent) is a lease: a killed worker's slots free themselves
    # within this many seconds; running requests' slots are refreshed every third of it.
    "CONCURRENCY_LEASE_SECONDS": env.float("SYNAPSE_CONCURRENCY_LEASE_SECONDS", default=60.0),
    "WEBHOOK_POLL_SECONDS": env.float("SYNAPSE_WEBHOOK_POLL_SECONDS", default=5.0),
    "WEBHOOK_BACKOFF_SECONDS": env.float("SYNAPSE_WEBHOOK_BACKOFF_SECONDS", default=30.0),
    "WEBHOOK_MAX_ATTEMPTS": env.int("SYNAPSE_WEBHOOK_MAX_ATTEMPTS", default=12),
    "ALERT_RULES_TTL": env.float("SYNAPSE_ALERT_RULES_TTL", default=30.0),
    # How often (seconds) each worker checks the DLP policy version in the database: a pattern
    # or pack change reaches every worker and replica within this interval, without restart.
    "DLP_RELOAD_SECONDS": env.float("SYNAPSE_DLP_RELOAD_SECONDS", default=1.0),
    # Images, audio, files and token-id input cannot be read by DLP; a sensitive key refuses
    # them unless the operator allows them here.
    "DLP_SENSITIVE_NON_TEXT": env.bool("SYNAPSE_DLP_SENSITIVE_NON_TEXT", default=False),
    # Reverse proxies in front of the gateway whose X-Forwarded-For is believed (0: none), so
    # audit rows and the auth-failure rule see the client's address, not the proxy's.
    "TRUSTED_PROXIES": env.int("SYNAPSE_TRUSTED_PROXIES", default=0),
    # Characters a stream may hold back while a match could still be forming (dlp/stream.py).
    # Per-request bounds on the prompt scan (dlp/budget.py): text over the size is refused
    # unscanned, a scan past the time budget is stopped and refused (0 turns either off).
    "DLP_MAX_SCAN_BYTES": env.int("SYNAPSE_DLP_MAX_SCAN_BYTES", default=4 * 1024 * 1024),
    "DLP_TIME_BUDGET_MS": env.int("SYNAPSE_DLP_TIME_BUDGET_MS", default=3000),
    # Prompts larger than this are scanned on the worker's scan pool (synapse/scans.py).
    "DLP_LARGE_PROMPT_BYTES": env.int("SYNAPSE_DLP_LARGE_PROMPT_BYTES", default=256 * 1024),
    "DLP_STREAM_WINDOW": env.int("SYNAPSE_DLP_STREAM_WINDOW", default=1024),
    # Bearer token GET /metrics requires; empty: /metrics is open (keep it off the public network).
    "METRICS_TOKEN": env.str("SYNAPSE_METRICS_TOKEN", default=""),
    # PostgreSQL: the audit rows of requests finishing together commit in one transaction
    # (audit/group_commit.py). Off: each request commits its own row, as on SQLite.
    "AUDIT_GROUP_COMMIT": env.bool("SYNAPSE_AUDIT_GROUP_COMMIT", default=True),
    # PostgreSQL: the /v1 and /mcp database hops run on the worker's event loop, in a greenlet
    # (synapse/loop_db.py); off, or with Redis counters (their client would block the loop),
    # on the worker's database threads.
    "DB_ON_LOOP": env.bool("SYNAPSE_DB_ON_LOOP", default=True),
    # PostgreSQL: a worker keeps each key's scope and route between requests and checks them
    # against the scope stamp in the statement that holds the request's limits
    # (teams/scope_cache.py). Off: every request reads its key first.
    "SCOPE_CACHE": env.bool("SYNAPSE_SCOPE_CACHE", default=True),
}

# The counter store behind rate limits, token reservations and spend (docs/LIMITS.md):
# atomic counters on the database by default, Redis when REDIS_URL is set.
REDIS_URL = env.str("REDIS_URL", default="")
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "counters": (
        {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env.str("SYNAPSE_REDIS_PREFIX", default="synapse"),
            "TIMEOUT": None,
            # Fail closed: an unreachable Redis raises, and the gateway answers 503.
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 2, "SOCKET_TIMEOUT": 2},
        }
        if REDIS_URL
        else {"BACKEND": "synapse.cache.CounterCache", "LOCATION": "synapse_counter", "TIMEOUT": None}
    ),
}
RATELIMIT_USE_CACHE = "counters"

# One format for Django and gunicorn (synapse/logs.py): SYNAPSE_LOG_FORMAT=json|text, SYNAPSE_LOG_LEVEL.
LOGGING = logging_config()

# Keyed hashes of prompts and responses in the audit log: "<key id>:<secret>". The key id is
# stored with every row so the secret can rotate. Unset, it derives from SECRET_KEY (fine for
# a trial; set it explicitly in production and keep it out of the database's reach).
_audit_hash_key = env.str("AUDIT_HASH_KEY", default="")
if _audit_hash_key:
    _audit_key_id, _, _audit_secret = _audit_hash_key.partition(":")
    if not _audit_secret:
        _audit_key_id, _audit_secret = "k1", _audit_hash_key
else:
    _audit_key_id, _audit_secret = "derived", "audit-hash:" + SECRET_KEY
AUDIT_HASH_KEY = (_audit_key_id, _audit_secret.encode())


def _audit_key(raw: str) -> tuple[str, bytes]:
    key_id, _, secret = raw.strip().partition(":")
    if not key_id or not secret:
        raise ImproperlyConfigured("audit keys are written '<key id>:<secret>'")
    return key_id, secret.encode()


# Retired hash keys, comma-separated "<key id>:<secret>", so `audit_match` still finds rows
# hashed before a rotation.
AUDIT_HASH_OLD_KEYS = [_audit_key(raw) for raw in env.list("AUDIT_HASH_OLD_KEYS", default=[])]
# Signs `audit_checkpoint` output; keep a copy wherever checkpoints are verified. Unset, it
# derives from the hash key.
_checkpoint_key = env.str("AUDIT_CHECKPOINT_KEY", default="")
AUDIT_CHECKPOINT_KEY = (
    _audit_key(_checkpoint_key) if _checkpoint_key else (f"{_audit_key_id}-cp", b"audit-checkpoint:" + AUDIT_HASH_KEY[1])
)
# Where `audit_checkpoint --post` sends the signed head (an append-only store outside this
# database's administrators' reach), and the bearer token it sends with it.
AUDIT_CHECKPOINT_URL = env.str("AUDIT_CHECKPOINT_URL", default="")
AUDIT_CHECKPOINT_TOKEN = env.str("AUDIT_CHECKPOINT_TOKEN", default="")
