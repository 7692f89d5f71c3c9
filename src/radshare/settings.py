"""Django settings, made from the validated ``RADSHARE_*`` configuration (``radshare.core.config``)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from django.utils.csp import CSP
from django.utils.translation import gettext_lazy as _

from radshare.core import config as _config
from radshare.core.keys import Purpose, derive

RADSHARE = _config.load()

BASE_DIR = Path(__file__).resolve().parent
DATA_DIR = Path(RADSHARE.data_dir)
# Sessions, CSRF and signing get a key of their own; old keys still verify (docs/security.md, key rotation).
SECRET_KEY = derive(RADSHARE.secret_key, Purpose.SESSIONS).hex()
SECRET_KEY_FALLBACKS = [derive(old, Purpose.SESSIONS).hex() for old in RADSHARE.old_secret_keys]
DEBUG = False
BASE_URL = RADSHARE.base_url
_base = urlsplit(BASE_URL)
HTTPS = _base.scheme == "https"

ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]", _base.hostname or "localhost", *RADSHARE.allowed_hosts]

INSTALLED_APPS = [
    "radshare.organisations.apps.OperatorAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_tasks_db",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "ninja",  # its docs page then serves Swagger UI from our own static files, not a CDN
    "radshare.core",
    "radshare.audit",
    "radshare.organisations",
    "radshare.studies",
    "radshare.imaging",
    "radshare.pacs",
    "radshare.shares",
    "radshare.delivery",
    "radshare.recipients",
    "radshare.viewer",
    "radshare.downloads",
    "radshare.api",
    "radshare.trail",
    "radshare.runtime",
]

MIDDLEWARE = [
    # Outermost: hands the database connection back once the response is built, not after it is sent.
    "radshare.core.connections.ReleaseConnectionMiddleware",
    "radshare.core.middleware.TrustedProxyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "radshare.core.middleware.RequestLogMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "radshare.core.middleware.RoleMiddleware",
    # Django's, but a request that changes nothing writes no session row (core/sessions.py).
    "radshare.core.sessions.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    # A recipient's pages in the share's language, unless the language switch was used (recipients/middleware.py).
    "radshare.recipients.middleware.ShareLanguageMiddleware",
    "django.middleware.common.CommonMiddleware",
    "radshare.core.middleware.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "radshare.core.middleware.NoStoreMiddleware",
    "radshare.api.middleware.ApiMethodNotAllowedMiddleware",
    # Holds a session at its second login step (docs/security.md A9); after the headers' middleware, so that its
    # redirect carries them too.
    "radshare.organisations.auth.SecondFactorMiddleware",
    # Last: answers 413 for a body radshare.asgi refused, before anything reads it (core/middleware.py).
    "radshare.core.middleware.BodyLimitMiddleware",
]

ROOT_URLCONF = "radshare.urls"
ASGI_APPLICATION = "radshare.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.csp",
            ],
        },
    },
]

DATABASES = {
    "default": _config.database_settings(RADSHARE.database_url, DATA_DIR, RADSHARE.database_pool_size)
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "organisations.Sender"
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "organisations:login"
LOGIN_REDIRECT_URL = "portal:studies"
LOGOUT_REDIRECT_URL = "organisations:login"
# Wrong second-step codes are limited like passwords (organisations/two_factor.py); django-otp's own per-device
# back-off would refuse a right code after a stranger's wrong ones.
OTP_TOTP_THROTTLE_FACTOR = 0

TASKS = {
    "default": {
        "BACKEND": "django_tasks_db.DatabaseBackend",
        "QUEUES": ["default"],
    }
}

LANGUAGE_CODE = "nl"
LANGUAGES = [("nl", _("Dutch")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "Europe/Amsterdam"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = False

# Sessions: staff sessions end after 8 idle hours, recipients' after 30 minutes (recipients/session.py). They slide
# without a write per request: saved when changed or when the stored expiry lags a minute (core/sessions.py).
SESSION_ENGINE = "radshare.core.sessions"
SESSION_COOKIE_AGE = 8 * 3600
SESSION_SAVE_EVERY_REQUEST = False
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
CSRF_COOKIE_HTTPONLY = True
CSRF_TRUSTED_ORIGINS = [f"{_base.scheme}://{_base.netloc}"] + [
    f"{_base.scheme}://{h}" for h in RADSHARE.allowed_hosts if not h.startswith(".")
]
if HTTPS:
    SESSION_COOKIE_NAME = "__Host-sessionid"
    CSRF_COOKIE_NAME = "__Host-csrftoken"
# Believed only from RADSHARE_TRUSTED_PROXIES: TrustedProxyMiddleware drops the header from anyone else, and
# sends HSTS whenever the base URL is https (docs/security.md A25).
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "no-referrer"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
}

DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        # One JSON object a line (RADSHARE_LOG_FORMAT=json): the same messages and only the fields named in
        # core/logs.py, so the same hygiene (docs/security.md A21).
        "json": {"()": "radshare.core.logs.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": RADSHARE.log_format}},
    "root": {"handlers": ["console"], "level": RADSHARE.log_level},
    "loggers": {
        # Django's request logger repeats the full path with its query string: ours logs without it.
        "django.request": {"level": "ERROR"},
        "django.server": {"level": "ERROR"},
        "pynetdicom": {"level": "WARNING"},
        # At INFO/DEBUG these log study UIDs and query URLs with patient names and ids (docs/security.md A21).
        "dicomweb_client": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
    },
}
