"""Engage settings: one module, configured by environment variables.

Every value is read through django-environ, which raises ImproperlyConfigured on a value it
cannot parse. Development defaults are safe and embedded (SQLite, a filesystem broker, local
sink gateways); production is `DEBUG=false` plus real `SECRET_KEY`, `DATABASE_URL` and
`CELERY_BROKER_URL`.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import environ
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
VAR_DIR = Path(env.str("ENGAGE_VAR_DIR", default=str(BASE_DIR / "var")))

_DEV_SECRET_KEY = "django-insecure-engage-development-only"
SECRET_KEY = env.str("SECRET_KEY", default=_DEV_SECRET_KEY if DEBUG else "")
if not DEBUG and (len(SECRET_KEY) < 50 or SECRET_KEY.startswith("django-insecure")):
    raise ImproperlyConfigured(
        "SECRET_KEY must be set to a random value of at least 50 characters when DEBUG is off"
    )

# Gateway credentials are stored encrypted with these Fernet keys (communications/secrets.py):
# comma-separated, newest first; older keys still read what they wrote until
# `manage.py gateway_secrets_rotate` has re-written it. New key:
# python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'
_DEV_SECRETS_KEY = "ZW5nYWdlLWRldmVsb3BtZW50LW9ubHktc2VjcmV0cyE="
ENGAGE_SECRETS_KEY = env.str("ENGAGE_SECRETS_KEY", default=_DEV_SECRETS_KEY if DEBUG else "")
if not DEBUG and (not ENGAGE_SECRETS_KEY or _DEV_SECRETS_KEY in ENGAGE_SECRETS_KEY):
    raise ImproperlyConfigured(
        "ENGAGE_SECRETS_KEY must be set (a Fernet key of your own) when DEBUG is off"
    )
try:
    _keys = [Fernet(key.strip()) for key in ENGAGE_SECRETS_KEY.split(",") if key.strip()]
except (ValueError, TypeError):
    _keys = []
if not _keys:
    raise ImproperlyConfigured(
        "ENGAGE_SECRETS_KEY must be one or more comma-separated Fernet keys (32 url-safe "
        "base64-encoded bytes each)"
    )

ALLOWED_HOSTS = env.list(
    "ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"] if DEBUG else []
)
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    # Django's admin with Engage's site: screens by task, the dashboard (config/admin_site.py).
    "config.admin_site.EngageAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    # Staff sign-in: lockout after repeated failures (django-axes) and a TOTP second factor
    # (django-otp), wired in config/staff_auth.py.
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    # django-auditlog, with Engage's admin screen and Celery hooks (config/audit.py).
    "config.audit.AuditlogConfig",
    "members",
    "loyalty",
    "campaigns",
    "communications",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The language of a page from the browser (a signed-in member's own: account_views).
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # request.user.is_verified(): whether this session passed the staff second factor.
    "django_otp.middleware.OTPMiddleware",
    # With ENGAGE_STAFF_2FA on, a session that has not passed it is anonymous (but for the
    # second factor's setup page).
    "config.staff_auth.SecondFactorMiddleware",
    # The audit log's actor and address (after authentication, which sets request.user).
    "config.audit.AuditMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Turns a login refused for lockout into config.staff_auth.lockout_response (429); last,
    # so it sees the flag the authentication signals set on the request.
    "axes.middleware.AxesMiddleware",
    # A view that lost its database connection answers 503 + Retry-After, not 500.
    "config.database_outage.DatabaseOutageMiddleware",
]

if not DEBUG:
    # Serves collected static files in production; runserver serves them in development.
    MIDDLEWARE.insert(1, "whitenoise.middleware.WhiteNoiseMiddleware")

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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

# --- database -------------------------------------------------------------------------------
DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'engage.sqlite3'}")
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded default runs the web server and a worker on one file: WAL lets readers go on
    # while one writes, IMMEDIATE takes the write lock at BEGIN so two writers queue on the busy
    # timeout instead of failing with "database is locked" halfway through a transaction.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Django's own backend with the per-request health check run at most once a second.
    DATABASES["default"]["ENGINE"] = "config.postgresql"
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # PostgreSQL's JIT compiles the large target-group queries anew each time: measured at
    # about 2 s of a 10-condition count over 1M members, more than it ever saved here.
    options = DATABASES["default"].setdefault("OPTIONS", {})
    if env.bool("ENGAGE_PG_JIT", default=False) is False:
        options["options"] = f"{options.get('options', '')} -c jit=off".strip()
    # Statements run through config.sql.prepared_cursor (the app's hot reads) are prepared on
    # their fifth run on a connection, psycopg's own default; Django's cursors never prepare.
    options.setdefault("prepare_threshold", env.int("ENGAGE_PG_PREPARE_THRESHOLD", default=5))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- cache ----------------------------------------------------------------------------------
CACHES = {"default": env.cache_url("CACHE_URL", default="locmemcache://")}

# --- auth, i18n, static ---------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LANGUAGE_CODE = "en"
# The languages of the member's pages and messages (translations in locale/).
LANGUAGES = [("en", "English"), ("ru", "Русский")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
# The admin's theme (config/static/engage/); the apps' own files are in <app>/static/.
STATICFILES_DIRS = [BASE_DIR / "config" / "static"]
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "static")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
    # Feedback attachments are private: served only by views that check who asks
    # (members/services/feedback.py), so never point this at a public media location.
    "feedback": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": env.str("ENGAGE_FEEDBACK_ATTACHMENT_DIR",
                                        default=str(VAR_DIR / "feedback")),
                    "file_permissions_mode": 0o600, "directory_permissions_mode": 0o700},
    },
}

# --- security (production) ------------------------------------------------------------------
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# Staff sign-in (config/staff_auth.py). A username tried from one address fails this many
# times within the cool-off and that pair is locked out until the cool-off has passed since the
# last failure: the admin login answers 429 with Retry-After. A successful login resets it.
AUTHENTICATION_BACKENDS = [
    "config.staff_auth.StaffLockoutBackend",
    "django.contrib.auth.backends.ModelBackend",
]
ENGAGE_STAFF_LOGIN_ATTEMPTS = env.int("ENGAGE_STAFF_LOGIN_ATTEMPTS", default=5)
ENGAGE_STAFF_LOGIN_COOLOFF = timedelta(
    seconds=env.int("ENGAGE_STAFF_LOGIN_COOLOFF", default=15 * 60))
if ENGAGE_STAFF_LOGIN_ATTEMPTS < 1 or ENGAGE_STAFF_LOGIN_COOLOFF.total_seconds() < 1:
    raise ImproperlyConfigured("ENGAGE_STAFF_LOGIN_ATTEMPTS and ENGAGE_STAFF_LOGIN_COOLOFF "
                               "must be at least 1")
AXES_FAILURE_LIMIT = ENGAGE_STAFF_LOGIN_ATTEMPTS
AXES_COOLOFF_TIME = ENGAGE_STAFF_LOGIN_COOLOFF
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "config.staff_auth.lockout_response"
# REMOTE_ADDR, as everywhere in Engage (member sign-in, audit log), never a header the client
# may set. Where the proxy in front does not make it the client's address, all staff share the
# proxy's and the lockout is in effect per username (which anyone may then lock for a while).
AXES_CLIENT_IP_CALLABLE = "config.staff_auth.client_ip"
# Only failures are written (AccessAttempt); a row per successful login would only grow.
AXES_DISABLE_ACCESS_LOG = True
# No "AXES: BEGIN" banner at every start of a command, worker or web process.
AXES_VERBOSE = False
# Staff must pass a TOTP second factor (django-otp) to use the admin; on unless DEBUG.
ENGAGE_STAFF_2FA = env.bool("ENGAGE_STAFF_2FA", default=not DEBUG)
OTP_TOTP_ISSUER = env.str("ENGAGE_STAFF_2FA_ISSUER", default="Engage")
# The devices' admin never shows a key: the setup page shows it once, to its owner.
OTP_ADMIN_HIDE_SENSITIVE_DATA = True

# --- REST API -------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.BasicAuthentication",
    ],
    # An active staff user with the model permission the request needs (config.roles).
    "DEFAULT_PERMISSION_CLASSES": ["config.permissions.StaffModelPermissions"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "config.pagination.NewestFirstCursorPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Engage API",
    "DESCRIPTION": "Loyalty-program marketing: members, target groups, mailings and messages.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Two models call a choice field `source`: name both enums after what they describe.
    "ENUM_NAME_OVERRIDES": {
        "StaticListSourceEnum": "campaigns.models.StaticList.Source",
        "ConsentSourceEnum": "members.models.ConsentSource",
        "MemberStatusEnum": "members.models.Member.Status",
        "VoucherKindEnum": "loyalty.integration.models.Voucher.Kind",
        "MessageStatusEnum": "communications.models.Message.Status",
        "MailingStateEnum": "communications.models.Mailing.State",
        "MailingKindEnum": "communications.models.Mailing.Kind",
        "FeedbackThreadStatusEnum": "members.models.FeedbackThread.Status",
    },
}

# --- Celery ---------------------------------------------------------------------------------
BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    # The embedded default: kombu's filesystem transport, a real queue that survives restarts
    # with nothing to install.
    for sub in ("queue", "processed", "control"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
        # The default 1 s poll makes every batch wait; a directory listing is cheap.
        "polling_interval": 0.1,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # A batch task is acknowledged late; a worker lost mid-batch gets its task redelivered
        # after this timeout, and the claim on message rows keeps that from sending twice.
        "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600),
    }
# Batches go to a queue per channel (`dispatch.<channel>`) so a slow provider never starves
# another; a worker takes every queue listed here unless started with `-Q`, so dedicated
# workers per channel are an operator's choice, not a requirement.
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_QUEUES = [Queue(name) for name in (
    "celery", "dispatch.email", "dispatch.sms", "dispatch.push", "dispatch.viber",
    "dispatch.social")]
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    # Due mailings are rows in the database, so a restarted scheduler loses nothing: each tick
    # starts whatever is due and re-dispatches any sending mailing whose batches went missing.
    "start-due-mailings": {
        "task": "communications.tasks.start_due_mailings",
        "schedule": timedelta(seconds=env.float("ENGAGE_SCHEDULER_TICK", default=5.0)),
    },
    # Watched target groups follow member changes as they happen; this sweep catches what time
    # alone changes (birthdays, "in the last 30 days") and changes made outside the services.
    "refresh-watched-target-groups": {
        "task": "campaigns.tasks.target_groups_reevaluate",
        "schedule": timedelta(seconds=env.float("ENGAGE_WATCH_REFRESH", default=3600.0)),
    },
    # Receipts that never matched a message (an SMS part's, or for a message from before
    # Engage) are kept ENGAGE_RECEIPT_RETENTION_DAYS, then deleted.
    "prune-unmatched-receipts": {
        "task": "communications.tasks.prune_receipts",
        "schedule": timedelta(hours=1),
    },
    # Integration API Idempotency-Keys past ENGAGE_IDEMPOTENCY_TTL.
    "prune-idempotency-keys": {"task": "loyalty.integration.tasks.idempotency_keys_prune",
                               "schedule": timedelta(hours=1)},
    # Events whose nudge was lost, and webhook retries that came due (loyalty/webhooks/).
    "relay-webhooks": {"task": "loyalty.webhooks.tasks.webhooks_relay",
                       "schedule": timedelta(seconds=env.float("ENGAGE_WEBHOOK_RELAY_TICK",
                                                               default=2.0))},
    # Trigger mailings (communications/services/triggers.py): events the ingest's nudge did
    # not bring in yet, and the date rules' occasions of each member's local day.
    "read-trigger-events": {"task": "communications.tasks.read_trigger_events",
                            "schedule": timedelta(seconds=env.float("ENGAGE_TRIGGER_READ_TICK",
                                                                    default=2.0))},
    # Orders recorded since the last pass are credited to the campaign that touched their
    # member last (communications/services/attribution.py).
    "attribute-orders": {"task": "communications.tasks.attribute_orders",
                         "schedule": timedelta(seconds=env.float("ENGAGE_ATTRIBUTION_TICK",
                                                                 default=60.0))},
    "run-date-triggers": {"task": "communications.tasks.run_date_triggers",
                          "schedule": timedelta(seconds=env.float("ENGAGE_DATE_TRIGGER_TICK",
                                                                  default=3600.0))},
    # Each active gateway's provider is probed (connect, log in, let go) and the outcome shown
    # in the gateway list, so a changed password or a dead relay shows before a mailing fails.
    "check-gateways-health": {
        "task": "communications.tasks.check_gateways_health",
        "schedule": timedelta(seconds=env.float("ENGAGE_GATEWAY_HEALTH_INTERVAL",
                                                default=300.0)),
    },
}

# --- Engage ---------------------------------------------------------------------------------
ENGAGE_BATCH_SIZE = env.int("ENGAGE_BATCH_SIZE", default=500)
# A batch goes to the provider in chunks of this many, each marked handed over just before it
# leaves and its results written as they come: a worker killed mid-batch leaves only the chunk
# in flight `unknown`; the rest of its claim goes back to the queue.
ENGAGE_HANDOVER_CHUNK = env.int("ENGAGE_HANDOVER_CHUNK", default=100)
# A mailing to more members than this needs a second person's approval before it is scheduled
# (communications.services.approvals); 0 turns approval off.
ENGAGE_APPROVAL_THRESHOLD = env.int("ENGAGE_APPROVAL_THRESHOLD", default=0)
# A mailing whose estimated cost exceeds what is left of its campaign's budget is refused when
# scheduled (True), or scheduled with a warning (False).
ENGAGE_BUDGET_BLOCK = env.bool("ENGAGE_BUDGET_BLOCK", default=False)
# A campaign's sending mailings pause once its messages cost its budget (the budget cap).
ENGAGE_BUDGET_CAP = env.bool("ENGAGE_BUDGET_CAP", default=True)
# How often (seconds) a worker reads a capped campaign's spend: the most it may overspend is what
# its mailings send in that time.
ENGAGE_BUDGET_CHECK_SECONDS = env.float("ENGAGE_BUDGET_CHECK_SECONDS", default=5.0)
# A mailing's audience is frozen in parts of this many member ids, taken by every free worker.
ENGAGE_AUDIENCE_PART_SIZE = env.int("ENGAGE_AUDIENCE_PART_SIZE", default=125_000)
ENGAGE_SINK_DIR = Path(env.str("ENGAGE_SINK_DIR", default=str(VAR_DIR / "sent-mail")))
# A message claimed by a worker but never confirmed after this long is swept: `unknown` when it
# had been handed to the provider (it may or may not have reached it; reported, not resent),
# back in the queue when it had not.
ENGAGE_CLAIM_TIMEOUT = timedelta(seconds=env.int("ENGAGE_CLAIM_TIMEOUT", default=900))
# A sending mailing whose batches claimed nothing for this long gets its due batches enqueued
# again by the scheduler tick (a worker or the broker lost them; claims make a duplicate
# harmless).
ENGAGE_REDISPATCH_AFTER = timedelta(seconds=env.float("ENGAGE_REDISPATCH_AFTER", default=60.0))
ENGAGE_RECEIPT_RETENTION_DAYS = env.int("ENGAGE_RECEIPT_RETENTION_DAYS", default=30)
# A gateway whose batches reach the provider with nothing this many times in a row is left
# alone (its backup used, if it has one) for this long (`communications/circuits.py`).
ENGAGE_CIRCUIT_FAILURES = env.int("ENGAGE_CIRCUIT_FAILURES", default=5)
ENGAGE_CIRCUIT_OPEN_SECONDS = env.float("ENGAGE_CIRCUIT_OPEN_SECONDS", default=60.0)
if ENGAGE_CIRCUIT_FAILURES < 1 or ENGAGE_CIRCUIT_OPEN_SECONDS <= 0:
    raise ImproperlyConfigured("ENGAGE_CIRCUIT_FAILURES must be at least 1 and "
                               "ENGAGE_CIRCUIT_OPEN_SECONDS above 0")
ENGAGE_DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Engage <noreply@localhost>")
DEFAULT_FROM_EMAIL = ENGAGE_DEFAULT_FROM_EMAIL
# Where members reach Engage from outside: unsubscribe and confirmation links are built on it.
ENGAGE_PUBLIC_URL = env.str("ENGAGE_PUBLIC_URL", default="http://127.0.0.1:8000").rstrip("/")
# Double opt-in: a granted email consent counts only once the member confirmed the address.
ENGAGE_EMAIL_DOUBLE_OPT_IN = env.bool("ENGAGE_EMAIL_DOUBLE_OPT_IN", default=False)
ENGAGE_EMAIL_CONFIRMATION_MAX_AGE = env.int("ENGAGE_EMAIL_CONFIRMATION_MAX_AGE",
                                            default=7 * 24 * 3600)
# The gateway (by name) that sends transactional email such as confirmations; blank means the
# first active email gateway.
# Member sign-in (members/services/sign_in.py): one-time codes and their limits.
ENGAGE_SIGN_IN_CODE_TTL = timedelta(seconds=env.int("ENGAGE_SIGN_IN_CODE_TTL", default=600))
ENGAGE_SIGN_IN_CODE_ATTEMPTS = env.int("ENGAGE_SIGN_IN_CODE_ATTEMPTS", default=5)
ENGAGE_SIGN_IN_CODES_PER_ADDRESS = env.int("ENGAGE_SIGN_IN_CODES_PER_ADDRESS", default=5)
ENGAGE_SIGN_IN_CODES_PER_IP = env.int("ENGAGE_SIGN_IN_CODES_PER_IP", default=30)
ENGAGE_SIGN_IN_FAILURES_PER_IP = env.int("ENGAGE_SIGN_IN_FAILURES_PER_IP", default=50)
# Web-push subscriptions whose push service is this machine (the loopback peers of tests and
# benchmarks, a local push service in development); refused in production.
ENGAGE_PUSH_ALLOW_LOOPBACK = env.bool("ENGAGE_PUSH_ALLOW_LOOPBACK", default=DEBUG)
ENGAGE_PROGRAM_NAME = env.str("ENGAGE_PROGRAM_NAME", default="Engage Club")
# The largest attachment a member or an agent may add to a feedback message (5 MB).
ENGAGE_FEEDBACK_ATTACHMENT_MAX_BYTES = env.int("ENGAGE_FEEDBACK_ATTACHMENT_MAX_BYTES",
                                               default=5 * 1024 * 1024)
if ENGAGE_FEEDBACK_ATTACHMENT_MAX_BYTES < 1:
    raise ImproperlyConfigured("ENGAGE_FEEDBACK_ATTACHMENT_MAX_BYTES must be at least 1")
ENGAGE_TRANSACTIONAL_EMAIL_GATEWAY = env.str("ENGAGE_TRANSACTIONAL_EMAIL_GATEWAY", default="")
# django-anymail: the basic auth ("user:password") email services must send with their tracking
# webhooks (hooks/anymail/<esp>/tracking/); unset, those webhooks refuse every call. ESP
# credentials are per gateway, in its settings.
ANYMAIL = {"WEBHOOK_SECRET": env.str("ANYMAIL_WEBHOOK_SECRET", default="")}
if ANYMAIL["WEBHOOK_SECRET"] and ":" not in ANYMAIL["WEBHOOK_SECRET"]:
    raise ImproperlyConfigured("ANYMAIL_WEBHOOK_SECRET must be user:password (HTTP basic auth)")
# Inbound SMS that withdraw SMS consent, compared case-insensitively to the whole message.
ENGAGE_SMS_STOP_KEYWORDS = env.list(
    "ENGAGE_SMS_STOP_KEYWORDS",
    default=["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "STOPP", "ARRET",
             "ARRÊT", "BAJA", "СТОП", "ОТПИСАТЬСЯ", "ОТПИСКА"],
)
# Outgoing webhooks (loyalty/webhooks/): receivers on private or loopback addresses are refused
# unless this is on (development and tests call loopback receivers).
ENGAGE_WEBHOOK_ALLOW_PRIVATE = env.bool("ENGAGE_WEBHOOK_ALLOW_PRIVATE", default=DEBUG)
ENGAGE_WEBHOOK_TIMEOUT = env.float("ENGAGE_WEBHOOK_TIMEOUT", default=10.0)
# A worker's claim on deliveries lasts their timeouts plus this; then a dead worker's are retaken.
ENGAGE_WEBHOOK_LEASE_MARGIN = env.float("ENGAGE_WEBHOOK_LEASE_MARGIN", default=30.0)
# A subscription whose every attempt failed for this many days is disabled and its owner told.
ENGAGE_WEBHOOK_DISABLE_AFTER_DAYS = env.float("ENGAGE_WEBHOOK_DISABLE_AFTER_DAYS", default=5.0)
# After a secret is rotated, the previous one still signs deliveries for this long.
ENGAGE_WEBHOOK_PREVIOUS_SECRET_HOURS = env.float("ENGAGE_WEBHOOK_PREVIOUS_SECRET_HOURS",
                                                 default=24.0)
# How many calls one worker process has in flight at once while it sends a claimed batch.
ENGAGE_WEBHOOK_IN_FLIGHT = env.int("ENGAGE_WEBHOOK_IN_FLIGHT", default=64)
if ENGAGE_WEBHOOK_IN_FLIGHT < 1:
    raise ImproperlyConfigured("ENGAGE_WEBHOOK_IN_FLIGHT must be at least 1")
# The platforms' endpoints of the webhook connectors (loyalty/webhooks/connectors/); changed
# for an EU Segment workspace, and for the loopback peers of tests. Mailchimp's is a template
# of the account's data center, the suffix of its API key.
ENGAGE_KLAVIYO_URL = env.str("ENGAGE_KLAVIYO_URL", default="https://a.klaviyo.com/api/events")
ENGAGE_MAILCHIMP_URL = env.str("ENGAGE_MAILCHIMP_URL",
                               default="https://{dc}.api.mailchimp.com/3.0")
if "{dc}" not in ENGAGE_MAILCHIMP_URL:
    raise ImproperlyConfigured("ENGAGE_MAILCHIMP_URL must hold {dc}, the data center")
ENGAGE_SEGMENT_URL = env.str("ENGAGE_SEGMENT_URL", default="https://api.segment.io/v1/track")
# How long an audience count may run before the preview shows PostgreSQL's estimate instead.
ENGAGE_SEGMENT_COUNT_TIMEOUT = env.float("ENGAGE_SEGMENT_COUNT_TIMEOUT", default=5.0)
# Large counts run in this many parts at once (one connection each), from this many member ids.
ENGAGE_SEGMENT_COUNT_WORKERS = env.int("ENGAGE_SEGMENT_COUNT_WORKERS", default=os.cpu_count() or 1)
ENGAGE_SEGMENT_SPLIT_MIN = env.int("ENGAGE_SEGMENT_SPLIT_MIN", default=200_000)
# Integration API: how long an Idempotency-Key's first answer is replayed, and how long a
# rotated API key keeps working beside its successor.
ENGAGE_IDEMPOTENCY_TTL = timedelta(seconds=env.int("ENGAGE_IDEMPOTENCY_TTL", default=86_400))
ENGAGE_API_KEY_ROTATION_GRACE = timedelta(
    seconds=env.int("ENGAGE_API_KEY_ROTATION_GRACE", default=86_400))

# --- audit log (django-auditlog, config/audit.py) -----------------------------------------
# Who changed what and when, with the before and after of each changed field, for the models
# the back office is accountable for. Left out: what the pipeline writes on its own (a
# mailing's run times, a gateway's health, positions in the event log), which would bury
# people's changes; masked whole: sealed secrets, so an entry says a secret was set or
# changed and never what it is; left out: the API key's hash.
# Consents are not here: `Consent` is the current state derived from the `ConsentEvent`
# ledger, which already records every grant and withdrawal with its actor (the staff user),
# source, time, address and wording, is never changed, and is written by bulk imports that
# no signal sees. A log of `Consent` rows would repeat each ledger row less completely and
# put a read and a write on the member's own preferences call.
_MAILING_RUN_FIELDS = ["started_at", "completed_at", "failure_reason", "last_dispatch_at",
                       "messages_expired_at"]
AUDITLOG_INCLUDE_TRACKING_MODELS = (
    "campaigns.Campaign",
    {"model": "campaigns.TargetGroup", "exclude_fields": ["updated_at"]},
    # The state stays: a person's schedule, pause, resume and cancel are logged; the
    # pipeline's moves of it happen in Celery tasks, which write no entries (config/audit.py).
    {"model": "communications.Mailing", "exclude_fields": _MAILING_RUN_FIELDS},
    {"model": "communications.Trigger", "exclude_fields": ["read_until"]},
    {"model": "communications.Template", "exclude_fields": ["updated_at"]},
    {"model": "communications.Gateway", "mask_fields": ["secrets"],
     "exclude_fields": ["last_health_ok", "last_health_at", "last_health_detail"]},
    {"model": "loyalty.ApiKey", "exclude_fields": ["key_hash", "last_used_at"]},
    {"model": "loyalty.WebhookSubscription",
     "mask_fields": ["secret_encrypted", "previous_secret_encrypted", "credentials_encrypted"],
     "exclude_fields": ["relayed_until", "failing_since", "healthy_since",
                        "probe_at"]},
)
AUDITLOG_MASK_CALLABLE = "config.audit.secret_mask"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # Phone numbers and email addresses masked in every line (config/log_redaction.py).
    "formatters": {"plain": {"()": "config.log_redaction.RedactingFormatter",
                             "format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}
