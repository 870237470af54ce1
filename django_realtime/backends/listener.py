"""The part the postgres and redis backends share: one listening connection per process.

A wake-up goes to a name of the event's channel's own (``name_for``) and to
one name for all (``global_name``).  A process listens to the names of the
channels its streams follow, and only those, so an event wakes only the
processes that have a subscriber for it: the cost of an event does not grow
with the number of processes.  A process that follows more than
``max_channels`` channels listens to the name for all instead, and wakes its
hub only for the channels it follows (the wake-up says which).  Processes of
a release before this one listen to the name for all too.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from typing import TYPE_CHECKING

from .base import BaseBackend

if TYPE_CHECKING:
    from collections.abc import Callable

logger = logging.getLogger("django_realtime")


class Listening:
    """One run of a backend's listener, from start() to stop(): what it wakes and whether it hears."""

    def __init__(self, wake: Callable[[], None], using: str) -> None:
        self.wake = wake
        self.using = using
        #: Set while wake-ups flow.
        self.listening = threading.Event()
        self.stopping = threading.Event()
        #: The listening connection while there is one, for interrupt().
        self.connection: object = None


class ListenerBackend(BaseBackend):
    """Listen on one connection per process; poll the log while it is down.

    Subclasses provide ``listen(run)``: connect, call ``subscribed(run)``
    once wake-ups flow, call ``run.wake()`` for each, and return or raise
    when the connection ends or ``run.stopping`` is set.  This class
    reconnects with backoff and has the hub read the log after every change,
    so no wake-up lost in between can hold an event back.
    """

    #: Name of the service, for log messages.
    service = "the notification service"
    #: Seconds a listener waits for a wake-up before it looks at what its process follows now.
    FOLLOW_CHECK = 0.25

    def __init__(
        self, fallback_interval: float = 1.0, heartbeat: float = 5.0, max_channels: int = 1000, global_name: str = ""
    ) -> None:
        super().__init__()
        #: The name every wake-up also goes to.
        self.global_name = global_name
        #: Past this many followed channels, a process listens to global_name rather than to each.
        self.max_channels = max_channels
        #: Set when the followed channels change: the listener listens to the new set.
        self.changed = threading.Event()
        self.fallback_interval = fallback_interval
        #: Seconds of silence after which listen() checks that its connection still answers, and
        #: how long the answer may take: a connection that a network partition or a hung server
        #: keeps open but silent is then dropped, and the hub polls until a new one listens.
        self.heartbeat = heartbeat
        self._run: Listening | None = None
        self._backoff = 0.1

    @property
    def poll_interval(self) -> float | None:  # type: ignore[override]
        run = self._run
        return None if run is not None and run.listening.is_set() else self.fallback_interval

    @property
    def listening(self) -> bool:
        """Return whether wake-ups from other processes flow now."""
        run = self._run
        return run is not None and run.listening.is_set()

    def follow(self, channel: str) -> None:
        super().follow(channel)
        self.changed.set()

    def unfollow(self, channel: str) -> None:
        super().unfollow(channel)
        self.changed.set()

    def name_for(self, channel: str) -> str:
        """Return the name wake-ups for *channel* go to: short, whatever the channel's length (PostgreSQL: 63 bytes)."""
        return f"{self.global_name}:{hashlib.sha1(channel.encode()).hexdigest()[:20]}"

    def names(self, channel: str) -> tuple[str, str]:
        """Return every name a wake-up for *channel* goes to."""
        return (self.name_for(channel), self.global_name)

    def wanted(self) -> set[str]:
        """Return the names this process should listen to now (see the module's docstring)."""
        followed = list(self.followed)
        if len(followed) > self.max_channels:
            return {self.global_name}
        return {self.name_for(channel) for channel in followed}

    def heard(self, run: Listening, payload: str) -> None:
        """Wake the hub for a wake-up that says ``"<channel> <id>"``, if this process follows the channel."""
        if payload.partition(" ")[0] in self.followed:
            run.wake()

    def start(self, wake: Callable[[], None], using: str) -> None:
        super().start(wake, using)
        self.stop_listening()
        run = self._run = Listening(wake, using)
        threading.Thread(target=self._loop, args=(run,), name="django-realtime-listen", daemon=True).start()

    def stop(self) -> None:
        super().stop()
        self.stop_listening()

    def stop_listening(self) -> None:
        """End the current listener, if any; a later start() begins a new one."""
        run, self._run = self._run, None
        if run is not None:
            run.stopping.set()
            self.interrupt(run)

    def interrupt(self, run: Listening) -> None:
        """Cut short a listen() that blocks; the default waits for its next timeout."""

    def listen(self, run: Listening) -> None:
        """Hold one listening connection until it ends or *run* stops."""
        raise NotImplementedError("subclasses of ListenerBackend must provide a listen() method")

    def subscribed(self, run: Listening) -> None:
        """Note that wake-ups flow, and have the hub read what came while none did."""
        run.listening.set()
        self._backoff = 0.1
        run.wake()

    def _loop(self, run: Listening) -> None:
        while not run.stopping.is_set():
            try:
                self.listen(run)
            except Exception:
                if run.stopping.is_set():
                    break
                logger.warning("%s listener lost; polling the log until it is back", self.service, exc_info=True)
            finally:
                run.listening.clear()
                run.wake()
            run.stopping.wait(self._backoff)
            self._backoff = min(self._backoff * 2, 5.0)
