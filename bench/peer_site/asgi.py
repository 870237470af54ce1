"""ASGI entry point for daphne or uvicorn: django-eventstream streams only under ASGI."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.peer_site.settings")
application = get_asgi_application()
