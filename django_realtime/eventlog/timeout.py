"""Every other database's tailer: a gap is waited for GAP_TIMEOUT seconds, then skipped and recorded.

The record makes every process and every replay agree (see
``django_realtime.skips``).
"""

from __future__ import annotations

import time
from datetime import timedelta

from django.utils import timezone

from .. import skips
from ..cursor import Cursor
from .rows import PAGE, Row
from .tailers import GAP_RECHECK, Tailer


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
        from ..conf import realtime_settings

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
        from ..models import Event

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
