"""MySQL's and MariaDB's tailer: a gap is settled when the InnoDB transactions open at its sighting have ended.

The transactions open at a sighting are those InnoDB lists in
``information_schema.INNODB_TRX``; without the PROCESS privilege to read
it, the tailer falls back to the timeout rule (``timeout.TimeoutTailer``).
"""

from __future__ import annotations

import json
import random
import re
import time
from datetime import timedelta

from django.db import DatabaseError, connections, transaction
from django.utils import timezone

from ..cursor import MAX_RUNS, Cursor, Run
from .rows import Row, drawn_before, missing_runs
from .tailers import START_MARGIN, START_WINDOW, GapTailer
from .timeout import TimeoutTailer

#: Seconds INNODB_TRX must go unread before InnoDB refreshes its cache of it (0.1 s), with room.
INNODB_TRX_CACHE = 0.12
#: Longest wait, in seconds, before INNODB_TRX is read again while its cache stays stale.
INNODB_TRX_STALE_MOST = 1.0
#: Lists of INNODB_TRX a starting hub takes, INNODB_TRX_CACHE apart, for one newer than its start.
START_LISTS = 8
#: MySQL error codes of a user without the PROCESS privilege (ER_SPECIFIC_ACCESS_DENIED_ERROR, ...).
_NO_PRIVILEGE = (1227, 1142, 1044)


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
    transaction wrote.  But the list is the whole server's, and a connection
    whose database (``PROCESSLIST.DB``) is another one's is left out too: a
    site does not wait for other databases' transactions on a shared server
    (a connection with no database, or gone from PROCESSLIST, still counts).
    Reading INNODB_TRX needs the PROCESS privilege;
    without it the tailer warns once and waits GAP_TIMEOUT at each gap.
    """

    _LIST = (
        "SELECT t.trx_id, t.trx_mysql_thread_id, t.trx_started, t.trx_mysql_thread_id = CONNECTION_ID(), "
        "t.trx_query, COALESCE(p.DB <> DATABASE(), 0), TIMESTAMPDIFF(SECOND, t.trx_started, NOW()) "
        "FROM information_schema.INNODB_TRX t "
        "LEFT JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id "
        "WHERE t.trx_is_read_only = 0"
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

    def _list(self) -> tuple[set[tuple[str, ...]], set[tuple[str, ...]], str, int | None]:
        """Return the other connections' open transactions, the database time the list is surely newer than,
        and how many seconds ago the oldest of them began (None: none is open).

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
        from ..models import Event

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
        oldest: int | None = None
        for trx_id, thread, began, own, query, elsewhere, age in rows:
            marked = _MARKED.search(query or "")
            if marked:  # another database's hub too: the server's clock is one
                newer_than = max(newer_than, marked.group(1))
            if own or elsewhere or (query and MARKER in query):
                continue
            # As text: the same keys come back from the shared list's JSON.
            by_start = ("started", str(thread), str(began))
            by_id = ("trx", str(trx_id))
            keys.add(by_id if trx_id not in (0, "0") else by_start)
            answers.update({by_id, by_start})
            oldest = age if oldest is None else max(oldest, age)
        return keys, answers, newer_than, oldest

    def _shared_table(self) -> str:
        """Return the quoted name of the table of the shared list (models.InnoDBTransactions)."""
        from ..models import InnoDBTransactions

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
            listed, answers, newer_than, _ = self._list()
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
        self.fallback.stamps = self.stamps

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
        # An id below the newest may still be in flight, drawn by a transaction open
        # now: those are pending, settled as a gap's are, by this sighting.
        start = super()._begin_start()
        self._newest = start.top
        sighting = self._start = Sighting(self.now())
        runs = self._in_flight(sighting, start.top)
        if runs is None:  # too many to name: settled_start() waits for those transactions instead
            return start
        self._start = None
        if not runs:
            return start
        self._pending = [(start.top, sighting)]
        start = Cursor(start.top, runs)
        self._note_waiting(start)
        return start

    def _in_flight(self, sighting: Sighting, newest: int) -> tuple[Run, ...] | None:
        """Return the runs of ids up to *newest* that a transaction open at *sighting* may still commit.

        Return None where they cannot be named: InnoDB's list stays older
        than the sighting, or cannot be read, or too many ids are missing
        since the oldest of those transactions began.  Every id it drew
        came after its start: an id missing from before then (with a
        margin for the publishers' clock) is dead.
        """
        for _ in range(START_LISTS):
            try:
                listed, answers, newer_than, oldest = self._list()
            except DatabaseError as exc:
                if getattr(exc, "args", (None,))[0] not in _NO_PRIVILEGE:
                    raise
                return None  # settled_start() falls back to the timeout rule
            self._share(listed, answers, newer_than)
            if sighting.update(listed, answers, newer_than):
                break
            time.sleep(INNODB_TRX_CACHE + random.uniform(0.0, 0.02))  # a stale list: InnoDB's cache period
        else:
            return None
        if sighting.ended or oldest is None:
            return ()
        after = drawn_before(self.using, timezone.now() - timedelta(seconds=oldest + START_MARGIN))
        if newest - after > START_WINDOW:
            return None
        runs = missing_runs(self.using, after, newest)
        return runs if len(runs) <= MAX_RUNS else None

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
