"""dosereg settings: everything comes from the environment, with safe defaults.

With nothing configured the whole system runs on one machine: SQLite in ./var,
Celery tasks executed in-process, e-mail printed to the console. Set
DATABASE_URL / REDIS_URL / EMAIL_URL for the production path.
"""
from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


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
SECRET_KEY = env("SECRET_KEY")
if not SECRET_KEY:
    if env_bool("DOSEREG_PRODUCTION", False):
        raise ImproperlyConfigured("SECRET_KEY must be set in production")
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
    "dosereg.notifications",
    "dosereg.exposure",
    "dosereg.staff",
    "dosereg.audit",
    "dosereg.web",
    "dosereg.protocols",
    "dosereg.cases",
    "dicom_listener",
    "dosereg.ops",
]

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
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))}
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
CELERY_BROKER_URL = REDIS_URL or "memory://"
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
# Celery's Django fixup closes the database connection after every task unless told to reuse it;
# reconnecting cost PostgreSQL ~25 ms of CPU per ingested object. Connections that broke or outlived
# DB_CONN_MAX_AGE are still closed before each task (dosereg.ops.receivers.refresh_db_connections).
# The ingest worker does the follow-up work of an object (exposure recompute and alerts, staff sync)
# itself right after the ingest commits, instead of queueing further tasks (falls back to queueing on error).
INGEST_DERIVED_INLINE = env_bool("INGEST_DERIVED_INLINE", True)
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 1_000_000)
CELERY_BEAT_SCHEDULE = {
    "sweep-spool": {"task": "dosereg.sweep_spool", "schedule": timedelta(seconds=env_int("SWEEP_INTERVAL_S", 60))},
    "notification-digest": {"task": "dosereg.send_notification_digest", "schedule": timedelta(days=1)},
    "sweep-notifications": {"task": "dosereg.sweep_notifications", "schedule": timedelta(minutes=5)},
    "exposure-follow-up-reminders": {"task": "dosereg.exposure_follow_up_reminders", "schedule": timedelta(hours=1)},
    "case-follow-up-reminders": {"task": "dosereg.case_follow_up_reminders", "schedule": timedelta(hours=1)},
    "exposure-refresh-now-windows": {"task": "dosereg.exposure_refresh_now_windows", "schedule": timedelta(days=1)},
    "refresh-protocol-summaries": {"task": "dosereg.refresh_protocol_summaries", "schedule": timedelta(minutes=1)},
}

# --- DICOM listener ----------------------------------------------------------
DICOM_AE_TITLE = env("DICOM_AE_TITLE", "DOSEREG")
DICOM_BIND_ADDRESS = env("DICOM_BIND_ADDRESS", "0.0.0.0")
DICOM_PORT = env_int("DICOM_PORT", 11112)
# Calling AE titles allowed to associate. "*" allows any caller (not recommended).
DICOM_ALLOWED_CALLING_AES = env_list("DICOM_ALLOWED_CALLING_AES", "STORESCU,DOSEREG_DEMO,BACKFILL")
DICOM_MAX_PDU = env_int("DICOM_MAX_PDU", 0)
DICOM_MAX_OBJECT_BYTES = env_int("DICOM_MAX_OBJECT_BYTES", 512 * 1024 * 1024)
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
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)

# --- patient identity ----------------------------------------------------------
# When set, patient identifiers are stored as HMAC-SHA256 pseudonyms, never in clear.
# Phantom, QA and test exposures (OpenREM's "not-patient indicators"): a regular expression searched, case-insensitive,
# in the Patient ID and the Patient's Name (^ = _ read as spaces). A match marks the study "not a patient": kept
# and alerted like any other, left out of the protocol audit, DRL comparisons and device trends. Empty: off.
NOT_PATIENT_PATTERN = env("NOT_PATIENT_PATTERN", r"\b(phantom|qa|qc|calibration|constancy)\b")
PSEUDONYMISE_PATIENTS = env_bool("PSEUDONYMISE_PATIENTS", False)
PSEUDONYM_SECRET = env("PSEUDONYM_SECRET", "")
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
        "rest_framework.authentication.TokenAuthentication",
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
DOSEREG_LOGIN_MAX_FAILURES = env_int("LOGIN_MAX_FAILURES", 5)             # per username
DOSEREG_LOGIN_MAX_FAILURES_PER_IP = env_int("LOGIN_MAX_FAILURES_PER_IP", 30)
DOSEREG_LOGIN_LOCKOUT_S = env_int("LOGIN_LOCKOUT_S", 900)
# Only behind a reverse proxy that overwrites X-Forwarded-For.
DOSEREG_TRUST_X_FORWARDED_FOR = env_bool("TRUST_X_FORWARDED_FOR", False)
# Patient portal: natural background used for "about N days of background" (dose-standards.md §7.3).
DOSEREG_BACKGROUND_MSV_PER_YEAR = float(env("BACKGROUND_MSV_PER_YEAR", "3.1"))
DOSEREG_BACKGROUND_SOURCE = env("BACKGROUND_SOURCE", "average natural background in the United States (NCRP Report 160)")
DOSEREG_PORTAL_INVITE_DAYS = env_int("PORTAL_INVITE_DAYS", 14)
# Patient portal PDF: a TrueType font with the characters of names and units (Ø, ł, Greek, Gy·cm²);
# when it cannot be loaded the PDF falls back to a core font with transliteration.
DOSEREG_PORTAL_PDF_FONT = env("PORTAL_PDF_FONT", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
# RSO site scoping (dosereg.web.scope): an RSO without a site assignment sees every site when true
# (existing installations, the demo), nothing when false. Assign sites in the admin (Web › Site assignments).
DOSEREG_RSO_UNSCOPED_SEES_ALL = env_bool("RSO_UNSCOPED_SEES_ALL", True)
# RSO cases (dosereg.cases): absolute base of the links in alert e-mails, and the age (days) beyond which a
# procedure's case is opened without e-mail (back-fills, re-processing; 0 = no limit)
SITE_URL = env("SITE_URL", "http://localhost:8000")
ALERT_NOTIFY_MAX_AGE_DAYS = env_int("ALERT_NOTIFY_MAX_AGE_DAYS", 0) or None

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
MIDDLEWARE += ["dosereg.web.middleware.ContentSecurityPolicyMiddleware"]

if env_bool("DOSEREG_PRODUCTION", False):
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
    if env_bool("SECURE_PROXY_SSL_HEADER", False):  # TLS terminated by a trusted proxy
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# --- end of web, API and security section -----------------------------------
