"""dosereg settings: everything comes from the environment, with safe defaults.

With nothing configured the whole system runs on one machine: SQLite in ./var,
Celery tasks executed in-process, e-mail printed to the console. Set
DATABASE_URL / REDIS_URL / EMAIL_URL for the production path.
"""
from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any, overload

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


@overload
def env(name: str, default: str) -> str: ...
@overload
def env(name: str, default: str | None = None) -> str | None: ...
def env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return default if value in (None, "") else value


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={value!r} is not an integer") from exc


def env_list(name: str, default: str = "") -> list[str]:
    return [v.strip() for v in (env(name, default) or "").split(",") if v.strip()]


VAR_DIR = Path(env("DOSEREG_VAR_DIR", str(BASE_DIR / "var")))  # type: ignore[arg-type]

DEBUG = env_bool("DEBUG", False)
# Production: a DATABASE_URL is set and DEBUG is off (the docker compose path and any hand-made deployment),
# unless DOSEREG_PRODUCTION says otherwise (false: a developer's PostgreSQL; true: force it). The test runner
# is not production (tests/conftest.py sets DOSEREG_PRODUCTION=false for the processes it starts).
# Production refuses to start without a real SECRET_KEY and turns on the deploy checks (secure cookies,
# HTTPS redirect, HSTS; see the end of this file).
PRODUCTION = env_bool("DOSEREG_PRODUCTION", bool(env("DATABASE_URL")) and not DEBUG and "pytest" not in sys.modules)
# the .env.example value and the embedded demo's key are placeholders, never a production key
PLACEHOLDER_SECRET_KEYS = ("change-me", "changeme", "insecure-dev-key")
SECRET_KEY = env("SECRET_KEY")
if PRODUCTION and not SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY must be set in production")
if PRODUCTION and SECRET_KEY and SECRET_KEY.strip().lower().startswith(PLACEHOLDER_SECRET_KEYS):
    raise ImproperlyConfigured("SECRET_KEY is a placeholder: set a long random value in production")
if not SECRET_KEY:
    SECRET_KEY = "insecure-dev-key-only-for-the-embedded-demo-" + "x" * 20

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "dosereg.registry",
    "dosereg.access",
    "dosereg.notifications",
    "dosereg.exposure",
    "dosereg.staff",
    "dosereg.audit",
    "dosereg.web",
    "dosereg.protocols",
    "dosereg.skindose",
    "dosereg.pipeline",
    "dosereg.cases",
    "dicom_listener",
    "dosereg.ops",
]

# models.W040: covering indexes (INCLUDE) are PostgreSQL's; on SQLite, the embedded default, Django builds the
# same indexes with their key columns only (registry 0022), which is all a small registry needs
SILENCED_SYSTEM_CHECKS = ["models.W040"]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "dosereg.urls"
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
            ]
        },
    }
]
WSGI_APPLICATION = "dosereg.wsgi.application"

# --- database -------------------------------------------------------------
DATABASE_URL = env("DATABASE_URL")
if DATABASE_URL:
    DATABASES: dict[str, Any] = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))}
    if DATABASES["default"]["ENGINE"].endswith("postgresql"):
        # Safety nets for a network that drops connections: the server ends a session left idle inside a
        # transaction (its client vanished or hangs: its row locks would block every later ingest of that
        # patient), and the client notices a dead server connection within about a minute, not hours.
        # Every transaction of dosereg is short (milliseconds); 0 disables the timeout.
        _idle_tx_ms = env_int("DB_IDLE_IN_TRANSACTION_TIMEOUT_MS", 60_000)
        _pg_options = DATABASES["default"].setdefault("OPTIONS", {})
        _pg_options.update({"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3})
        if _idle_tx_ms > 0:
            _pg_options["options"] = (_pg_options.get("options", "") + f" -c idle_in_transaction_session_timeout={_idle_tx_ms}").strip()
        # PostgreSQL's JIT compiler pays off for long analytic queries; dosereg's are short, but a planner estimate
        # above jit_above_cost (an OR with a sub-select, say) made one study-browser page spend 1.7 s compiling
        # for 0.3 s of work. Off by default for dosereg's sessions; DB_JIT=true gives the server's setting back.
        if not env_bool("DB_JIT", False):
            _pg_options["options"] = (_pg_options.get("options", "") + " -c jit=off").strip()
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "dosereg.sqlite3",
            "OPTIONS": {"timeout": 30, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-gb"
TIME_ZONE = env("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "dosereg" / "static"] if (BASE_DIR / "dosereg" / "static").exists() else []

# --- Celery -----------------------------------------------------------------
REDIS_URL = env("REDIS_URL")
# memory:// names a host so kombu does not warn "No hostname was supplied" when an eager task acquires a producer
CELERY_BROKER_URL = REDIS_URL or "memory://localhost/"
CELERY_RESULT_BACKEND = None
# Embedded default: run tasks in-process. With a broker, tasks go to workers.
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", REDIS_URL is None)
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_TASK_ACKS_LATE = True  # a worker killed mid-task leaves the message for another worker
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Priorities (Redis: 0 is served first): alert e-mails and recomputes are not stuck behind a backlog of
# ingests; ingest tasks run at INGEST_TASK_PRIORITY. Each priority is its own Redis list "<queue>:<n>".
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT_S", 600),
    "priority_steps": list(range(10)), "sep": ":", "queue_order_strategy": "priority",
}
# Every broker key (queues, bindings) under this prefix: several deployments or test runs can share one Redis.
BROKER_KEY_PREFIX = env("BROKER_KEY_PREFIX", "")
if BROKER_KEY_PREFIX:
    CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"] = BROKER_KEY_PREFIX
INGEST_TASK_PRIORITY = env_int("INGEST_TASK_PRIORITY", 5)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_TASK_DEFAULT_QUEUE = "dosereg"
# Skin dose runs on its own queue: a worker started with -Q skin (compose: skin-worker) takes it, so a long
# procedure never holds up ingest or alert e-mails.
CELERY_TASK_ROUTES = {"dosereg.skin_dose_studies": {"queue": "skin"}}
SKINDOSE_ENABLED = env_bool("SKINDOSE_ENABLED", True)
# A worker started with WORKER_SCHED_IDLE=true (compose: the skin worker) runs under Linux's SCHED_IDLE class: it
# gets the CPU only when nothing else wants it, so peak skin dose, seconds of computation per procedure, never
# slows the ingest, listener or database on a busy host; its backlog is computed in the gaps (issue 15)
WORKER_SCHED_IDLE = env_bool("WORKER_SCHED_IDLE", False)
# A worker that takes only the skin queue also yields to the ingest: while ingest tasks wait in the broker (a burst,
# a backlog after an outage) the skin task waits (asking the queue's length every SKIN_YIELD_POLL_S) before it
# computes, so its memory traffic and database work stay out of the ingest's way too; after SKIN_YIELD_MAX_S it
# computes regardless (a registry that is never idle still gets its peak skin doses). 0 turns the waiting off. Ka,r
# alerts do not wait: the ingest raises them itself.
SKIN_YIELD_MAX_S = env_int("SKIN_YIELD_MAX_S", 300)
SKIN_YIELD_POLL_S = env_int("SKIN_YIELD_POLL_S", 1)
# Celery's Django fixup closes the database connection after every task unless told to reuse it;
# reconnecting cost PostgreSQL ~25 ms of CPU per ingested object. Connections that broke or outlived
# DB_CONN_MAX_AGE are still closed before each task (dosereg.ops.receivers.refresh_db_connections).
# The ingest worker does the follow-up steps of an object (dosereg.pipeline.flow.follow_up: exposure recompute and
# alerts, staff sync, protocol summaries) itself right after the ingest commits, instead of queueing each as its
# own task (a step that fails is queued).
INGEST_DERIVED_INLINE = env_bool("INGEST_DERIVED_INLINE", True)
# ... except while ingest tasks wait in the broker (a burst): then the staff and protocol-summary steps (not the
# exposure step, which raises the procedure alerts) are queued at DEFERRED_STEP_PRIORITY, served after the waiting
# ingests, so that the worker's next ingest and its alert e-mail are not held up by them (issue 14)
INGEST_DEFER_UNDER_BACKLOG = env_bool("INGEST_DEFER_UNDER_BACKLOG", True)
DEFERRED_STEP_PRIORITY = env_int("DEFERRED_STEP_PRIORITY", 9)
# A report with more irradiation events than this is quarantined with the reason, before it is parsed (a
# worker's memory grows with the events: measured peak RSS of one ingest, bench/bench_ingest_memory.py,
# ~260 MB at 10,000 events, ~460 MB at 20,000). The largest clinical reports hold a few thousand.
INGEST_MAX_EVENTS = env_int("INGEST_MAX_EVENTS", 10000)  # 0: no limit
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 1_000_000)
# an object whose ingest task was delivered this many times without finishing (worker killed, out of memory)
# is quarantined with that reason instead of being delivered again
INGEST_MAX_DELIVERIES = env_int("INGEST_MAX_DELIVERIES", 5)
SWEEP_INTERVAL_S = env_int("SWEEP_INTERVAL_S", 60)
CELERY_BEAT_SCHEDULE = {
    "sweep-spool": {"task": "dosereg.sweep_spool", "schedule": timedelta(seconds=SWEEP_INTERVAL_S)},
    "notification-digest": {"task": "dosereg.send_notification_digest", "schedule": timedelta(days=1)},
    "sweep-notifications": {"task": "dosereg.sweep_notifications", "schedule": timedelta(minutes=5)},
    "requeue-notification-leases": {"task": "dosereg.requeue_notification_leases",
                                    "schedule": timedelta(seconds=env_int("NOTIFICATION_LEASE_SWEEP_S", 30))},
    "exposure-follow-up-reminders": {"task": "dosereg.exposure_follow_up_reminders", "schedule": timedelta(hours=1)},
    "case-follow-up-reminders": {"task": "dosereg.case_follow_up_reminders", "schedule": timedelta(hours=1)},
    "case-counts-compact": {"task": "dosereg.case_counts_compact", "schedule": timedelta(minutes=1)},
    "exposure-refresh-now-windows": {"task": "dosereg.exposure_refresh_now_windows", "schedule": timedelta(days=1)},
    "refresh-protocol-summaries": {"task": "dosereg.refresh_protocol_summaries", "schedule": timedelta(minutes=1)},
}

# --- DICOM listener ----------------------------------------------------------
DICOM_AE_TITLE = env("DICOM_AE_TITLE", "DOSEREG")
DICOM_BIND_ADDRESS = env("DICOM_BIND_ADDRESS", "0.0.0.0")
# `manage.py demo` listens on this machine only unless told otherwise (or --dicom-address)
DEMO_DICOM_BIND_ADDRESS = env("DEMO_DICOM_BIND_ADDRESS", "127.0.0.1")
DICOM_PORT = env_int("DICOM_PORT", 11112)
# Calling AE titles allowed to associate. "*" allows any caller (not recommended). No generic title
# (DCMTK's STORESCU, ANY-SCU ...) by default: configure your modalities' own titles.
DICOM_ALLOWED_CALLING_AES = env_list("DICOM_ALLOWED_CALLING_AES", "DOSEREG_DEMO,BACKFILL")
# Associations whose called AE title is not DICOM_AE_TITLE are rejected (PS3.8 reason 7) unless this is off.
DICOM_REQUIRE_CALLED_AE = env_bool("DICOM_REQUIRE_CALLED_AE", True)
# Maximum P-DATA PDU we accept (advertised to callers; a larger PDU ends the connection). 0 = unlimited.
DICOM_MAX_PDU = env_int("DICOM_MAX_PDU", 256 * 1024)
# Largest object accepted; checked while it is received (streamed to the spool, never held in memory).
DICOM_MAX_OBJECT_BYTES = env_int("DICOM_MAX_OBJECT_BYTES", 512 * 1024 * 1024)
# Bytes of partly received objects over all associations; beyond it C-STORE answers Out of Resources (0xA700).
DICOM_MAX_INFLIGHT_BYTES = env_int("DICOM_MAX_INFLIGHT_BYTES", 4 * 1024 * 1024 * 1024)
# Concurrent associations (connections) in all, and from one peer address (more are closed at once).
DICOM_MAX_ASSOCIATIONS = env_int("DICOM_MAX_ASSOCIATIONS", 32)
DICOM_MAX_CONNECTIONS_PER_PEER = env_int("DICOM_MAX_CONNECTIONS_PER_PEER", 8)
# A connection that has not sent its association request (TLS handshake included) within this is closed.
DICOM_ASSOCIATION_TIMEOUT_S = env_int("DICOM_ASSOCIATION_TIMEOUT_S", 5)
# An established association that sends nothing for this long is aborted.
DICOM_IDLE_TIMEOUT_S = env_int("DICOM_IDLE_TIMEOUT_S", 60)
for _name in ("DICOM_MAX_OBJECT_BYTES", "DICOM_MAX_INFLIGHT_BYTES", "DICOM_MAX_ASSOCIATIONS",
              "DICOM_MAX_CONNECTIONS_PER_PEER", "DICOM_ASSOCIATION_TIMEOUT_S", "DICOM_IDLE_TIMEOUT_S"):
    if globals()[_name] <= 0:
        raise ImproperlyConfigured(f"{_name} must be positive")
if DICOM_MAX_PDU < 0:
    raise ImproperlyConfigured("DICOM_MAX_PDU must be 0 (unlimited) or positive")
# Optional DICOM TLS (PS3.15 B.1): with a PEM certificate and key the listener accepts TLS only.
# With DICOM_TLS_CA (PEM CA bundle) callers must also present a certificate signed by it.
DICOM_TLS_CERT = env("DICOM_TLS_CERT", "")
DICOM_TLS_KEY = env("DICOM_TLS_KEY", "")
DICOM_TLS_CA = env("DICOM_TLS_CA", "")
# the listener health check's client certificate (when DICOM_TLS_CA requires one); default: the listener's own
DICOM_TLS_HEALTH_CERT = env("DICOM_TLS_HEALTH_CERT", "")
DICOM_TLS_HEALTH_KEY = env("DICOM_TLS_HEALTH_KEY", "")
if bool(DICOM_TLS_CERT) != bool(DICOM_TLS_KEY):
    raise ImproperlyConfigured("DICOM TLS needs both DICOM_TLS_CERT and DICOM_TLS_KEY")
SPOOL_DIR = Path(env("SPOOL_DIR", str(VAR_DIR / "spool")))  # type: ignore[arg-type]
# Minimum free space on the spool filesystem; below it C-STORE answers Out of Resources.
SPOOL_MIN_FREE_BYTES = env_int("SPOOL_MIN_FREE_BYTES", 64 * 1024 * 1024)
# An object not ingested this long after it was stored is re-enqueued by the sweeper.
SWEEP_STALE_AFTER_S = env_int("SWEEP_STALE_AFTER_S", 120)

# --- e-mail ------------------------------------------------------------------
EMAIL_HOST = env("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_BACKEND = env(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend" if env("EMAIL_HOST") else "django.core.mail.backends.console.EmailBackend",
)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "dosereg@localhost")
# `manage.py demo` writes its e-mails here (file backend, one .log file per connection) instead of printing them,
# unless EMAIL_HOST or EMAIL_BACKEND is set; also used by EMAIL_BACKEND=django.core.mail.backends.filebased.EmailBackend.
EMAIL_FILE_PATH = Path(env("EMAIL_FILE_PATH", str(VAR_DIR / "mail")))  # type: ignore[arg-type]
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
# An e-mail whose delivery was claimed by a worker that died is sent again once this lease expires (checked
# by beat every NOTIFICATION_LEASE_SWEEP_S, above): within a minute. A row is given up (failed) after
# NOTIFICATION_MAX_ATTEMPTS claims.
NOTIFICATION_LEASE_S = env_int("NOTIFICATION_LEASE_S", 20)
NOTIFICATION_MAX_ATTEMPTS = env_int("NOTIFICATION_MAX_ATTEMPTS", 10)

# --- patient identity ----------------------------------------------------------
# When set, patient identifiers are stored as HMAC-SHA256 pseudonyms, never in clear.
# Phantom, QA and test exposures (OpenREM's "not-patient indicators"): a regular expression searched, case-insensitive,
# in the Patient ID and the Patient's Name (^ = _ read as spaces). A match marks the study "not a patient": kept
# and alerted like any other, left out of the protocol audit, DRL comparisons and device trends. Empty: off.
# Letters may not touch the word on either side; digits, "_" and "-" may ("PHANTOM01", "QA_TEST", "CT-QC").
NOT_PATIENT_PATTERN = env("NOT_PATIENT_PATTERN", r"(?<![a-z])(phantom|qa|qc|calibration|constancy)(?![a-z])")
PSEUDONYMISE_PATIENTS = env_bool("PSEUDONYMISE_PATIENTS", False)
PSEUDONYM_SECRET = env("PSEUDONYM_SECRET", "")
# NM/PET effective dose: ICRP Publication 128 coefficients (mSv per MBq), a versioned and cited table
# (dosereg.rdsr.nm.ICRP128_TABLE; no coefficient is shipped until confirmed against the reference). A site adds
# verified rows as a JSON file with the same shape, each row with its own "source" (issue 16).
NM_EFFECTIVE_DOSE_COEFFICIENTS = __import__("dosereg.rdsr.nm", fromlist=["ICRP128_TABLE"]).ICRP128_TABLE
if env("NM_EFFECTIVE_DOSE_COEFFICIENTS_FILE", ""):
    import json as _json

    with open(env("NM_EFFECTIVE_DOSE_COEFFICIENTS_FILE", ""), encoding="utf-8") as _f:
        NM_EFFECTIVE_DOSE_COEFFICIENTS = _json.load(_f)
# The EANM paediatric dosage card (baseline activity × weight-class multiple, radiopharmaceutical classes A/B/C), the
# table of the NM/PET alert rule "nm-paed-eanm-card" (dosereg.exposure.eanm_card: versioned and cited; ⚠ not compared
# with the primary card, so its rule is seeded disabled). A site that has checked the card (and the agent codes its
# units send) gives its own table as a JSON file of the same shape. The rule's tolerance is the rule's own parameter
# (admin: Exposure > Rules, params "tolerance_fraction", default 0.10).
EANM_PAEDIATRIC_DOSAGE_CARD = __import__("dosereg.exposure.eanm_card", fromlist=["EANM_CARD"]).EANM_CARD
if env("EANM_PAEDIATRIC_DOSAGE_CARD_FILE", ""):
    import json as _json

    with open(env("EANM_PAEDIATRIC_DOSAGE_CARD_FILE", ""), encoding="utf-8") as _f:
        EANM_PAEDIATRIC_DOSAGE_CARD = _json.load(_f)
if PSEUDONYMISE_PATIENTS and not PSEUDONYM_SECRET:
    raise ImproperlyConfigured("PSEUDONYMISE_PATIENTS requires PSEUDONYM_SECRET")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
                   "json": {"()": "dosereg.ops.logging.JsonFormatter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json" if env("LOG_FORMAT") == "json" else "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    "loggers": {"pynetdicom": {"level": env("PYNETDICOM_LOG_LEVEL", "WARNING")}},
}

# --- operations (dosereg.ops) --------------------------------------------------
# Stored originals of ingested objects older than this are deleted by `manage.py apply_retention`; unset = keep forever.
RETENTION_ORIGINALS_DAYS = env_int("RETENTION_ORIGINALS_DAYS", 0) or None
# /health/ answers 503 when an object has waited longer than this for ingest (unset: reported only).
HEALTH_MAX_PENDING_AGE_S = env_int("HEALTH_MAX_PENDING_AGE_S", 0) or None
SECURE_REDIRECT_EXEMPT = [r"^health/$"]  # container health checks speak plain HTTP to the web process

# =============================================================================
# --- web, API and security (owned by the web/audit apps; appended section) ---
# =============================================================================
LOGIN_URL = "web:login"
LOGIN_REDIRECT_URL = "web:home"
LOGOUT_REDIRECT_URL = "web:login"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "dosereg.web.tokens.ExpiringTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer", "rest_framework.renderers.BrowsableAPIRenderer"],
    "DEFAULT_THROTTLE_CLASSES": ["rest_framework.throttling.AnonRateThrottle", "rest_framework.throttling.UserRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env("API_THROTTLE_ANON", "60/min"),
        "user": env("API_THROTTLE_USER", "2000/min"),
    },
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

# Login lockout: failed logins are counted from the audit trail (shared by all processes).
# A user name is locked for LOGIN_LOCKOUT_S after LOGIN_MAX_FAILURES failures from one client address (other
# addresses, other user names are unaffected: a correct password still signs in). LOGIN_MAX_FAILURES_PER_IP
# failures from one address across user names are logged as a warning, never a lock.
DOSEREG_LOGIN_MAX_FAILURES = env_int("LOGIN_MAX_FAILURES", 5)             # per user name and address
DOSEREG_LOGIN_MAX_FAILURES_PER_IP = env_int("LOGIN_MAX_FAILURES_PER_IP", 30)
DOSEREG_LOGIN_LOCKOUT_S = env_int("LOGIN_LOCKOUT_S", 900)
# Only behind reverse proxies that append the address they received the connection from to X-Forwarded-For:
# the client address is then the TRUSTED_PROXY_COUNT-th hop from the end (earlier hops are client-controlled).
DOSEREG_TRUST_X_FORWARDED_FOR = env_bool("TRUST_X_FORWARDED_FOR", False)
DOSEREG_TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 1)
REST_FRAMEWORK["NUM_PROXIES"] = DOSEREG_TRUSTED_PROXY_COUNT if DOSEREG_TRUST_X_FORWARDED_FOR else 0  # DRF throttles
# API tokens expire this long after they were issued (and die with a password change or a sign-out).
DOSEREG_API_TOKEN_TTL_HOURS = env_int("API_TOKEN_TTL_HOURS", 24)
# Patient portal: natural background used for "about N days of background" (dose-standards.md §7.3).
DOSEREG_BACKGROUND_MSV_PER_YEAR = float(env("BACKGROUND_MSV_PER_YEAR", "3.1"))
DOSEREG_BACKGROUND_SOURCE = env("BACKGROUND_SOURCE", "average natural background in the United States (NCRP Report 160)")
DOSEREG_PORTAL_INVITE_DAYS = env_int("PORTAL_INVITE_DAYS", 14)
# Patient portal, after a fluoroscopically guided procedure with a peak skin dose above the first PSD level: whom the
# patient calls about a skin change (the site's phone number or service; the exam's institution is named beside it).
DOSEREG_PORTAL_SKIN_CONTACT = env("PORTAL_SKIN_CONTACT", "the department that performed your procedure, or your own doctor")
# Patient portal PDF: a TrueType font with the characters of names and units (Ø, ł, Greek, Gy·cm²);
# when it cannot be loaded the PDF falls back to a core font with transliteration.
DOSEREG_PORTAL_PDF_FONT = env("PORTAL_PDF_FONT", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
# RSO site scoping (dosereg.access.scope): an RSO without a site assignment sees every site when true
# (existing installations, the demo), nothing when false. Assign sites in the admin (Web › Site assignments).
DOSEREG_RSO_UNSCOPED_SEES_ALL = env_bool("RSO_UNSCOPED_SEES_ALL", True)
# RSO cases (dosereg.cases): absolute base of the links in alert e-mails.
SITE_URL = env("SITE_URL", "http://localhost:8000")
# The age (days, exam date to now) beyond which a procedure's case is opened in the worklist without e-mail, the
# worklist saying why: a back-fill from the PACS or a re-processing of years of studies must not page the RSO for
# procedures long over. Default 30 days: the clinical follow-up after a substantial radiation dose level is due at
# about 2-4 weeks (NCRP Report 168 (2010), as summarised in docs; not re-read in the primary source), so an e-mail
# about an older exam comes too late to start it; and 30 days is far wider than any listener or PACS forwarding
# delay. 0 turns the limit off (every case e-mails, whatever the exam's age).
ALERT_NOTIFY_MAX_AGE_DAYS = env_int("ALERT_NOTIFY_MAX_AGE_DAYS", 30)

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE_S", 8 * 3600)
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
CSRF_COOKIE_HTTPONLY = True  # pages read the token from the DOM, never from the cookie
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
MIDDLEWARE += ["dosereg.web.middleware.ContentSecurityPolicyMiddleware", "dosereg.web.middleware.NoStoreMiddleware"]

if PRODUCTION:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
    if env_bool("SECURE_PROXY_SSL_HEADER", False):  # TLS terminated by a trusted proxy
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# --- end of web, API and security section -----------------------------------

# Protocol audit outliers (issue 17): a procedure is listed as an outlier of its group when its value is above an
# active DRL or above the group's third quartile times this factor. Version 1 (2026-12), default 1.5: a local
# screening choice, not a published level (ICRP 135 compares medians with DRLs; individual values are for
# review only). Set AUDIT_OUTLIER_Q3_FACTOR (a number > 1) to change it.
AUDIT_OUTLIER_Q3_FACTOR_VERSION = "1 (2026-12)"
try:
    AUDIT_OUTLIER_Q3_FACTOR = float(env("AUDIT_OUTLIER_Q3_FACTOR", "1.5"))
except ValueError as _exc:
    raise ImproperlyConfigured("AUDIT_OUTLIER_Q3_FACTOR must be a number") from _exc
if not (AUDIT_OUTLIER_Q3_FACTOR > 1 and AUDIT_OUTLIER_Q3_FACTOR < 100):
    raise ImproperlyConfigured("AUDIT_OUTLIER_Q3_FACTOR must be above 1 (and below 100)")
