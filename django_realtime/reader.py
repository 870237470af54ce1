"""The hub's reader: the one thread (a greenlet under gevent) of a process that queries the log.

A reader is watched by the hub's ticker (:meth:`Hub._supervise`), which
never waits on the database.  A reader whose query has run longer than
``READ_TIMEOUT`` is interrupted where the driver allows it and, in any case,
replaced: the hub forgets it (it may stay blocked until the network gives
its socket back) and starts another, with a connection of its own.  A
reader that ends for any reason other than the hub's ``stop()`` is replaced
too.  A replaced reader changes nothing when it comes back: the hub only
takes rows from its current reader.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Protocol

from django.db import DatabaseError, connections

from . import metrics
from .daemon import Daemon
from .db import interrupt, release_connections
from .eventlog import PAGE, PAGE_BYTES, GapTailer, Row, pruned_after, tailer_for

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

    from .cursor import Cursor

logger = logging.getLogger("django_realtime")

#: Seconds between two attempts to read a log that failed, at first...
RETRY_FIRST = 0.1
#: ...and at most: delivery resumes within about this long of the database's return.
RETRY_MOST = 1.0
#: Seconds behind a publishing transaction in flight after which the reader logs a warning.
WAITING_WARNING = 10.0


class Host(Protocol):
    """What a reader needs of its hub (``hub.Hub``)."""

    using: str
    cursor: Cursor
    next_read: float
    reads: int
    rows_read: int
    stopping: bool

    @property
    def ready(self) -> bool: ...
    def take_poke(self) -> bool: ...
    def wait_poke(self, timeout: float) -> None: ...
    def started(self, cursor: Cursor) -> None: ...
    def read_succeeded(self) -> None: ...
    def read_failed(self, exc: BaseException) -> None: ...
    def read_every(self) -> float: ...
    def begin_catch_up(self) -> int: ...
    def end_catch_up(self, number: int) -> None: ...
    def append(
        self,
        rows: list[Row],
        before: Cursor,
        after: Cursor,
        source: Reader | None = None,
        pruned: dict[str, int] | None = None,
    ) -> bool: ...


class Reader:
    """One run of the hub's reading thread."""

    def __init__(self, hub: Host) -> None:
        self.hub = hub
        self.tailer = tailer_for(hub.using)
        if metrics.wants_stamps():
            self.tailer.stamps = {}
        #: Set by the hub when it replaced this reader: change nothing, end.
        self.superseded = False
        #: When the current query (or connect) began, or None between queries.
        self.busy_since: float | None = None
        #: The connection the current query runs on, for interrupt().
        self.connection: BaseDatabaseWrapper | None = None
        #: The tailer's waiting_since when the reader last warned of it.
        self.warned: float | None = None
        #: Since when the tailer has waited at a gap (held back), and when the reader last warned of that.
        self.held_since: float | None = None
        self.warned_held: float | None = None
        #: Asked whether it runs on every stream's request: a Daemon answers without switching (daemon.py).
        self.daemon = Daemon(self.run, "django-realtime-hub")
        self.thread = self.daemon.thread

    def start(self) -> None:
        self.daemon.start()

    def alive(self) -> bool:
        return self.daemon.alive()

    def run(self) -> None:
        hub = self.hub
        backoff = RETRY_FIRST
        started: Cursor | None = None
        try:
            while not (self.superseded or hub.stopping):
                poked = hub.take_poke()
                try:
                    self._begin()
                    if not hub.ready:
                        if started is None:
                            started = self.tailer.start_horizon(wait=False)
                        if self.tailer.settled_start() and not self.superseded:
                            hub.started(started)
                    elif poked or time.monotonic() >= hub.next_read:
                        self._read_new()
                        self._warn_if_held_back()
                        # After the read: a gap it found asks for a recheck soon.
                        hub.next_read = time.monotonic() + hub.read_every()
                    self._end()
                    if not self.superseded:
                        hub.read_succeeded()
                    backoff = RETRY_FIRST
                except Exception as exc:
                    self._end()
                    release_connections()
                    if self.superseded or hub.stopping:
                        break
                    # A database hiccup must not end delivery: log it and read
                    # again, from the same horizon, soon.  A listener that
                    # reconnects pokes the hub and cuts the wait short.
                    hub.read_failed(exc)
                    metrics.log_read_failed()
                    logger.error(
                        "django_realtime hub could not read the event log; retrying in %.1fs", backoff, exc_info=True
                    )
                    hub.wait_poke(backoff)
                    backoff = min(backoff * 2, RETRY_MOST)
                    hub.next_read = 0.0
                    continue
                hub.wait_poke(max(0.0, hub.next_read - time.monotonic()) if hub.ready else _START_RECHECK)
        finally:
            self._end()  # dead, not hung: the hub tells the two apart
            release_connections()

    def _begin(self) -> None:
        self.connection = connections[self.hub.using]
        self.busy_since = time.monotonic()

    def _end(self) -> None:
        self.busy_since = None

    def _read_new(self) -> None:
        hub = self.hub
        number = hub.begin_catch_up()
        if self._read_all():
            hub.end_catch_up(number)

    def _read_all(self) -> bool:
        """Read until the log has nothing new; return False if this reader was replaced meanwhile."""
        hub = self.hub
        while True:
            before = hub.cursor
            rows, after = self.tailer.read(before)
            hub.reads += 1
            hub.rows_read += len(rows)
            metrics.log_read(len(rows))
            stamps = self.tailer.stamps
            if after == before:
                if stamps:
                    stamps.clear()
                return True
            # A missing id may be one retention deleted before this hub read
            # it (a hub that was down or behind): its channel's streams must
            # then read the log, and be told with a reset, not skip it.
            pruned = pruned_after(hub.using, before.top) if _has_gap(rows, before.top) else None
            if not hub.append(rows, before, after, source=self, pruned=pruned):
                return False
            if stamps is not None:
                # Rows held back (pending, a gap) are read again, with their created, when they arrive.
                metrics.arrived(stamps.get(row[0]) for row in rows)
                stamps.clear()
            if len(rows) < PAGE and sum(len(row[3]) for row in rows) < PAGE_BYTES:
                return True  # a short page is the end (or a gap): no need for an empty read to say so

    def _warn_if_held_back(self) -> None:
        """Warn, once per wait, of ids pending for WAITING_WARNING seconds, and of a hub held back as long."""
        tailer = self.tailer
        now = time.monotonic()
        metrics.waiting_for_publishers(None if tailer.waiting_since is None else now - tailer.waiting_since)
        held = not isinstance(tailer, GapTailer) or tailer.held_back
        since = tailer.waiting_since
        if held and since is not None:
            # Held back behind a gap: since the first read that stopped there, not since the id was first seen.
            self.held_since = self.held_since or now
        else:
            self.held_since = None
        if (
            self.held_since is not None
            and self.held_since != self.warned_held
            and now - self.held_since >= WAITING_WARNING
        ):
            self.warned_held = self.held_since
            logger.warning(
                "django_realtime holds back every channel's events: for %.0f s they have waited for a transaction "
                "that published before them to end (%s; PUBLISH_IDLE_TIMEOUT bounds an idle one on PostgreSQL)",
                now - self.held_since,
                "too many transactions in flight at once for the cursor to name"
                if isinstance(tailer, GapTailer)
                else "commit order, GAP_TIMEOUT",
            )
        if not isinstance(tailer, GapTailer) or since is None or since == self.warned or now - since < WAITING_WARNING:
            return
        self.warned = since
        try:
            report = tailer.pending_report()
        except DatabaseError:
            report = None
        logger.warning(
            "django_realtime: publishing transactions have been open for %.0f s: their events (ids pending "
            "in the cursor %s) are delivered when they commit; other events are not held back. In flight: %s",
            now - since,
            self.hub.cursor,
            report["publishers"] if report else "see the database's open transactions",
        )

    def hung(self, now: float, timeout: float) -> bool:
        """Return whether the current query has run longer than *timeout* seconds."""
        since = self.busy_since
        return since is not None and now - since > timeout

    def interrupt(self) -> None:
        """Make the current query fail now, where the driver allows it from another thread."""
        if self.connection is not None:
            interrupt(self.connection)


def _has_gap(rows: list[Row], horizon: int) -> bool:
    new = [row for row in rows if row[0] > horizon]
    return bool(new) and new[-1][0] - horizon != len(new)  # ids are increasing: a jump anywhere shows in the count


#: Seconds between two looks at the publishers a starting hub waits for.
_START_RECHECK = 0.1
