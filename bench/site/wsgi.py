"""WSGI entry point: ``gunicorn -k gevent -w 1 --worker-connections 2000 bench.site.wsgi``."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.site.settings")
application = get_wsgi_application()

if os.environ.get("BENCH_PRESENCE_PROBE") == "1":  # bench.presence: count the SQL, time the heartbeats
    from bench.site import probe

    probe.install()
