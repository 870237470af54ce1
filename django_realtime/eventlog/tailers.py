"""Tail the event log: read what became visible after a cursor, never covering an id that may still commit.

The base classes live here (``Tailer``; ``SerialTailer``, SQLite's;
``GapTailer``, the rule of the databases that can tell when a missing id
is dead), and ``tailer_for``, which picks a database's tailer by vendor
from ``TAILERS``.  Each other strategy has its own module: ``postgres``,
``innodb`` (MySQL and MariaDB), ``timeout`` (every other database).
"""

from __future__ import annotations

import logging
import time

from django.db import connections
from django.utils.module_loading import import_string

from ..cursor import Cursor, Run
from .rows import PAGE, Row, high_water_mark, read_rows

#: Seconds between two re-reads while a gap is unresolved (the TimeoutTailer's; a starting hub's).
GAP_RECHECK = 0.1
#: Seconds between two looks at the evidence that settles pending ids: they hold nothing back,
#: so a look now and then is enough to drop the dead ones from the cursors.
SETTLE_RECHECK = 0.5
#: Seconds pending after which an event that commits is logged with its channel (and the transaction before).
LATE_WARNING = 10.0
#: Sightings a gap tailer keeps at once (see GapTailer).
SIGHTINGS = 8
#: Most ids a starting hub looks at for ones in flight: past this, it waits for their transactions instead.
START_WINDOW = 100_000
#: Seconds before the oldest transaction in flight began that a starting hub still looks back for missing
#: ids: the log's ``created`` is the publishers' clock, a transaction's start the database's.
START_MARGIN = 60.0


class Tailer:
    """Read the rows that became visible after a cursor, and the cursor that covers them.

    A tailer never covers an id that may still commit: a missing id (a gap)
    stays pending in the cursor until it shows up or is known dead.
    """

    #: time.monotonic() since when an id has been pending, or None: see GapTailer.
    waiting_since: float | None = None

    def __init__(self, using: str) -> None:
        self.using = using
        #: Rows to ask for next: fewer after a page of large events, so a
        #: read never holds much more than PAGE_BYTES in the driver's memory.
        self.limit = PAGE
        #: Each row's ``created`` by id, as read, when the hub's reader asks for them (metrics' hub lag).
        self.stamps: dict[int, object] | None = None

    def start_horizon(self, *, wait: bool = True, timeout: float | None = None) -> Cursor:
        """Return the cursor a hub starts at: the newest id of the log, with the ids below it still in flight.

        Every id it covers is visible or dead once ``settled_start()`` says
        so; with *wait*, this waits for that, at most *timeout* seconds
        (then raises TimeoutError).
        """
        start = self._begin_start()
        if wait:
            deadline = None if timeout is None else time.monotonic() + timeout
            while not self.settled_start():
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"publishing transactions still open after {timeout:g} s")
                time.sleep(GAP_RECHECK)
        return start

    def settled_start(self) -> bool:
        """Return whether every id the last ``start_horizon()`` covers is visible or dead."""
        return True

    def _begin_start(self) -> Cursor:
        return Cursor(high_water_mark(self.using))

    def read(self, cursor: Cursor) -> tuple[list[Row], Cursor]:
        """Return the rows visible now that *cursor* does not cover, in id order, and the cursor that covers them."""
        rows, _ = self._read(cursor)
        return rows, (Cursor(rows[-1][0], cursor.pending) if rows else cursor)

    def _read(self, cursor: Cursor, pending: tuple[Run, ...] = ()) -> tuple[list[Row], bool]:
        rows, complete = read_rows(self.using, cursor.top, limit=self.limit, pending=pending, stamps=self.stamps)
        if len(rows) < self.limit and not complete:
            self.limit = max(1, len(rows))  # cut by PAGE_BYTES: ask for as many as fit
        elif self.limit < PAGE:
            self.limit = min(PAGE, 2 * self.limit)
        return rows, complete

    @property
    def recheck_after(self) -> float | None:
        """Return how soon to read again although nothing woke the hub, or None."""
        return None

    def pending_report(self) -> dict[str, object] | None:
        """Describe what holds ids pending, for the health check and the log: None when nothing does."""
        return None


class SerialTailer(Tailer):
    """SQLite: writers are serialised, so every committed row is safe and no id is ever pending."""


class GapTailer(Tailer):
    """Deliver every committed row at once; keep the ids missing below the newest pending until settled.

    A missing id may belong to a transaction still open: it stays pending
    in the cursor, and every read asks for the pending ids again, so that
    the event is delivered when its transaction commits, after the ones
    that committed before it (commit order).  Evidence taken after a read
    that reached id V (a *sighting*) settles every id up to V: once every
    transaction it names has ended, an id up to V that no read returns is
    dead (rolled back) and leaves the cursor.  A cursor holds at most
    MAX_RUNS runs of pending ids: past that, the tailer waits at the next
    gap, as a tailer in id order would, and says so (``held_back``).
    """

    def __init__(self, using: str) -> None:
        super().__init__(using)
        #: (highest id read when taken, evidence that settles every id up to it), oldest first.
        self._pending: list[tuple[int, object]] = []
        #: time.monotonic() when the oldest id still pending was first seen missing, or None.
        self.waiting_since: float | None = None
        #: (first id, time.monotonic()) of each run of ids as first seen missing, for waiting_since.
        self._seen: list[tuple[int, int, float]] = []
        #: time.monotonic() before which the evidence is not looked at again.
        self._next_check = 0.0
        #: Whether the last read stopped at a gap because the cursor had no room for another run.
        self.held_back = False

    def read(self, cursor: Cursor) -> tuple[list[Row], Cursor]:
        dead_upto = self._settled() if self._pending else 0
        rows, complete = self._read(cursor, cursor.pending)
        covered = cursor
        new: list[int] = []
        for row in rows:
            if row[0] < cursor.top:
                covered = covered.without(row[0])  # committed late: delivered now
                self._late(row)
            else:
                new.append(row[0])
        if dead_upto:
            # Settled before this read: every id up to there that it did not return is dead.
            reached = dead_upto if complete or not rows else min(dead_upto, rows[-1][0])
            covered = covered.with_pending(_runs_above(covered.pending, reached))
        after = covered.advanced(new)
        self.held_back = not after.fits()
        if self.held_back:
            rows, after = self._fit(rows, cursor.top, covered, new)
        if len(after.pending) > len(covered.pending):  # new gaps: evidence that will settle them
            self._sighted(after.top)
        self._note_waiting(after)
        return rows, after

    def _late(self, row: Row) -> None:
        """Say which channel a transaction that stayed open long was publishing on, now that it committed."""
        waited = self.pending_for(row[0])
        if waited is not None and waited >= LATE_WARNING:
            logging.getLogger("django_realtime").warning(
                "django_realtime: event %s on %s committed %.0f s after events published after it: its "
                "transaction stayed open that long (it held nothing back)",
                row[0],
                row[1],
                waited,
            )

    def _fit(self, rows: list[Row], top: int, covered: Cursor, new: list[int]) -> tuple[list[Row], Cursor]:
        """Take the new rows only up to the gap that would be one run too many: wait there."""
        after = covered
        for index, row_id in enumerate(new):
            moved = after.advanced([row_id])
            if not moved.fits():
                kept = len(rows) - len(new) + index
                return rows[:kept], after
            after = moved
        return rows, after

    def _sighted(self, top: int) -> None:
        """Keep the evidence that will settle every id up to *top*."""
        sighting = (top, self._evidence())
        if len(self._pending) >= SIGHTINGS:
            self._pending[-1] = sighting  # newer evidence settles the older one's ids as well
        else:
            self._pending.append(sighting)

    def _settled(self) -> int:
        """Return the newest top whose sighting has settled (0: none), forgetting it and the older ones."""
        now = time.monotonic()
        if now < self._next_check:
            return 0
        self._next_check = now + SETTLE_RECHECK
        index = self._newest_settled([evidence for _, evidence in self._pending])
        if index is None:
            return 0
        top = self._pending[index][0]
        del self._pending[: index + 1]
        return top

    def _note_waiting(self, cursor: Cursor) -> None:
        now = time.monotonic()
        if not cursor.pending:
            self._pending, self._seen, self.waiting_since = [], [], None
            return
        known = {first for first, _, _ in self._seen}
        self._seen = [seen for seen in self._seen if _overlaps(seen, cursor.pending)]
        self._seen += [(first, last, now) for first, last in cursor.pending if first not in known]
        self.waiting_since = min(since for _, _, since in self._seen) if self._seen else now

    def pending_for(self, event_id: int) -> float | None:
        """Return for how many seconds *event_id* has been pending (seen missing), or None if it is not."""
        for first, last, since in self._seen:
            if first <= event_id <= last:
                return time.monotonic() - since
        return None

    @property
    def recheck_after(self) -> float | None:
        return SETTLE_RECHECK if self._pending else None

    def _evidence(self) -> object:
        raise NotImplementedError("subclasses of GapTailer must provide an _evidence() method")

    def _newest_settled(self, evidences: list) -> int | None:
        """Return the index of the newest of *evidences* (oldest first) whose transactions have all ended."""
        raise NotImplementedError("subclasses of GapTailer must provide a _newest_settled() method")


def _runs_above(runs: tuple[Run, ...], reached: int) -> list[Run]:
    """Return the parts of *runs* above *reached*."""
    return [(max(first, reached + 1), last) for first, last in runs if last > reached]


def _overlaps(seen: tuple[int, int, float], runs: tuple[Run, ...]) -> bool:
    first, last, _ = seen
    return any(a <= last and first <= b for a, b in runs)


#: The tailer of each database vendor (``connection.vendor``), by dotted path: the strategies
#: import the base classes from this module, so naming them here would be an import cycle.
TAILERS = {
    "sqlite": "django_realtime.eventlog.tailers.SerialTailer",
    "postgresql": "django_realtime.eventlog.postgres.PostgresTailer",
    "mysql": "django_realtime.eventlog.innodb.InnoDBTailer",
}
#: The tailer of any other database.
OTHER_TAILER = "django_realtime.eventlog.timeout.TimeoutTailer"


def tailer_for(using: str) -> Tailer:
    """Return the tailer that suits the database behind *using*."""
    tailer_class = import_string(TAILERS.get(connections[using].vendor, OTHER_TAILER))
    return tailer_class(using)
