"""The surface every wake-up backend provides.

A backend never carries event data: the log is the source of truth and a
notification only tells each process's hub to look again.  A backend gets
its options in its constructor and, from the hub, the callable that wakes
it (``start(wake, using)``); it never imports the hub.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import transaction

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..models import Event


class BaseBackend:
    """Tell every process's hub when the log may hold new events."""

    #: Seconds between two unprompted reads of the log by the hub, or None.
    poll_interval: float | None = None
    #: A PostgreSQL LISTEN channel that the INSERT of each event should NOTIFY, or None.
    insert_notify: str | None = None
    _wake: Callable[[], None] | None = None

    def published(self, event: Event, using: str, *, notified: bool = False) -> None:
        """Arrange for *event*'s wake-up to go out once its transaction commits.

        *notified* says that the INSERT already sent the ``insert_notify`` NOTIFY.
        """
        channel, event_id = event.channel, event.id
        transaction.on_commit(lambda: self.notify(channel, event_id), using=using)

    def notify(self, channel: str, event_id: int) -> None:
        """Wake every process's hub: *channel* has a committed event *event_id*."""
        raise NotImplementedError("subclasses of BaseBackend must provide a notify() method")

    def start(self, wake: Callable[[], None], using: str) -> None:
        """Begin calling *wake* whenever another process publishes to the log in database *using*.

        Subclasses that listen extend this; every backend keeps *wake* so
        that a publish in this process wakes this process's hub at once.
        """
        self._wake = wake

    def stop(self) -> None:
        """Stop listening; the hub is shutting down."""
        self._wake = None

    def wake_local(self) -> None:
        """Wake this process's hub, if one is running."""
        wake = self._wake
        if wake is not None:
            wake()
