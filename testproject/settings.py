"""Settings of the demo chat, which the tests also run under real servers.

Environment: DATABASE_URL (default: a SQLite file beside manage.py),
REALTIME_BACKEND (polling, the default; postgres; redis), REDIS_URL (for
redis; default redis://127.0.0.1:6379/0), DJANGO_DEBUG, DJANGO_SECRET_KEY,
DJANGO_ATOMIC_REQUESTS ("1": on), REALTIME_KEEPALIVE and REALTIME_JSON (more
REALTIME settings as a JSON object), DEMO_WITHOUT_DAPHNE ("1": runserver serves WSGI).
"""

import json
import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "demo-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]", "testserver"]

INSTALLED_APPS = [
    "daphne",  # first, so that runserver serves ASGI
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",  # pages on the origins of DEMO_CORS_ORIGINS may stream /events/ (docs/sse.md#cors)
    "django_htmx",  # its static files: htmx and the SSE extension (the ticker page)
    "django_realtime",
    "testproject.chat",
    "testproject.board",  # the live board (docs/live.md)
]
if os.environ.get("DEMO_WITHOUT_DAPHNE") == "1":
    # runserver then serves WSGI, on threads: one of the tested servers (docs/deployment.md).
    INSTALLED_APPS.remove("daphne")

MIDDLEWARE = [
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django_realtime.sse.middleware.GZipMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # Refreshes name the request that caused them, so that its page skips its own (docs/live.md).
    "django_realtime.live.RequestIdMiddleware",
]

# Cross-origin streams (docs/sse.md#cors): the origins, comma-separated, whose pages may
# read /events/ with cookies; none by default.
CORS_ALLOWED_ORIGINS = [origin for origin in os.environ.get("DEMO_CORS_ORIGINS", "").split(",") if origin]
CORS_URLS_REGEX = r"^/events/"
CORS_ALLOW_CREDENTIALS = True
# Which presence member an SSE stream is (docs/sse.md#presence), for fetch on another origin.
CORS_EXPOSE_HEADERS = ["realtime-presence"]

ROOT_URLCONF = "testproject.urls"
WSGI_APPLICATION = "testproject.wsgi.application"
ASGI_APPLICATION = "testproject.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"), conn_max_age=0
    )
}
DATABASES["default"]["ATOMIC_REQUESTS"] = os.environ.get("DJANGO_ATOMIC_REQUESTS") == "1"
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the hubs' polling reads run beside writes; IMMEDIATE avoids
    # "database is locked" when several processes publish at once.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "static/"

REALTIME = {
    "BACKEND": os.environ.get("REALTIME_BACKEND", "polling"),
    "PUBLIC_CHANNELS": ["chat:*", "demo:*", "board:*"],
    # WebSocket clients may publish to the chat rooms, and only there.
    "PUBLISH_CHANNELS": ["chat:*"],
    # Pages are present in the chat rooms, under the nickname they ask for (docs/presence.md),
    # with their user's pk in their info, set by the server: whom one may call (chat/calls.py).
    "PRESENCE_CHANNELS": ["chat:*"],
    "PRESENCE_IDENTITY": "testproject.chat.calls.present_as",
}
# Calls (chat/calls.py): call:<pkA>-<pkB> is for users pkA and pkB alone (docs/webrtc.md).
REALTIME["PAIR_CHANNELS"] = ["call"]
# Their signalling holds both users' IP addresses (ICE candidates): keep it five minutes, longer
# than any call's setup, rather than the log's seven days (docs/webrtc.md#security).
REALTIME["RETENTION"] = {"call:*": {"MAX_AGE": 300, "MAX_EVENTS_PER_CHANNEL": 200}}
if REALTIME["BACKEND"] == "redis":
    REALTIME["OPTIONS"] = {"url": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")}
if "REALTIME_KEEPALIVE" in os.environ:
    REALTIME["KEEPALIVE"] = float(os.environ["REALTIME_KEEPALIVE"])
# More REALTIME settings, as a JSON object: for the tests that run this project.
REALTIME.update(json.loads(os.environ.get("REALTIME_JSON", "{}")))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django_realtime": {"handlers": ["console"], "level": "INFO"}},
}

# Calls: the STUN and TURN servers pages pass to RTCPeerConnection, as JSON (CHAT_ICE_SERVERS),
# e.g. [{"urls": "stun:stun.example.com:3478"}]; none by default, enough on one network.
CALL_ICE_SERVERS = json.loads(os.environ.get("CHAT_ICE_SERVERS", "[]"))
