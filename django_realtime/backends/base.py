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
    _wake: Callable[[], None] | None = None

    def __init__(self) -> None:
        #: The channels this process's streams follow (the hub keeps it up to date): a wake-up
        #: for any other channel has nothing to wake here.
        self.followed: set[str] = set()

    def insert_notify(self, channel: str) -> tuple[str, ...]:
        """Return the PostgreSQL LISTEN channels the INSERT of an event on *channel* should NOTIFY (none)."""
        return ()

    def follow(self, channel: str) -> None:
        """Start waking the hub for *channel*'s events: a stream of this process follows it now."""
        self.followed.add(channel)

    def unfollow(self, channel: str) -> None:
        """Stop waking the hub for *channel*: no stream of this process follows it any more."""
        self.followed.discard(channel)

    def published(self, event: Event, using: str, *, notified: bool = False) -> None:
        """Arrange for *event*'s wake-up to go out once its transaction commits.

        *notified* says that the INSERT already sent the ``insert_notify`` NOTIFY.
        """
        channel, event_id = event.channel, event.id
        transaction.on_commit(lambda: self.notify(channel, event_id), using=using)

    def notify(self, channel: str, event_id: int) -> None:
        """Wake the hub of every process that follows *channel*: it has a committed event *event_id*."""
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

    def wake_local(self, channel: str | None = None) -> None:
        """Wake this process's hub, if one is running and follows *channel* (any, if None)."""
        wake = self._wake
        if wake is not None and (channel is None or channel in self.followed):
            wake()
