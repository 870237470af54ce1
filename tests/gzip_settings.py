"""Settings of the servers tests/test_middleware.py starts: the demo's, with Django's own GZipMiddleware.

What ``django_realtime.W001`` warns about, for a test to show it is real.
"""

from testproject.settings import *  # noqa: F403

MIDDLEWARE = [  # noqa: F405
    "django.middleware.gzip.GZipMiddleware" if path == "django_realtime.sse.middleware.GZipMiddleware" else path
    for path in MIDDLEWARE  # noqa: F405
]
