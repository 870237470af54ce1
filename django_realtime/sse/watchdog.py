"""The SSE slow-client watchdog: cut the connection of a client that stopped reading.

A WSGI server (and uvicorn, hypercorn, granian) writes a stream's chunk
before it asks for the next: a client that stops reading blocks that write
for as long as the kernel's buffers stay full, and holds its seat and its
greenlet or thread meanwhile.  Each stream marks the time its current chunk
was taken (:class:`Write`); every ``WRITE_CHECK`` seconds the watchdog cuts
the connections whose chunk has waited longer than ``SSE_SEND_TIMEOUT``.

The watchdog runs on the hub's ticker (``Hub.on_tick``), not on a timer of
its own: one call per pass of a thread that already wakes for the
keepalives, where a timer would be one more thread per process to start,
stop and restart after a fork.  A stream pays a set insertion when it
starts and two stores per chunk.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Protocol
from weakref import WeakKeyDictionary

from ..conf import realtime_settings

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..hub import Hub

logger = logging.getLogger("django_realtime")

#: Seconds between two looks at the streams' writes, for clients that stopped reading.
WRITE_CHECK = 0.5


class Watched(Protocol):
    """A stream's writes to its client, watched: a client that stops reading blocks them."""

    #: time.monotonic() when the server took the stream's current chunk, or 0 between chunks.
    since: float

    def cut(self) -> None:
        """Cut the connection: the server's blocked write fails and the stream ends."""


class Write:
    """A stream's write to its client, watched, cut by the callable *close*."""

    __slots__ = ("since", "close")

    def __init__(self, close: Callable[[], None]) -> None:
        #: time.monotonic() when the server took the stream's current chunk, or 0 between chunks.
        self.since = 0.0
        #: Cut the connection: the server's blocked write fails and the stream ends.
        self.close = close

    def cut(self) -> None:
        """Cut the connection."""
        self.close()


class Watchdog:
    """Watch the writes of one process's SSE streams and cut those blocked over *send_timeout* seconds."""

    def __init__(self, send_timeout: float | None) -> None:
        #: Seconds a write to a client may block before its connection is cut (None: never).
        self.send_timeout = send_timeout
        #: Connections cut because their client stopped reading, for status and tests.
        self.slow_clients = 0
        self._writes: set[Watched] = set()
        self._next_check = 0.0
        self._lock = threading.Lock()

    def watch(self, close: Callable[[], None]) -> Write | None:
        """Watch a stream's writes; *close* cuts its connection.  Call unwatch() with the result when it ends.

        Return None, watching nothing, when SSE_SEND_TIMEOUT is None.
        """
        write = Write(close)
        return write if self.add(write) else None

    def add(self, write: Watched) -> bool:
        """Watch *write* (a WSGI stream watches its own, sse/views.py) unless SSE_SEND_TIMEOUT is None.

        Return whether it is watched; then unwatch() it when it ends.
        """
        if self.send_timeout is None:
            return False
        with self._lock:
            self._writes.add(write)
        return True

    def unwatch(self, write: Watched | None) -> None:
        if write is not None:
            with self._lock:
                self._writes.discard(write)

    def cut(self) -> None:
        """Count a connection ended because its client stopped reading, by the stream itself (daphne)."""
        with self._lock:
            self.slow_clients += 1

    def tick(self, now: float) -> None:
        """Look at the writes every WRITE_CHECK seconds (the hub's ticker calls this on every pass)."""
        if now >= self._next_check:
            self._next_check = now + WRITE_CHECK
            self.check(now)

    def check(self, now: float) -> None:
        """Cut the connections whose client has not taken a chunk for send_timeout seconds."""
        timeout = self.send_timeout
        if timeout is None:
            return
        with self._lock:
            stuck = [write for write in self._writes if write.since and now - write.since > timeout]
        for write in stuck:
            write.since = 0.0
            logger.info("django_realtime closes an SSE stream whose client has not read for %g s", timeout)
            try:
                write.cut()
            except Exception:
                logger.warning("django_realtime could not close a stream's connection", exc_info=True)
            # Counted once the cut is made: what watches the count may then rely on the stream's state.
            self.cut()


_watchdogs: WeakKeyDictionary[Hub, Watchdog] = WeakKeyDictionary()
_watchdogs_lock = threading.Lock()


def get_watchdog(hub: Hub) -> Watchdog:
    """Return *hub*'s watchdog, created on first use with SSE_SEND_TIMEOUT and run on the hub's ticks.

    One per hub: a new hub (after a fork, or a change of settings) gets a
    new watchdog, with the settings of then.
    """
    watchdog = _watchdogs.get(hub)
    if watchdog is None:
        with _watchdogs_lock:
            watchdog = _watchdogs.get(hub)
            if watchdog is None:
                watchdog = _watchdogs[hub] = Watchdog(realtime_settings.SSE_SEND_TIMEOUT)
                if watchdog.send_timeout is not None:
                    hub.on_tick(watchdog.tick)
    return watchdog
