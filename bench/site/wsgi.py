"""WSGI entry point: ``gunicorn -k gevent -w 1 --worker-connections 2000 bench.site.wsgi``."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.site.settings")
application = get_wsgi_application()
