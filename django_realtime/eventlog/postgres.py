"""PostgreSQL's tailer: a gap is settled when the publishers in flight at its sighting have ended.

Each publish first takes a shared advisory lock (``LOCK_KEY``), held to
the end of its transaction, and only then draws its id (see
``rows.insert_event``).  When a tailer sees a gap below id V, it notes
which transactions hold that lock; once all of them have ended, every id
up to V is either visible or dead.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import connections

from ..cursor import MAX_RUNS, Cursor
from .rows import LOCK_KEY, drawn_before, missing_runs
from .tailers import START_MARGIN, START_WINDOW, GapTailer


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
        after = drawn_before(self.using, started - timedelta(seconds=START_MARGIN)) if started is not None else 0
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

    def _oldest_start(self) -> datetime | None:
        """Return when the oldest publisher in flight began its transaction (the database's clock), or None."""
        with connections[self.using].cursor() as cursor:
            cursor.execute(
                "SELECT min(a.xact_start) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.database = (SELECT oid FROM pg_database WHERE datname = "
                "current_database()) AND l.classid = %s AND l.objid = %s AND l.objsubid = 2",
                list(LOCK_KEY),
            )
            return cursor.fetchone()[0]

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
