"""Settings for the demo shop, read from the environment.

Required in production: SECRET_KEY, DATABASE_URL, ALLOWED_HOSTS. With DJANGO_DEBUG=1 or under
`manage.py test` missing values fall back to local development defaults.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from demo.dburl import parse_database_url

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = os.environ.get("DJANGO_DEBUG", "") == "1"
TESTING = len(sys.argv) > 1 and sys.argv[1] == "test"


def _required(name: str, development_default: str) -> str:
    """The variable's value; outside development and tests a missing one stops the start."""
    value = os.environ.get(name, "")
    if value:
        return value
    if DEBUG or TESTING:
        return development_default
    raise ImproperlyConfigured(f"environment variable {name} is required")


SECRET_KEY = _required("SECRET_KEY", "development-only-key-not-for-production")
ALLOWED_HOSTS = [h.strip() for h in _required("ALLOWED_HOSTS", "localhost,127.0.0.1").split(",") if h.strip()]
DATABASES = {"default": parse_database_url(_required("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"))}

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "shop",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "demo.middleware.RequestLogMiddleware",
]

ROOT_URLCONF = "demo.urls"
WSGI_APPLICATION = "demo.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
TEMPLATES: list[dict[str, object]] = []

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LOG_LEVEL = os.environ.get("LOG_LEVEL", "WARNING" if TESTING else "INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "demo.logs.JsonFormatter"}},
    "handlers": {
        "stdout": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout", "formatter": "json"},
    },
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        "django.server": {"handlers": [], "level": "WARNING", "propagate": False},
        "django.request": {"handlers": ["stdout"], "level": "ERROR", "propagate": False},
    },
}
