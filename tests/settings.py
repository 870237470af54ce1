"""Settings for the test suite: the demo's, on a throwaway SQLite file."""

from testproject.settings import *  # noqa: F403

REALTIME = {**REALTIME, "PRUNE_INTERVAL": None}  # noqa: F405
