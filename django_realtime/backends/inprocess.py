"""Wake-ups within one process only: right for a single worker or tests."""

from __future__ import annotations

from .base import BaseBackend


class InProcessBackend(BaseBackend):
    """Wake this process's hub after each commit; other processes never hear."""

    def notify(self, channel: str, event_id: int) -> None:
        self.wake_local(channel)
