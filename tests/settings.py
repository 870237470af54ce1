"""Settings for the test suite: the demo's, on a throwaway SQLite file."""

import os
import tempfile

from testproject.settings import *  # noqa: F403

REALTIME = {**REALTIME, "PRUNE_INTERVAL": None}  # noqa: F405

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file, not the in-memory default: the hub reads from its own thread,
    # and shared-cache in-memory SQLite locks whole tables between threads.
    DATABASES["default"]["TEST"] = {  # noqa: F405
        "NAME": os.path.join(tempfile.gettempdir(), f"django_realtime_test_{os.getpid()}.sqlite3")
    }
