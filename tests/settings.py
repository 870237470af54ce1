"""Settings for the test suite: the demo's, on a throwaway SQLite file, plus PostgreSQL when it answers."""

import os
import tempfile

from testproject.settings import *  # noqa: F403
from tests.support.services import MARIADB, POSTGRES, answers, mysql_driver

# The package's own identity hook, not the demo's (which adds info.pk): the tests of
# presence are of the package. The demo's is tested under its servers (test_webrtc.py).
REALTIME = {**REALTIME, "PRUNE_INTERVAL": None, "PRESENCE_IDENTITY": "django_realtime.presence.identify"}  # noqa: F405

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file, not the in-memory default: the hub reads from its own thread,
    # and shared-cache in-memory SQLite locks whole tables between threads.
    DATABASES["default"]["TEST"] = {  # noqa: F405
        "NAME": os.path.join(tempfile.gettempdir(), f"django_realtime_test_{os.getpid()}.sqlite3")
    }

if answers(POSTGRES):
    # Tests that need PostgreSQL ask for this alias (databases=["default", "postgres"]).
    DATABASES["postgres"] = {  # noqa: F405
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "test",
        "USER": "postgres",
        "HOST": POSTGRES[0],
        "PORT": POSTGRES[1],
        "TEST": {"NAME": f"test_django_realtime_{os.getpid()}"},
    }

if answers(MARIADB) and mysql_driver():
    # Tests that need MariaDB (or MySQL) ask for this alias (databases=["default", "mysql"]).
    DATABASES["mysql"] = {  # noqa: F405
        "ENGINE": "django.db.backends.mysql",
        "NAME": "test",
        "USER": "root",
        "HOST": MARIADB[0],
        "PORT": MARIADB[1],
        "OPTIONS": {"charset": "utf8mb4"},
        "TEST": {"NAME": f"test_django_realtime_{os.getpid()}", "CHARSET": "utf8mb4"},
    }
