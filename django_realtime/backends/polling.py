"""The embedded default: each hub reads the log every POLL_INTERVAL seconds.

Works with any database and no other service.  Publishes in this process
still wake the hub at once; those of other processes (``publish_event``,
cron, other workers) arrive within one interval.  The cost is one indexed
query per interval per process, not per stream.
"""

from __future__ import annotations

from ..conf import realtime_settings
from .inprocess import InProcessBackend


class PollingBackend(InProcessBackend):
    """Read the log on a timer, and at once after a local publish."""

    def __init__(self, interval: float | None = None) -> None:
        super().__init__()
        self.poll_interval = interval if interval is not None else realtime_settings.POLL_INTERVAL
