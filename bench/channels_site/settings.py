"""The demo's settings (same database, middleware and allowed hosts), less django-realtime, plus a channel layer.

The runner sets DATABASE_URL (a fresh SQLite file) and DJANGO_DEBUG=0, and
BENCH_LAYER_CAPACITY (the in-memory layer's per-channel capacity) if asked.
"""

import os

from testproject.settings import *  # noqa: F403

INSTALLED_APPS = [app for app in INSTALLED_APPS if app not in ("django_realtime", "testproject.chat")]  # noqa: F405
ROOT_URLCONF = "bench.channels_site.urls"
ASGI_APPLICATION = "bench.channels_site.asgi.application"

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "bench.channels_site.layers.CountingInMemoryChannelLayer",
        # The default, 100 messages per consumer, would be enough at 20 events/s
        # for a consumer that keeps up; raised so only a stalled one could lose.
        "CONFIG": {"capacity": int(os.environ.get("BENCH_LAYER_CAPACITY", "1000"))},
    }
}
