"""Write to and tail the event log, safely for each database.

The commit-order trap: ids come from a sequence at INSERT, but transactions
commit in any order.  A tailer that saw id 11 committed and moved past it
while id 10's transaction was still open would never deliver 10; one that
waited for 10 would hold 11 back, and everything after it.  So a tailer
delivers 11 at once and keeps 10 *pending* in its cursor (cursor.py): every
read asks for the pending ids again, and 10 is delivered when it commits.
A pending id leaves the cursor when it arrives or is known dead:

* SQLite serialises writers: a writer holds the database's write lock from
  its INSERT to its COMMIT, so ids become visible in order, and a rolled
  back id is handed out again.  No id is ever pending.
* PostgreSQL: each publish first takes a shared advisory lock, held to the
  end of its transaction, and only then draws its id.  When a tailer sees a
  gap below id V, it notes which transactions hold that lock; once all of
  them have ended, every id up to V is either visible or dead.
* MySQL and MariaDB: the same, with the InnoDB transactions open at the
  sighting (information_schema.INNODB_TRX).
* Other databases: a gap is waited for GAP_TIMEOUT seconds, then skipped,
  and the skip recorded so that every process and every replay agree (see
  ``django_realtime.skips``).
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import socket
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError, connections, transaction
from django.db.models import Max
from django.utils import timezone

from . import skips
from .cursor import MAX_RUNS, Cursor, Run, runs_of

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .models import Event

#: Rows read from the log in one query, at most...
PAGE = 500
#: ...and about this many bytes of event data.
PAGE_BYTES = 1024 * 1024
#: Key of the advisory lock publishers hold on PostgreSQL (pg_advisory_xact_lock_shared(int, int)).
LOCK_KEY = (0x7265616C, 1)  # b"real"
#: Seconds between two re-reads while a gap is unresolved (the TimeoutTailer's; a starting hub's).
GAP_RECHECK = 0.1
#: Seconds between two looks at the evidence that settles pending ids: they hold nothing back,
#: so a look now and then is enough to drop the dead ones from the cursors.
SETTLE_RECHECK = 0.5
#: Seconds pending after which an event that commits is logged with its channel (and the transaction before).
LATE_WARNING = 10.0
#: Sightings a gap tailer keeps at once (see GapTailer).
SIGHTINGS = 8
#: Seconds INNODB_TRX must go unread before InnoDB refreshes its cache of it (0.1 s), with room.
INNODB_TRX_CACHE = 0.12
#: Longest wait, in seconds, before INNODB_TRX is read again while its cache stays stale.
INNODB_TRX_STALE_MOST = 1.0
#: MySQL error codes of a user without the PROCESS privilege (ER_SPECIFIC_ACCESS_DENIED_ERROR, ...).
_NO_PRIVILEGE = (1227, 1142, 1044)

Row = tuple[int, str, str, str]


class Item:
    """A stored event as streams need it.

    Each transport encodes an event the first time one of its streams sends
    it and keeps the result here, for every other stream of the process
    (two threads may both encode it once; either result is the same).
    ``cursor`` is the hub's cursor just after the event arrived: what a
    client that got it resumes from (its text is the SSE ``id:``).
    """

    __slots__ = ("id", "channel", "event", "data_json", "sse", "sse_text", "websocket", "seq", "cursor")

    def __init__(self, id: int, channel: str, event: str, data_json: str, cursor: Cursor | None = None) -> None:
        self.id = id
        self.channel = channel
        self.event = event
        self.data_json = data_json
        #: The SSE bytes, once the SSE transport made them; and those of ``?data=text`` streams.
        self.sse: bytes | None = None
        self.sse_text: bytes | None = None
        #: The WebSocket message, once the WebSocket transport made it.
        self.websocket: str | None = None
        #: Its place in this process's hub: events arrive in commit order, not in id order.
        self.seq = 0
        self.cursor = Cursor(id) if cursor is None else cursor

    @property
    def cursor_text(self) -> str:
        """Return the text a client resumes from after this event: the SSE ``id:``, the WebSocket ``id``."""
        return self.cursor.text_for(self.id)

    def under(self, cursor: Cursor) -> Item:
        """Return this event as a stream that started at *cursor* sends it: its cursor covers *cursor* too."""
        merged = cursor.merge(self.cursor)
        if merged is self.cursor:
            return self
        return Item(self.id, self.channel, self.event, self.data_json, merged)

    def __repr__(self) -> str:
        return f"Item({self.id}, {self.channel!r}, {self.event!r}, {self.data_json!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Item):
            return NotImplemented
        return (self.id, self.channel, self.event, self.data_json) == (
            other.id,
            other.channel,
            other.event,
            other.data_json,
        )

    __hash__ = None  # type: ignore[assignment]


def release_connections() -> None:
    """Close this thread's database connections, so an idle stream holds none."""
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close()


def shut_down_socket(fd: int) -> None:
    """Shut down the socket behind file descriptor *fd*, which another thread may be blocked on.

    Its blocked read or write returns at once with "connection closed",
    which a cancel request (a new connection to a server that does not
    answer) would not.  A duplicate of *fd* is shut down, not *fd* itself
    closed, so the owner's descriptor stays valid until it closes it.
    """
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:  # already closed
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.close()


def insert_event(
    using: str,
    channel: str,
    event: str,
    data_json: str,
    *,
    notify: tuple[str, ...] = (),
    idle_timeout: float | None = None,
) -> Event:
    """Store one event and return it, with its id.

    On PostgreSQL, *notify* names LISTEN channels to which the same
    statement sends ``NOTIFY "channel id"``: PostgreSQL delivers it when the
    transaction commits and drops it on rollback.  Inside a transaction,
    *idle_timeout* (seconds) bounds how long that transaction may then sit
    idle: its events wait for it and its id is pending in every cursor
    meanwhile, so the server ends it past that, unless its own
    idle_in_transaction_session_timeout is shorter.
    """
    from .models import Event

    stored = Event(channel=channel, event=event, data_json=data_json)
    stored._announced = True  # publish() wakes the hubs itself, not the post_save receiver
    connection = connections[using]
    if connection.vendor != "postgresql":
        stored.save(using=using, force_insert=True)
        return stored
    meta = Event._meta
    column = {field.name: connection.ops.quote_name(str(field.column)) for field in meta.concrete_fields}
    table = connection.ops.quote_name(meta.db_table)
    params: list[Any] = [*LOCK_KEY]
    bound = ""
    if idle_timeout is not None and connection.in_atomic_block:
        # SET LOCAL, in the same statement: it lasts as long as the transaction.
        milliseconds = max(1, round(idle_timeout * 1000))
        bound = (
            ", (SELECT count(set_config(name, %s, true)) FROM pg_settings "
            "WHERE name = 'idle_in_transaction_session_timeout' AND setting::bigint NOT BETWEEN 1 AND %s)"
        )
        params += [str(milliseconds), milliseconds]
    params += [channel, event, data_json, stored.created]
    # The CTE takes the lock before the INSERT draws its id from the
    # sequence, so a tailer that sees a later id can find this transaction
    # among the lock's holders.
    sql = (
        f"WITH lock AS (SELECT pg_advisory_xact_lock_shared(%s, %s){bound}), "
        f"ins AS (INSERT INTO {table} ({column['channel']}, {column['event']}, {column['data_json']}, "
        f"{column['created']}) SELECT %s, %s, %s, %s FROM lock RETURNING {column['id']} AS id) "
    )
    # One statement, one round trip: the NOTIFYs ride on the INSERT.
    notifies = "".join(", pg_notify(%s, %s || ' ' || id::text)" for _ in notify)
    sql += f"SELECT id{notifies} FROM ins"
    for name in notify:
        params += [name, channel]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        stored.id = cursor.fetchone()[0]
    stored._state.adding = False
    stored._state.db = using
    return stored


def _select(using: str, *, upto: bool, channels: int, runs: int = 0) -> str:
    """Return the SQL that reads a page of rows: ids after %s (or in *runs* runs %s to %s), up to %s,
    of *channels* channels, LIMIT %s."""
    from .models import Event

    ops = connections[using].ops
    meta = Event._meta
    column = {field.name: ops.quote_name(str(field.column)) for field in meta.concrete_fields}
    after = f"{column['id']} > %s"
    if runs:  # the pending ids too: they may have committed since
        between = f" OR {column['id']} BETWEEN %s AND %s"
        after = f"({after}{between * runs})"
    where = [after]
    if upto:
        where.append(f"{column['id']} <= %s")
    if channels:
        where.append(f"{column['channel']} IN ({', '.join(['%s'] * channels)})")
    return (
        f"SELECT {column['id']}, {column['channel']}, {column['event']}, {column['data_json']} "
        f"FROM {ops.quote_name(meta.db_table)} WHERE {' AND '.join(where)} ORDER BY {column['id']} LIMIT %s"
    )


_SQL: dict[tuple[str, bool, int, int], str] = {}


def read_rows(
    using: str,
    after: int,
    *,
    upto: int | None = None,
    channels: Iterable[str] | None = None,
    limit: int = PAGE,
    max_bytes: int | None = None,
    pending: tuple[Run, ...] = (),
) -> tuple[list[Row], bool]:
    """Return stored rows after *after* (and in the *pending* runs below it) in id order, and whether they
    are all there are (up to *upto*).

    A plain query (no server-side cursor, so it works through PgBouncer in
    transaction mode) of at most *limit* rows; the rows past *max_bytes* (by
    default PAGE_BYTES) of data are dropped here, so a read hands on about a
    megabyte at most.
    """
    max_bytes = PAGE_BYTES if max_bytes is None else max_bytes
    names = sorted(channels) if channels is not None else []
    key = (using, upto is not None, len(names), len(pending))
    sql = _SQL.get(key)
    if sql is None:
        sql = _SQL[key] = _select(using, upto=upto is not None, channels=len(names), runs=len(pending))
    params: list[Any] = [after]
    for first, last in pending:
        params += [first, last]
    if upto is not None:
        params.append(upto)
    params += names
    params.append(limit)
    with connections[using].cursor() as cursor:
        cursor.execute(sql, params)
        rows: list[Row] = cursor.fetchall()
    if not isinstance(rows, list):  # mysqlclient gives a tuple
        rows = list(rows)
    size = 0
    for index, row in enumerate(rows):
        size += len(row[3])
        if size >= max_bytes:
            return rows[: index + 1], False
    return rows, len(rows) < limit


def read_page(
    using: str, channels: Iterable[str], after: int, upto: int, *, limit: int = PAGE, max_bytes: int | None = None
) -> tuple[list[Item], int]:
    """Read stored events of *channels* in (after, upto], *limit* rows and about *max_bytes* at most.

    Return them and the new cursor.
    """
    rows, complete = read_rows(using, after, upto=upto, channels=channels, limit=limit, max_bytes=max_bytes)
    cursor = upto if complete else rows[-1][0]
    if rows and skips.possible(using):
        rows = skips.without(rows, skips.recorded(using, after, rows[-1][0]))
    return [Item(*row) for row in rows], cursor


def high_water_mark(using: str) -> int:
    """Return the highest event id the log has ever held, pruned ones included."""
    from .models import Event, PruneMark

    newest = Event.objects.using(using).aggregate(m=Max("id"))["m"] or 0
    pruned = PruneMark.objects.using(using).aggregate(m=Max("pruned_through"))["m"] or 0
    return max(newest, pruned)


def pruned_after(using: str, horizon: int) -> dict[str, int]:
    """Return the channels with events after *horizon* that retention deleted, and the newest of those ids."""
    from .models import PruneMark

    marks = PruneMark.objects.using(using).filter(pruned_through__gt=horizon)
    return dict(marks.values_list("channel", "pruned_through"))


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
        rows, complete = read_rows(self.using, cursor.top, limit=self.limit, pending=pending)
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


def missing_runs(using: str, after: int, upto: int) -> tuple[Run, ...]:
    """Return the runs of ids in (after, upto] that the log does not hold."""
    from .models import Event

    present = set(Event.objects.using(using).filter(id__gt=after, id__lte=upto).values_list("id", flat=True))
    return runs_of(n for n in range(after + 1, upto + 1) if n not in present)


#: Most ids a starting hub looks at for ones in flight: past this, it waits for the publishers instead.
START_WINDOW = 100_000


class PostgresTailer(GapTailer):
    """PostgreSQL: a gap is settled when the publishers in flight at its sighting have ended."""

    _in_flight: set[str] | None = None

    _HOLDERS = (
        "SELECT virtualtransaction FROM pg_locks WHERE locktype = 'advisory' "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND classid = %s AND objid = %s AND objsubid = 2"
    )
    #: The publishers in flight, with when their transaction began and who runs it.
    _REPORT = (
        "SELECT a.pid, extract(epoch FROM now() - a.xact_start), a.application_name, "
        "host(a.client_addr), a.state FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.database = (SELECT oid FROM pg_database WHERE datname = "
        "current_database()) AND l.classid = %s AND l.objid = %s AND l.objsubid = 2 ORDER BY a.xact_start"
    )
    #: Seconds before the oldest publisher in flight began that a starting hub still looks back
    #: for missing ids (the log's ``created`` is the publishers' clock, ``xact_start`` the database's).
    START_MARGIN = 60.0

    def _holders(self) -> set[str]:
        with connections[self.using].cursor() as cursor:
            cursor.execute(self._HOLDERS, list(LOCK_KEY))
            return {row[0] for row in cursor.fetchall()}

    def _begin_start(self) -> Cursor:
        # An id below the newest may still be in flight, held by a publisher
        # that took the lock before we read the newest id: those are pending.
        self._in_flight = None
        newest = super()._begin_start().top
        holders = self._holders()
        if not holders:
            return Cursor(newest)
        started = self._oldest_start()
        after = self._drawn_before(started) if started is not None else 0
        runs = None
        if started is not None and newest - after <= START_WINDOW:
            runs = missing_runs(self.using, after, newest)
        if runs is None or len(runs) > MAX_RUNS:
            # Too many candidates to name: wait for those publishers instead (settled_start).
            self._in_flight = holders
            return Cursor(newest)
        self._pending = [(newest, frozenset(holders))]
        start = Cursor(newest, runs)
        self._note_waiting(start)
        return start

    def _oldest_start(self) -> object:
        """Return when the oldest publisher in flight began its transaction (the database's clock), or None."""
        with connections[self.using].cursor() as cursor:
            cursor.execute(
                "SELECT min(a.xact_start) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.database = (SELECT oid FROM pg_database WHERE datname = "
                "current_database()) AND l.classid = %s AND l.objid = %s AND l.objsubid = 2",
                list(LOCK_KEY),
            )
            return cursor.fetchone()[0]

    def _drawn_before(self, started: Any) -> int:
        """Return the newest id drawn (by the publishers' clock) well before *started*: no publisher in flight
        holds it."""
        from .models import Event

        bound = started - timedelta(seconds=self.START_MARGIN)
        newest = Event.objects.using(self.using).filter(created__lt=bound).aggregate(m=Max("id"))["m"]
        return newest or 0

    def settled_start(self) -> bool:
        if self._in_flight:
            self._in_flight &= self._holders()
        return not self._in_flight

    def _evidence(self) -> object:
        return frozenset(self._holders())

    def _newest_settled(self, evidences: list) -> int | None:
        holders = self._holders()
        for index in range(len(evidences) - 1, -1, -1):
            if not (evidences[index] & holders):
                return index
        return None

    def pending_report(self) -> dict[str, object] | None:
        if self.waiting_since is None:
            return None
        with connections[self.using].cursor() as cursor:
            cursor.execute(self._REPORT, list(LOCK_KEY))
            rows = cursor.fetchall()
        return {
            "publishers": [
                {"pid": pid, "seconds": round(float(age or 0), 3), "application": app, "client": client, "state": state}
                for pid, age, app, client, state in rows
            ]
        }


class Sighting:
    """The InnoDB transactions that may hold a missing id: those open when the gap was seen."""

    __slots__ = ("since", "open", "listed", "ended")

    def __init__(self, since: str) -> None:
        #: The database's clock just after the read that showed the gap (see InnoDBTailer.now).
        self.since = since
        #: A key of each transaction open since the sighting (see InnoDBTailer._list), once listed fresh.
        self.open: set[tuple[object, ...]] | None = None
        #: The database time the last list used was newer than.
        self.listed = ""
        #: Whether every transaction open at the sighting has ended.
        self.ended = False

    def update(self, listed: set, answers: set, newer_than: str) -> bool:
        """Take in a list of INNODB_TRX; return whether it was fresh enough to tell this sighting anything."""
        if self.open is None:
            if newer_than < self.since:
                return False
            self.open, self.listed = set(listed), newer_than
        elif newer_than > self.listed:
            # A list newer than the last one used: the cache only moves forward, so
            # a transaction it lacks has ended.
            self.open &= answers
            self.listed = newer_than
        else:
            return False
        self.ended = not self.open
        return True


#: In the SQL comments of the statements that list INNODB_TRX, to tell them apart.
MARKER = "django_realtime: INNODB_TRX list"
#: The database clock as text that sorts as it runs, to the microsecond.
_NOW = "DATE_FORMAT(NOW(6), '%Y%m%d%H%i%s%f')"
_MARKED = re.compile(re.escape(MARKER) + r" t=(\d{20})")


class InnoDBTailer(GapTailer):
    """MySQL and MariaDB: a gap is settled when the InnoDB transactions open at its sighting have ended.

    An id is drawn inside a transaction that InnoDB lists in
    ``information_schema.INNODB_TRX`` from its first statement until it
    ends.  A missing id u below a visible id V was drawn before V (the
    auto-increment counter only grows), so u's transaction was open before
    V committed, before the read that saw V: in a list taken after that
    read, it is there unless it has ended.  Once all of those have ended, u
    is visible or will never exist.

    InnoDB serves the table from a cache that it refreshes only when nobody
    has read it for 0.1 s (``CACHE_MIN_IDLE_TIME_US`` in trx0i_s.cc), so a
    list can be older than the read.  A sighting therefore notes the
    database's clock after the read, and a list counts only if it is proven
    newer: see _list() and _ended().

    A transaction is known by its InnoDB id once it has written, and by its
    connection and start before (a start has whole seconds only: a
    connection's next transaction begun in the same second is waited for
    too).  Autocommit read-only statements, which cannot draw an id, are
    left out (``trx_is_read_only``), so a long report holds nothing back.  Other
    transactions do, while they are open: InnoDB does not say which table a
    transaction wrote.  Reading INNODB_TRX needs the PROCESS privilege;
    without it the tailer warns once and waits GAP_TIMEOUT at each gap.
    """

    _LIST = (
        "SELECT trx_id, trx_mysql_thread_id, trx_started, trx_mysql_thread_id = CONNECTION_ID(), trx_query "
        "FROM information_schema.INNODB_TRX WHERE trx_is_read_only = 0"
    )

    def __init__(self, using: str) -> None:
        super().__init__(using)
        self._start: Sighting | None = None
        self._newest = 0
        #: time.monotonic() before which INNODB_TRX is not listed again, and stale lists in a row.
        self._retry_at = 0.0
        self._stale = 0
        #: Set when INNODB_TRX cannot be read: GAP_TIMEOUT rules, as on other databases.
        self.fallback: TimeoutTailer | None = None

    def now(self) -> str:
        """Return the database's clock (see _NOW): taken after a read, it is later than what the read saw commit."""
        with connections[self.using].cursor() as cursor:
            cursor.execute(f"SELECT {_NOW}")
            return cursor.fetchone()[0]

    def _list(self) -> tuple[set[tuple[str, ...]], set[tuple[str, ...]], str]:
        """Return the other connections' open transactions, and the database time the list is surely newer than.

        Each transaction comes as the key a sighting keeps (its InnoDB id, or
        while it has written nothing and has none, its connection and start)
        and, in the second set, every key it answers to: one that had no id
        yet when it was sighted is still recognised once it has one.

        The list is taken inside a transaction begun here, whose first
        statement reads the database clock, t, and whose listing statement
        carries t in a comment.  A list that shows a transaction running
        such a statement (this one's or another hub's) was taken while it
        ran, after its t: the latest such t is returned ("" if none).  Those
        transactions draw no id, and are left out of the sets: else each hub
        would wait for the others' lists.
        """
        from .models import Event

        connection = connections[self.using]
        table = connection.ops.quote_name(Event._meta.db_table)
        with connection.cursor() as cursor, transaction.atomic(using=self.using):
            # The subquery reads an InnoDB table: InnoDB begins this transaction here.
            cursor.execute(f"SELECT {_NOW}, (SELECT 1 FROM {table} LIMIT 1) /* {MARKER} */")
            started = cursor.fetchone()[0]
            cursor.execute(f"{self._LIST} /* {MARKER} t={started} */")
            rows = cursor.fetchall()
        keys: set[tuple[str, ...]] = set()
        answers: set[tuple[str, ...]] = set()
        newer_than = ""
        for trx_id, thread, began, own, query in rows:
            marked = _MARKED.search(query or "")
            if marked:
                newer_than = max(newer_than, marked.group(1))
            if own or (query and MARKER in query):
                continue
            # As text: the same keys come back from the shared list's JSON.
            by_start = ("started", str(thread), str(began))
            by_id = ("trx", str(trx_id))
            keys.add(by_id if trx_id not in (0, "0") else by_start)
            answers.update({by_id, by_start})
        return keys, answers, newer_than

    def _shared_table(self) -> str:
        """Return the quoted name of the table of the shared list (models.InnoDBTransactions)."""
        from .models import InnoDBTransactions

        return connections[self.using].ops.quote_name(InnoDBTransactions._meta.db_table)

    def _shared(self) -> tuple[set[tuple[str, ...]], set[tuple[str, ...]], str, float] | None:
        """Return the list another hub (or this one) shared, as _list() does, and its age in seconds; or None."""
        with connections[self.using].cursor() as cursor:
            cursor.execute(
                f"SELECT taken, listed, answers, TIMESTAMPDIFF(MICROSECOND, written, NOW(6)) "
                f"FROM {self._shared_table()} WHERE id = 1"
            )
            row = cursor.fetchone()
        if row is None:
            return None
        taken, listed, answers, age = row
        return (
            {tuple(key) for key in json.loads(listed)},
            {tuple(key) for key in json.loads(answers)},
            taken,
            age / 1e6,
        )

    def _claim(self) -> bool:
        """Return whether this hub may list INNODB_TRX now: no other hub has since InnoDB's cache period."""
        with connections[self.using].cursor() as cursor:
            cursor.execute(
                f"UPDATE {self._shared_table()} SET written = NOW(6) "
                f"WHERE id = 1 AND written < NOW(6) - INTERVAL %s MICROSECOND /* {MARKER} */",
                [round(INNODB_TRX_CACHE * 1e6)],
            )
            return cursor.rowcount == 1

    def _share(self, listed: set, answers: set, newer_than: str) -> None:
        """Keep the list for the other hubs, unless one newer than it is kept already."""
        table = self._shared_table()
        newer = "VALUES(taken) > taken"
        with connections[self.using].cursor() as cursor:
            # MySQL assigns left to right: taken last, so the others compare with the old one.
            # The comment: other hubs leave this statement's transaction out of their lists.
            cursor.execute(
                f"INSERT INTO {table} (id, taken, listed, answers, written) VALUES (1, %s, %s, %s, NOW(6)) "
                f"ON DUPLICATE KEY UPDATE listed = IF({newer}, VALUES(listed), listed), "
                f"answers = IF({newer}, VALUES(answers), answers), written = NOW(6), "
                f"taken = GREATEST(taken, VALUES(taken)) /* {MARKER} */",
                [newer_than, json.dumps(sorted(listed)), json.dumps(sorted(answers))],
            )

    def _ended(self, sighting: Sighting) -> bool:
        """Return whether every transaction open at *sighting* has ended (False: not known yet)."""
        self._update([sighting])
        return sighting.ended

    def _update(self, sightings: list[Sighting]) -> None:
        """Tell *sightings* what InnoDB's newest list of open transactions says.

        The list is the one the hubs share (InnoDBTransactions) while it is
        younger than InnoDB's cache period: listing INNODB_TRX again then
        would only keep the cache stale for every hub.  Else this hub lists
        it, and shares it.
        """
        now = time.monotonic()
        if now < self._retry_at:
            return
        shared = self._shared()
        if shared is not None:
            listed, answers, newer_than, age = shared
            self._take(sightings, listed, answers, newer_than)
            if all(sighting.ended for sighting in sightings):
                return
            if age < INNODB_TRX_CACHE:
                # Another hub listed just now: look again once InnoDB may have refreshed its cache.
                self._retry_at = now + INNODB_TRX_CACHE - age + random.uniform(0.0, 0.02)
                return
            if not self._claim():
                # Another hub is listing it this moment: its list will be there in a few milliseconds.
                self._retry_at = now + random.uniform(0.01, 0.03)
                return
        try:
            listed, answers, newer_than = self._list()
        except DatabaseError as exc:
            if getattr(exc, "args", (None,))[0] not in _NO_PRIVILEGE:
                raise
            self._fall_back(exc)
            return
        self._share(listed, answers, newer_than)
        fresh = self._take(sightings, listed, answers, newer_than)
        if all(sighting.ended for sighting in sightings):
            self._stale = 0
            return
        # InnoDB refreshes the cache only once nobody has read it for 0.1 s:
        # after a stale list (a hub listed at the same moment), wait longer,
        # with jitter to part the processes.
        self._stale = 0 if fresh else self._stale + 1
        longest = min(INNODB_TRX_CACHE * 2 ** (self._stale + 1), INNODB_TRX_STALE_MOST)
        self._retry_at = now + random.uniform(INNODB_TRX_CACHE, longest if self._stale else INNODB_TRX_CACHE + 0.02)

    @staticmethod
    def _take(sightings: list[Sighting], listed: set, answers: set, newer_than: str) -> bool:
        """Give a list to each of *sightings* not ended yet; return whether it told one of them anything."""
        fresh = False
        for sighting in sightings:
            if not sighting.ended:
                fresh = sighting.update(listed, answers, newer_than) or fresh
        return fresh

    def _newest_settled(self, evidences: list) -> int | None:
        self._update(evidences)
        for index in range(len(evidences) - 1, -1, -1):
            if evidences[index].ended:
                return index
        return None

    def _fall_back(self, exc: Exception) -> None:
        import logging

        logging.getLogger("django_realtime").warning(
            "django_realtime cannot list InnoDB's open transactions (%s): grant the database user the "
            "PROCESS privilege, or each gap in the event ids (a rolled-back publish) holds delivery back "
            "GAP_TIMEOUT seconds and an event that commits later than that is not delivered live",
            exc,
        )
        self.fallback = TimeoutTailer(self.using)

    def read(self, cursor: Cursor) -> tuple[list[Row], Cursor]:
        if self.fallback is None:
            return super().read(cursor)
        rows, after = self.fallback.read(cursor)
        self.waiting_since = self.fallback.waiting_since
        return rows, after

    @property
    def recheck_after(self) -> float | None:
        return super().recheck_after if self.fallback is None else self.fallback.recheck_after

    def _begin_start(self) -> Cursor:
        start = super()._begin_start()
        self._newest = start.top
        self._start = Sighting(self.now())
        return start

    def settled_start(self) -> bool:
        if self.fallback is not None:
            return self.fallback.settled_start()
        if self._start is None or self._ended(self._start):
            self._start = None
            return True
        if self.fallback is not None:  # the privilege is missing, found out just now
            self.fallback._start = self._newest
            return self.fallback.settled_start()
        return False

    def _evidence(self) -> object:
        return Sighting(self.now())


class TimeoutTailer(Tailer):
    """Other databases: a gap still open after GAP_TIMEOUT seconds is skipped, and recorded as such.

    The record (see ``django_realtime.skips``) makes every process and every
    replay agree: other hubs step over a recorded id at once, every read
    leaves out a row that commits there late, and its channel gets a reset.
    """

    def __init__(self, using: str) -> None:
        super().__init__(using)
        #: (highest id seen above the first gap, time.monotonic() when every id up to it still missing is dead)
        self._pending: tuple[int, float] | None = None
        #: The newest id when the hub started; None once the ids below it are settled.
        self._start: int | None = None

    def read(self, cursor: Cursor) -> tuple[list[Row], Cursor]:
        rows = self._read_up_to_gaps(cursor.top)
        return rows, (Cursor(rows[-1][0], cursor.pending) if rows else cursor)

    def _read_up_to_gaps(self, horizon: int) -> list[Row]:
        rows, runs, top = self._read_known(horizon)
        holes = skips.missing((row[0] for row in rows), horizon, top, runs)
        if not holes:
            self._pending = self.waiting_since = None
            return rows
        now = time.monotonic()
        if self._pending is None or self._pending[0] < holes[0][0]:
            # A deadline set after seeing *top* covers every id below it; one
            # for an older gap, since filled, covers nothing here.
            if self._pending is None:
                self.waiting_since = now
            self._pending = (top, now + self._timeout())
        settled, deadline = self._pending
        if now < deadline:
            return [row for row in rows if row[0] < holes[0][0]]
        self._pending = self.waiting_since = None
        skips.record(self.using, [(first, min(last, settled)) for first, last in holes if first <= settled])
        return self._read_up_to_gaps(horizon)  # again, past what is now recorded

    def _read_known(self, horizon: int) -> tuple[list[Row], list[skips.Run], int]:
        """Return the next rows without the late ones, the recorded runs among them, and the highest id read."""
        rows, _ = self._read(Cursor(horizon))
        if not rows:
            return rows, [], horizon
        top = rows[-1][0]
        runs = skips.recorded(self.using, horizon, top)
        return skips.without(rows, runs), runs, top

    @staticmethod
    def _timeout() -> float:
        from .conf import realtime_settings

        return float(realtime_settings.GAP_TIMEOUT)

    @property
    def recheck_after(self) -> float | None:
        return GAP_RECHECK if self._pending is not None else None

    def _begin_start(self) -> Cursor:
        start = super()._begin_start()
        self._start = start.top
        return start

    def settled_start(self) -> bool:
        """Return whether the ids just below the start are each stored, recorded, or missing for GAP_TIMEOUT.

        A publish in flight when the hub starts holds an id below the newest:
        wait for it as for any gap (its age is that of the next stored row,
        by the publishers' clock), and record the ones given up on.  Only the
        PAGE ids below the newest are looked at.
        """
        from .models import Event

        newest = self._start
        if newest is None:
            return True
        after = max(0, newest - PAGE)
        stored = dict(Event.objects.using(self.using).filter(id__gt=after, id__lte=newest).values_list("id", "created"))
        holes = skips.missing(sorted(stored), after, newest, skips.recorded(self.using, after, newest))
        oldest_wait = timezone.now() - timedelta(seconds=self._timeout())
        if any(stored.get(last + 1, oldest_wait) > oldest_wait for _, last in holes):
            return False
        skips.record(self.using, holes)
        self._start = None
        return True


def tailer_for(using: str) -> Tailer:
    """Return the tailer that suits the database behind *using*."""
    vendor = connections[using].vendor
    if vendor == "sqlite":
        return SerialTailer(using)
    if vendor == "postgresql":
        return PostgresTailer(using)
    if vendor == "mysql":
        return InnoDBTailer(using)
    return TimeoutTailer(using)
