"""An ASGI application that serves HTTP only, as ``startproject`` writes it: for tests/test_templatetags.py."""

from django.core.asgi import get_asgi_application

application = get_asgi_application()
