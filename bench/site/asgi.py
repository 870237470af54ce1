"""ASGI entry point: ``daphne bench.site.asgi:application`` (the demo's HTTP and /ws/, plus the publish endpoint)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.site.settings")

from testproject.asgi import application  # noqa: E402

__all__ = ["application"]
