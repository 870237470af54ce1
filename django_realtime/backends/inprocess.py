"""Wake-ups within one process only: right for a single worker or tests."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import hub as hub_module
from .base import BaseBackend

if TYPE_CHECKING:
    from ..hub import Hub


class InProcessBackend(BaseBackend):
    """Poke this process's hub after each commit; other processes never hear."""

    def notify(self, channel: str, event_id: int) -> None:
        hub_module.poke_local_hub()

    def start(self, hub: Hub) -> None:
        """Nothing to listen to: notify() pokes the hub directly."""
