"""Wharf's one settings module.

Every difference between environments is an environment variable (see `.env.example`). In
production they come from the process environment alone, and a missing secret stops start-up
naming it. Only under the embedded development stack (DEVSTACK=1, which `make run` and the tests
set) are two files read beneath the environment: `.env` in the project root, then `var/stack.env`,
which `make run` writes so that `manage.py` commands run beside it reach the same database and
S3/SQS endpoint. The production image builds its static files with WHARF_BUILD=1, which needs no
secret and no database. `core/checks.py` refuses development endpoints in production.
"""

from pathlib import Path
from urllib.parse import quote, urlsplit

import environ
from botocore.config import Config

from core.logging import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
# Only the process environment says whether this is the development stack: never a file.
DEVSTACK = env.bool("DEVSTACK", default=False)
BUILD = env.bool("WHARF_BUILD", default=False)
PRODUCTION = not (DEVSTACK or BUILD)
if DEVSTACK:
    environ.Env.read_env(BASE_DIR / ".env")
    environ.Env.read_env(VAR_DIR / "stack.env")


def _or_default(name: str, cast: type, default):
    """A variable, or `default` when it is unset or empty (as `.env.example` leaves some)."""
    return env(name, cast=cast) if env.str(name, default="") else default


def _secret(name: str) -> str:
    """A secret: required in production (its absence stops start-up, naming it), else may be empty."""
    return env.str(name) if PRODUCTION else env.str(name, default="")


# -- core ---------------------------------------------------------------------------------------
DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="build-only-not-a-secret") if BUILD else env.str("SECRET_KEY")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# HTTPS everywhere in production (each can be turned off from the environment); off by default
# under the development stack, which serves plain HTTP on loopback.
SECURE_SSL_REDIRECT = _or_default("SECURE_SSL_REDIRECT", bool, PRODUCTION)
# The load balancer's health checks come over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^livez/?$", r"^healthz/?$"]
SECURE_HSTS_SECONDS = _or_default("SECURE_HSTS_SECONDS", int, 31536000 if PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = _or_default("SECURE_HSTS_INCLUDE_SUBDOMAINS", bool, PRODUCTION)
SECURE_HSTS_PRELOAD = _or_default("SECURE_HSTS_PRELOAD", bool, PRODUCTION)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = _or_default("SECURE_COOKIES", bool, PRODUCTION)
# Proxies in front of the web (an AWS load balancer: 1). Only then are their X-Forwarded-Proto and
# X-Forwarded-For believed: the scheme below, the client's address in core/network.py.
TRUSTED_PROXY_COUNT = _or_default("TRUSTED_PROXY_COUNT", int, 0)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if TRUSTED_PROXY_COUNT else None
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
ADMINS = [("Operators", address) for address in env.list("ADMINS", default=[])]
# /readyz (config/health.py): each process asks its dependencies at most once per this many
# seconds; with a token, only a request carrying it (Authorization: Bearer) gets an answer.
READINESS_CACHE_S = env.float("READINESS_CACHE_S", default=5.0)
READINESS_TOKEN = env.str("READINESS_TOKEN", default="")

TIME_ZONE = "UTC"
USE_TZ = True
LANGUAGE_CODE = "en-us"
USE_I18N = True

INSTALLED_APPS = [
    "config.apps.WharfAdminConfig",  # Django's admin, landing operators on the inbox
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's and ReDoc's files, served by Wharf (no CDN)
    "django_celery_results",
    "axes",
    "core",
    "config.apps.PlatformConfig",
    "contacts",
    "messaging",
    "campaigns",
    "archival",
    "dashboard",
]
# The embedded development stack (`make run`, the tests) adds its commands; never in production.
if DEVSTACK:
    INSTALLED_APPS.append("devstack")

MIDDLEWARE = [
    "config.probes.LivezMiddleware",  # first: /livez answers without touching anything else
    "core.logging.RequestIdMiddleware",  # first: every later line of a request carries its id
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # Before anything reads a body (the CSRF check reads a form): too long is refused unread.
    "core.uploads.UploadLimitMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its lockout response.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "core.permissions.PermissionsBackend",  # ModelBackend's permissions in one query
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

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

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
# STORAGES, with the bucket's media, reports and archive, follows the AWS settings below.
# Serve static files from the apps' folders when collectstatic has not run (tests, a bare checkout).
WHITENOISE_USE_FINDERS = True

# -- database -----------------------------------------------------------------------------------
DATABASES = {
    "default": env.db_url("DATABASE_URL", default="postgres://build@build/build")
    if BUILD
    else env.db_url("DATABASE_URL")
}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

# Rate limits (API throttling) are shared by every web process, so the cache lives in PostgreSQL.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.db.DatabaseCache",
        "LOCATION": "wharf_cache",
    }
}

# -- AWS: S3 and SQS ----------------------------------------------------------------------------
# AWS_ENDPOINT_URL points both at a local emulator (moto's server); unset in production.
AWS_ENDPOINT_URL = env.str("AWS_ENDPOINT_URL", default="") or None
AWS_REGION = env.str("AWS_REGION", default="us-east-1")
AWS_STORAGE_BUCKET_NAME = env.str("AWS_STORAGE_BUCKET_NAME", default="wharf")
AWS_CLIENT_TIMEOUT_S = env.float("AWS_CLIENT_TIMEOUT_S", default=5.0)
SQS_QUEUE_PREFIX = env.str("SQS_QUEUE_PREFIX", default="wharf-")
SQS_WAIT_TIME_SECONDS = env.int("SQS_WAIT_TIME_SECONDS", default=10)

# -- Celery on SQS ------------------------------------------------------------------------------


def _sqs_broker_url() -> str:
    """`sqs://` for AWS (credentials from the usual chain), or one aimed at AWS_ENDPOINT_URL."""
    if not AWS_ENDPOINT_URL:
        return "sqs://"
    endpoint = urlsplit(AWS_ENDPOINT_URL)
    key = quote(env.str("AWS_ACCESS_KEY_ID", default="testing"), safe="")
    secret = quote(env.str("AWS_SECRET_ACCESS_KEY", default="testing"), safe="")
    return f"sqs://{key}:{secret}@{endpoint.netloc}"


CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="") or _sqs_broker_url()
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# kombu's SQS transport, made to create lost queues again (with their DLQs) instead of failing.
CELERY_BROKER_TRANSPORT = "core.sqs_transport:Transport" if CELERY_BROKER_URL.startswith("sqs://") else None
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "region": AWS_REGION,
    "is_secure": not (AWS_ENDPOINT_URL or "").startswith("http://"),
    "queue_name_prefix": SQS_QUEUE_PREFIX,
    "wait_time_seconds": SQS_WAIT_TIME_SECONDS,
    "visibility_timeout": 300,
    "polling_interval": 1,
    # Publishing fails fast when SQS is unreachable or frozen: one try to open the channel (kombu's
    # default retries for 4 s) and one botocore attempt with short timeouts (its default read
    # timeout is 60 s, past gunicorn's 30 s). A webhook must not wait on the broker; what it would
    # have woken is a row that the sweeper finds. These are the blocking calls (send, ack, queue
    # lookups); workers receive through kombu's own HTTP client with the long poll's timeout, and
    # retry their own connection apart.
    "max_retries": 0,
    "client-config": {
        "connect_timeout": 1,
        "read_timeout": 2,
        "retries": {"mode": "standard", "total_max_attempts": 1},
    },
}
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_CREATE_MISSING_QUEUES = False
CELERY_TASK_ACKS_LATE = True
# A failed task is rejected, not acked: SQS redelivers it until its redrive policy moves it to
# the queue's DLQ (see core/queues.py).
CELERY_TASK_ACKS_ON_FAILURE_OR_TIMEOUT = False
CELERY_TASK_ACKS_ON_FAILURE = False  # the two settings that replace the one above in Celery 6
CELERY_TASK_ACKS_ON_TIMEOUT = False
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_SEND_TASK_EVENTS = False
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# django-celery-results' table; a database that is down while a result is stored (core/results.py)
# is retried instead of stopping the worker, for about five minutes (each wait up to 10 s, jittered).
CELERY_RESULT_BACKEND = "core.results:DatabaseResultBackend"
CELERY_RESULT_EXTENDED = True
CELERY_RESULT_BACKEND_ALWAYS_RETRY = True
CELERY_RESULT_BACKEND_MAX_RETRIES = 60
# Results are deleted by core.task_results_sweep in bounded batches (RETENTION_TASK_RESULTS_DAYS),
# not by Celery's own daily cleanup, which deletes them all in one statement.
CELERY_RESULT_EXPIRES = None
CELERY_TIMEZONE = TIME_ZONE


def _crontab(expression: str):
    """A beat schedule from five cron fields (minute hour day-of-month month day-of-week), in UTC."""
    from celery.schedules import crontab

    fields = expression.split()
    if len(fields) != 5:
        raise environ.ImproperlyConfigured(
            f"{expression!r} is not five cron fields (minute hour dom month dow)"
        )
    minute, hour, day_of_month, month_of_year, day_of_week = fields
    return crontab(
        minute=minute,
        hour=hour,
        day_of_month=day_of_month,
        month_of_year=month_of_year,
        day_of_week=day_of_week,
    )


CELERY_BEAT_SCHEDULE_FILENAME = env.str(
    "CELERY_BEAT_SCHEDULE_FILENAME", default=str(VAR_DIR / "celerybeat-schedule")
)
# Workers log through LOGGING (config/celery.py), and print() goes straight to stdout.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_REDIRECT_STDOUTS = False
CELERY_BEAT_SCHEDULE = {
    "inbound-events-sweep": {"task": "messaging.inbound_events_sweep", "schedule": 30.0},
    "media-fetch-sweep": {"task": "messaging.media_fetch_sweep", "schedule": 300.0},
    "ratelimit-sweep": {"task": "messaging.ratelimit_sweep", "schedule": 600.0},
    "outbound-sweep": {"task": "messaging.outbound_sweep", "schedule": 30.0},
    "conversations-wake": {"task": "messaging.conversations_wake", "schedule": 30.0},
    "templates-sync": {"task": "messaging.templates_sync", "schedule": 3600.0},
    "phone-numbers-sync": {"task": "messaging.phone_numbers_sync", "schedule": 3600.0},
    "campaigns-tick": {"task": "campaigns.campaigns_tick", "schedule": 5.0},
    "campaign-reports-refresh": {"task": "campaigns.campaign_reports_refresh", "schedule": 60.0},
}
# Retention (core/retention.py, messaging/retention.py): what only records the past is deleted
# this many days after it happened, a batch of RETENTION_BATCH_SIZE rows per statement, on
# RETENTION_SCHEDULE (cron fields, UTC). Failed and pending webhook bodies are kept.
RETENTION_INBOUND_EVENTS_DAYS = env.int("RETENTION_INBOUND_EVENTS_DAYS", default=30)
RETENTION_PENDING_STATUSES_DAYS = env.int("RETENTION_PENDING_STATUSES_DAYS", default=7)
RETENTION_WEBHOOK_EVENTS_DAYS = env.int("RETENTION_WEBHOOK_EVENTS_DAYS", default=90)
RETENTION_TASK_RESULTS_DAYS = env.int("RETENTION_TASK_RESULTS_DAYS", default=7)
RETENTION_BATCH_SIZE = env.int("RETENTION_BATCH_SIZE", default=5000)
RETENTION_SCHEDULE = env.str("RETENTION_SCHEDULE", default="40 * * * *")
CELERY_BEAT_SCHEDULE["retention-sweep"] = {
    "task": "messaging.retention_sweep",
    "schedule": _crontab(RETENTION_SCHEDULE),
}
CELERY_BEAT_SCHEDULE["task-results-sweep"] = {
    "task": "core.task_results_sweep",
    "schedule": _crontab(RETENTION_SCHEDULE),
}
# Task modules that are not an app's tasks.py, which autodiscovery finds by itself.
CELERY_IMPORTS = ["messaging.media", "messaging.templates"]
CELERY_TASK_ROUTES = {
    "messaging.inbound_*": {"queue": "incoming"},
    "messaging.media_*": {"queue": "incoming"},
    "messaging.ratelimit_*": {"queue": "outgoing"},
    "messaging.outbound_*": {"queue": "outgoing"},
    "messaging.templates_*": {"queue": "default"},
    "messaging.phone_number*": {"queue": "default"},
    "messaging.backlog_*": {"queue": "default"},
    "messaging.conversations_*": {"queue": "default"},
    "messaging.read_receipt_*": {"queue": "default"},
    "messaging.retention_*": {"queue": "default"},
    "core.*": {"queue": "default"},
    "archival.*": {"queue": "archival"},
    "campaigns.*": {"queue": "default"},
    "dashboard.*": {"queue": "analytics"},
}

# -- WhatsApp (Meta's Cloud API) ----------------------------------------------------------------
WHATSAPP_APP_SECRET = _secret("WHATSAPP_APP_SECRET")
WHATSAPP_VERIFY_TOKEN = _secret("WHATSAPP_VERIFY_TOKEN")
WHATSAPP_ACCESS_TOKEN = _secret("WHATSAPP_ACCESS_TOKEN")
WHATSAPP_GRAPH_URL = env.str("WHATSAPP_GRAPH_URL", default="https://graph.facebook.com/v23.0")
WHATSAPP_HTTP_TIMEOUT_S = env.float("WHATSAPP_HTTP_TIMEOUT_S", default=10.0)
# Least time between two messages from one sender number to one recipient (Meta answers 131056
# when a pair goes faster: about one per 6 s sustained, bursts of up to 45 borrowed from later).
WHATSAPP_RECIPIENT_SPACING_S = env.float("WHATSAPP_RECIPIENT_SPACING_S", default=1.0)
# Pace each sender this many percent under its limit, so late sends never crowd one of Meta's seconds.
WHATSAPP_RATE_HEADROOM_PCT = env.float("WHATSAPP_RATE_HEADROOM_PCT", default=2.0)
# Largest media file downloaded from the Graph API (Meta's largest, documents, is 100 MB).
WHATSAPP_MEDIA_MAX_BYTES = env.int("WHATSAPP_MEDIA_MAX_BYTES", default=100 * 1024 * 1024)
# Media fetches: tries after the first, and the first backoff in seconds (doubled each time, with
# jitter, and capped below SQS's 900 s delay limit).
MEDIA_FETCH_MAX_RETRIES = env.int("MEDIA_FETCH_MAX_RETRIES", default=10)
MEDIA_FETCH_BACKOFF_S = env.float("MEDIA_FETCH_BACKOFF_S", default=10.0)
# Where the sandbox and `manage.py sandbox_inbound` post webhooks: this platform's own endpoint.
SANDBOX_WEBHOOK_URL = env.str("SANDBOX_WEBHOOK_URL", default="http://127.0.0.1:8000/webhooks/whatsapp/")
# Inbound texts that opt a contact out or back in (compared case-insensitively, whole message).
WHATSAPP_OPT_OUT_KEYWORDS = env.list("WHATSAPP_OPT_OUT_KEYWORDS", default=["STOP", "UNSUBSCRIBE"])
WHATSAPP_OPT_IN_KEYWORDS = env.list("WHATSAPP_OPT_IN_KEYWORDS", default=["START"])
# Webhook bodies above this size are refused with 413.
WEBHOOK_MAX_BODY_BYTES = env.int("WEBHOOK_MAX_BODY_BYTES", default=5 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = WEBHOOK_MAX_BODY_BYTES + 1024
# Uploads (core/uploads.py): files to send (WhatsApp's largest, documents; each type's own limit is
# Meta's, messaging/outbound/content.py) and CSV files (contacts, campaign audiences). A multipart
# request longer than the larger of the two and its form is refused unread; files past
# FILE_UPLOAD_MAX_MEMORY_SIZE are spooled to disk while a request is parsed.
MEDIA_UPLOAD_MAX_BYTES = env.int("MEDIA_UPLOAD_MAX_BYTES", default=100 * 1024 * 1024)
CSV_UPLOAD_MAX_BYTES = env.int("CSV_UPLOAD_MAX_BYTES", default=50 * 1024 * 1024)
UPLOAD_MAX_BYTES = max(MEDIA_UPLOAD_MAX_BYTES, CSV_UPLOAD_MAX_BYTES) + 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
# Inbound processing: events claimed per batch, and tries before an event is marked failed.
INBOUND_BATCH_SIZE = env.int("INBOUND_BATCH_SIZE", default=100)
INBOUND_MAX_ATTEMPTS = env.int("INBOUND_MAX_ATTEMPTS", default=5)

# -- storage layout (one bucket) ----------------------------------------------------------------
MEDIA_INCOMING_PREFIX = env.str("MEDIA_INCOMING_PREFIX", default="whatsapp-media/whatsapp-media-incoming/")
MEDIA_OUTGOING_PREFIX = env.str("MEDIA_OUTGOING_PREFIX", default="whatsapp-media/whatsapp-media-outgoing/")
REPORTS_PREFIX = env.str("REPORTS_PREFIX", default="reports/")
ARCHIVE_PREFIX = env.str("ARCHIVE_PREFIX", default="archive/")
# Archival: messages and media older than these many days move to the archive prefix, on these
# schedules (cron fields, UTC; "*/2" in the day of month: every other day).
ARCHIVE_MESSAGES_AFTER_DAYS = env.int("ARCHIVE_MESSAGES_AFTER_DAYS", default=90)
ARCHIVE_MEDIA_AFTER_DAYS = env.int("ARCHIVE_MEDIA_AFTER_DAYS", default=30)
ARCHIVE_MESSAGES_SCHEDULE = env.str("ARCHIVE_MESSAGES_SCHEDULE", default="0 2 */2 * *")
ARCHIVE_MEDIA_SCHEDULE = env.str("ARCHIVE_MEDIA_SCHEDULE", default="0 3 */2 * *")
# Days archived or restored at once, each on a database connection of its own.
ARCHIVE_WORKERS = env.int("ARCHIVE_WORKERS", default=2)
# The dashboard's daily counters: today's and yesterday's made again from the analytics events.
DASHBOARD_ROLLUP_INTERVAL_S = env.int("DASHBOARD_ROLLUP_INTERVAL_S", default=300)
CELERY_BEAT_SCHEDULE["dashboard-stats-rollup"] = {
    "task": "dashboard.stats_recent_rollup",
    "schedule": float(DASHBOARD_ROLLUP_INTERVAL_S),
}
CELERY_BEAT_SCHEDULE["archive-media"] = {
    "task": "archival.media_archive",
    "schedule": _crontab(ARCHIVE_MEDIA_SCHEDULE),
}
CELERY_BEAT_SCHEDULE["archive-messages"] = {
    "task": "archival.messages_archive",
    "schedule": _crontab(ARCHIVE_MESSAGES_SCHEDULE),
}
# Presigned URLs for media, reports and archives expire after this many seconds (core/storage.py).
PRESIGNED_URL_EXPIRY_S = env.int("PRESIGNED_URL_EXPIRY_S", default=300)

# The bucket's files through django-storages (core/storage.py: what each storage holds, and why
# its class is a small subclass of S3Storage). Private: no ACLs, SigV4 presigned URLs only.
# Path-style addressing reaches moto's server on a loopback port; AWS itself gets boto3's choice.
# Timeouts and retries are those of core/aws.py's clients.
_S3_OPTIONS = {
    "bucket_name": AWS_STORAGE_BUCKET_NAME,
    "endpoint_url": AWS_ENDPOINT_URL,
    "region_name": AWS_REGION,
    "default_acl": None,
    "querystring_auth": True,
    "querystring_expire": PRESIGNED_URL_EXPIRY_S,
    "file_overwrite": True,  # a name is written again by a retry, never renamed
    "client_config": Config(
        signature_version="s3v4",
        s3={"addressing_style": "path" if AWS_ENDPOINT_URL else "auto"},
        connect_timeout=AWS_CLIENT_TIMEOUT_S,
        read_timeout=AWS_CLIENT_TIMEOUT_S,
        retries={"total_max_attempts": 3, "mode": "standard"},
        max_pool_connections=20,
        ignore_configured_endpoint_urls=True,  # AWS_ENDPOINT_URL above is the only one
    ),
}
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
    "media": {"BACKEND": "core.storage.S3Storage", "OPTIONS": {**_S3_OPTIONS, "location": ""}},
    "reports": {
        "BACKEND": "core.storage.S3Storage",
        "OPTIONS": {**_S3_OPTIONS, "location": REPORTS_PREFIX},
    },
    "archive": {"BACKEND": "core.storage.S3Storage", "OPTIONS": {**_S3_OPTIONS, "location": ""}},
}

# -- contacts -----------------------------------------------------------------------------------
# Region used to read phone numbers written without a leading "+" (ISO 3166 code, e.g. "GB").
PHONE_DEFAULT_REGION = env.str("PHONE_DEFAULT_REGION", default="") or None

# -- API ----------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["core.api.ModelPermissions"],
    "DEFAULT_PARSER_CLASSES": [
        "core.api.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.AnonRateThrottle",
        "rest_framework.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.str("API_THROTTLE_ANON", default="60/min"),
        "user": env.str("API_THROTTLE_USER", default="1200/min"),
    },
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "core.api.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.api_errors.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Wharf API",
    "DESCRIPTION": "Contacts, conversations and campaigns on the WhatsApp Business Platform.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and its pages are for signed-in users (an API token or the console's session).
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    # Swagger UI and ReDoc come from drf-spectacular-sidecar's static files: the docs work offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Bodies are documented as JSON (forms are taken too, but cannot carry the nested fields);
    # uploads name multipart/form-data themselves.
    "PARSER_WHITELIST": ["core.api.JSONParser"],
    # Every operation documents its error answers (400, 401, 403, 404, 415, 429): core.api.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "core.api.error_responses_add",
    ],
    # Choice sets that share a field name ("status", "channel") get names of their own.
    "ENUM_NAME_OVERRIDES": {
        "ContactChannelEnum": "contacts.models.Channel",
        "MessageStatusEnum": "messaging.models.Message.Status",
        "ConversationStatusEnum": "messaging.models.Conversation.Status",
        "CallStatusEnum": "messaging.models.Call.Status",
    },
}

# -- login protection (django-axes) -------------------------------------------------------------
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("AXES_COOLOFF_HOURS", default=0.25)
# Failures are counted per client address and per username, each locking on its own: one address
# trying many usernames is stopped, and so is one username tried from many addresses.
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]
# The client's address behind TRUSTED_PROXY_COUNT proxies (REMOTE_ADDR is the load balancer's).
AXES_CLIENT_IP_CALLABLE = "core.network.client_address"
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False

# -- email --------------------------------------------------------------------------------------
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
EMAIL_USE_SSL = env.bool("EMAIL_USE_SSL", default=False)
EMAIL_TIMEOUT = env.float("EMAIL_TIMEOUT_S", default=10.0)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="wharf@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# -- email and SMS channels (messaging/channels) --------------------------------------------------
# This site's public address, for links in messages (unsubscribe): https in production.
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="http://127.0.0.1:8000").rstrip("/")
# Pace of each channel across every worker, in messages per second.
EMAIL_RATE_PER_S = env.float("EMAIL_RATE_PER_S", default=14.0)
SMS_RATE_PER_S = env.float("SMS_RATE_PER_S", default=1.0)
# AWS End User Messaging SMS (pinpoint-sms-voice-v2); the endpoint is the sandbox's under `make run`.
SMS_ENDPOINT_URL = env.str("SMS_ENDPOINT_URL", default="") or None
SMS_ORIGINATION_IDENTITY = env.str("SMS_ORIGINATION_IDENTITY", default="")
SMS_MESSAGE_TYPE = env.str("SMS_MESSAGE_TYPE", default="PROMOTIONAL")
SMS_CONFIGURATION_SET = env.str("SMS_CONFIGURATION_SET", default="")
SMS_HTTP_TIMEOUT_S = env.float("SMS_HTTP_TIMEOUT_S", default=10.0)
# Inbound SMS (through SNS) reach /webhooks/sms/ with this as basic auth's password; unset: 404.
SMS_WEBHOOK_TOKEN = env.str("SMS_WEBHOOK_TOKEN", default="")
# SNS topics whose inbound SMS the webhook accepts; empty: none (`make run` names the sandbox's).
SMS_SNS_TOPIC_ARNS = env.list("SMS_SNS_TOPIC_ARNS", default=[])
# Signed SNS messages older than this (by their Timestamp) are refused as replays.
SMS_SNS_MAX_AGE_S = env.int("SMS_SNS_MAX_AGE_S", default=3600)
# Check SNS's signature on every message (its certificate fetched once from sns.<region>.amazonaws.com),
# and where else certificates may come from (the sandbox's, locally).
SMS_SNS_VERIFY_SIGNATURES = env.bool("SMS_SNS_VERIFY_SIGNATURES", default=True)
SMS_SNS_CERT_URL_PREFIXES = env.list("SMS_SNS_CERT_URL_PREFIXES", default=[])
SMS_OPT_OUT_KEYWORDS = env.list(
    "SMS_OPT_OUT_KEYWORDS", default=["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"]
)

# -- the backlog's metrics and /healthz?verbose (messaging/backlog.py, config/probes.py) -----------
# CloudWatch namespace of the backlog's metrics, published by beat every METRICS_INTERVAL_S seconds;
# unset: none are published.
METRICS_NAMESPACE = env.str("METRICS_NAMESPACE", default="")
METRICS_INTERVAL_S = env.float("METRICS_INTERVAL_S", default=60.0)
if METRICS_NAMESPACE:
    CELERY_BEAT_SCHEDULE["backlog-publish"] = {
        "task": "messaging.backlog_publish",
        "schedule": METRICS_INTERVAL_S,
        "options": {"expires": METRICS_INTERVAL_S},  # a late one is replaced by the next
    }
# Besides staff users, a caller sending `Authorization: Bearer <HEALTHZ_TOKEN>` sees the backlog on
# /healthz?verbose; unset: staff users only.
HEALTHZ_TOKEN = env.str("HEALTHZ_TOKEN", default="")

# -- logging: JSON lines (or plain text) on stdout, secrets redacted (core/logging.py) ------------
LOG_FORMAT = env.str("LOG_FORMAT", default="") or ("plain" if DEVSTACK else "json")
LOGGING = logging_config(log_format=LOG_FORMAT, level=env.str("LOG_LEVEL", default="INFO"))

# -- queues (core/queues.py holds their specs) -------------------------------------------------
from kombu import Queue  # noqa: E402

from core.queues import QUEUES  # noqa: E402

CELERY_TASK_QUEUES = [Queue(name, routing_key=name) for name in QUEUES]
