"""Helpers for tests that publish from threads of their own."""

from django.db import connection

from django_realtime import publish


def publish_and_close(*args, **kwargs):
    """Publish from an executor thread, then close its connection (Python 3.13 warns of one left to the GC)."""
    try:
        return publish(*args, **kwargs)
    finally:
        connection.close()
