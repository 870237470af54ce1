"""The surface every wake-up backend provides.

A backend never carries event data: the log is the source of truth and a
notification only tells each process's hub to look again.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from django.db import transaction

if TYPE_CHECKING:
    from ..hub import Hub
    from ..models import Event


class BaseBackend:
    """Tell every process's hub when the log may hold new events."""

    #: Seconds between two unprompted reads of the log by the hub, or None.
    poll_interval: float | None = None

    def published(self, event: Event, using: str) -> None:
        """Arrange for *event*'s wake-up to go out once its transaction commits."""
        transaction.on_commit(partial(self.notify, event.channel, event.id), using=using)

    def notify(self, channel: str, event_id: int) -> None:
        """Wake every process's hub: *channel* has a committed event *event_id*."""
        raise NotImplementedError("subclasses of BaseBackend must provide a notify() method")

    def start(self, hub: Hub) -> None:
        """Begin calling ``hub.poke()`` whenever another process publishes."""
        raise NotImplementedError("subclasses of BaseBackend must provide a start() method")

    def stop(self) -> None:
        """Stop listening; the hub is shutting down."""
