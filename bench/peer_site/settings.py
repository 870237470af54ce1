"""django-eventstream with its event storage on (DjangoModelStorage), as measured in NOTES.md.

Runs from a separate venv (``pip install django-eventstream daphne uvicorn
dj-database-url``).  The runner sets DATABASE_URL; SQLite gets the same
options as the demo project's so both sides write to the same kind of log.
"""

import os

import dj_database_url

SECRET_KEY = "bench-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django_eventstream",
]

# The demo project's stack, less its SSE-aware GZip (no client asks for gzip).
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]

ROOT_URLCONF = "bench.peer_site.urls"
ASGI_APPLICATION = "bench.peer_site.asgi.application"

DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"], conn_max_age=0)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"

EVENTSTREAM_STORAGE_CLASS = "django_eventstream.storage.DjangoModelStorage"
