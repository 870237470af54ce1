"""The demo's settings with the benchmark's URLconf, for gunicorn (``wsgi``) and daphne (``asgi``).

The runner sets DATABASE_URL (a fresh SQLite file by default), REALTIME_BACKEND
and DJANGO_DEBUG=0 in the environment; the demo settings read them.
"""

from testproject.settings import *  # noqa: F403

ROOT_URLCONF = "bench.site.urls"
WSGI_APPLICATION = "bench.site.wsgi.application"
ASGI_APPLICATION = "bench.site.asgi.application"
# Retention is not what is measured: keep the hub from pruning mid-run.
# user:<i> are bench.per_user's channels, one per stream.
REALTIME = {
    **REALTIME,  # noqa: F405
    "PRUNE_INTERVAL": None,
    "PUBLIC_CHANNELS": [*REALTIME["PUBLIC_CHANNELS"], "user:*"],  # noqa: F405
}
