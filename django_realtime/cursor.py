"""Cursors: where a client is in the log, as the set of event ids it has seen or need not see.

Ids are drawn when a row is inserted, but transactions commit in any order,
so the log does not fill in id order: while a transaction that drew id 10 is
open, ids 11 and 12 may commit and be delivered.  A cursor therefore names
two things: a *top*, the highest id delivered, and the ids below it still
*pending* (drawn, not visible yet, maybe never), as runs of consecutive ids.
It *covers* every id up to the top that is not pending: those events the
client has (or they were rolled back, or belong to other channels).  A
resume from a cursor sends every event it does not cover: the ids above the
top, and the pending ids that have committed since.

The text form is what the SSE ``id:`` field and the WebSocket ``last_id``
carry, and what a client sends back, opaque to it:

* ``"4180"``: top 4180, nothing pending (the common case: an event id, as
  before there were pending ids; every integer cursor ever issued parses);
* ``"4180~4171,4175-4177"``: top 4180, pending 4171 and 4175 to 4177;
* ``"4171@4180~4175-4177"``: the same cursor as an event carries it when its
  own id, 4171, is below the top (it committed late): the part before ``@``
  names the event and is ignored on resume.

Pure: no Django import.  Every operation keeps a cursor within MAX_RUNS
runs; the caller decides what to do past it (``fits``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: Most runs of pending ids a cursor holds (its text stays under about 700 characters).
MAX_RUNS = 16
#: The largest id: a BigAutoField, signed 64 bits.
ID_MAX = 2**63 - 1

_NUMBER = r"(?:0|[1-9][0-9]{0,18})"
_RUN = rf"{_NUMBER}(?:-{_NUMBER})?"
_TEXT = re.compile(rf"(?:({_NUMBER})@)?({_NUMBER})(?:~({_RUN}(?:,{_RUN}){{0,{MAX_RUNS - 1}}}))?\Z")

Run = tuple[int, int]


class CursorError(ValueError):
    """A cursor's text is not one this package issues."""


class Cursor:
    """A position in the log: every id up to ``top`` but the ``pending`` runs (sorted, disjoint, inclusive)."""

    __slots__ = ("top", "pending", "_text")

    def __init__(self, top: int, pending: tuple[Run, ...] = ()) -> None:
        self.top = top
        self.pending = pending
        self._text: str | None = None

    # Reading ----------------------------------------------------------------

    @classmethod
    def parse(cls, text: object) -> Cursor:
        """Parse a cursor's text (an integer id too); raise CursorError for anything else."""
        match = _TEXT.match(text) if isinstance(text, str) else None
        if match is None or int(match.group(2)) > ID_MAX:
            shown = text[:40] if isinstance(text, str) else text
            raise CursorError(
                f"event id must be a decimal number from 0 to {ID_MAX}, or a cursor this server gave, got {shown!r}"
            )
        top = int(match.group(2))
        runs: list[Run] = []
        if match.group(3):
            for part in match.group(3).split(","):
                first, _, last = part.partition("-")
                runs.append((int(first), int(last or first)))
        if any(
            not (0 < first <= last < top) or (runs[index - 1][1] + 1 >= first if index else False)
            for index, (first, last) in enumerate(runs)
        ):
            raise CursorError(
                f"malformed cursor {match.group(0)[:40]!r}: runs must rise, not touch, stay below the top"
            )
        return cls(top, tuple(runs))

    @staticmethod
    def event_id(text: str) -> int:
        """Return the id of the event whose cursor *text* is (the part before ``@``, else the top)."""
        head, at, _ = text.partition("@")
        return int(head if at else head.partition("~")[0])

    def __str__(self) -> str:
        text = self._text
        if text is None:
            text = str(self.top)
            if self.pending:
                text += "~" + ",".join(str(a) if a == b else f"{a}-{b}" for a, b in self.pending)
            self._text = text
        return text

    def text_for(self, event_id: int) -> str:
        """Return the text an event of id *event_id* carries: this cursor, named after the event if it is late."""
        return str(self) if event_id == self.top else f"{event_id}@{self}"

    def __repr__(self) -> str:
        return f"Cursor({self})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Cursor):
            return NotImplemented
        return self.top == other.top and self.pending == other.pending

    def __hash__(self) -> int:
        return hash((self.top, self.pending))

    # Questions --------------------------------------------------------------

    def covers(self, event_id: int) -> bool:
        """Return whether *event_id* was delivered (or is none of the client's) by this cursor."""
        if event_id > self.top:
            return False
        for first, last in self.pending:
            if event_id < first:
                return True
            if event_id <= last:
                return False
        return True

    def dominates(self, other: Cursor) -> bool:
        """Return whether this cursor covers every id *other* covers."""
        if other.top > self.top:
            return False
        # Every id this one leaves pending must be left pending (or above the top) by the other.
        return all(_within(first, last, other) for first, last in self.pending if first <= other.top)

    @property
    def low(self) -> int:
        """Return the highest id below which everything is covered: the first pending id less one, or the top."""
        return self.pending[0][0] - 1 if self.pending else self.top

    def fits(self) -> bool:
        return len(self.pending) <= MAX_RUNS

    # Making others ----------------------------------------------------------

    def merge(self, other: Cursor) -> Cursor:
        """Return the cursor that covers what either covers."""
        if self.dominates(other):
            return self
        if other.dominates(self):
            return other
        high, low = (self, other) if self.top >= other.top else (other, self)
        # Pending in the result: pending in the higher one, and pending in the lower one or above its top.
        return _fitted(high.top, _intersect(high.pending, (*low.pending, (low.top + 1, high.top))))

    def meet(self, other: Cursor) -> Cursor:
        """Return a cursor that covers nothing either leaves out (the ids both cover, or fewer: within MAX_RUNS)."""
        top = min(self.top, other.top)
        runs = [(first, min(last, top)) for first, last in _union((*self.pending, *other.pending)) if first <= top]
        while runs and runs[-1][1] >= top:  # the top itself pending in the other: the meet stops below it
            top = runs.pop()[0] - 1
        return _fitted(top, tuple(runs))

    def without(self, event_id: int) -> Cursor:
        """Return this cursor with *event_id* (pending) covered: it has been delivered, or is dead."""
        runs = []
        for first, last in self.pending:
            if first <= event_id <= last:
                if first < event_id:
                    runs.append((first, event_id - 1))
                if event_id < last:
                    runs.append((event_id + 1, last))
            else:
                runs.append((first, last))
        return Cursor(self.top, tuple(runs))

    def advanced(self, ids: Iterable[int]) -> Cursor:
        """Return this cursor moved past the sorted *ids* above its top, the ones in between left pending."""
        runs = list(self.pending)
        top = self.top
        for event_id in ids:
            if event_id <= top:
                continue
            if event_id > top + 1:
                runs.append((top + 1, event_id - 1))
            top = event_id
        return Cursor(top, tuple(runs))

    def with_pending(self, runs: Iterable[Run]) -> Cursor:
        """Return the cursor at this top whose pending ids are *runs* (joined, clipped below the top)."""
        return Cursor(self.top, _union((first, min(last, self.top - 1)) for first, last in runs if first < self.top))

    def clip(self, event_id: int) -> Cursor:
        """Return the cursor that covers what this one covers up to *event_id*, and nothing above it."""
        if event_id >= self.top:
            return self
        top = event_id
        for first, last in self.pending:
            if first <= event_id <= last:
                top = first - 1  # the id itself is pending: stop below its run
                break
        return Cursor(top, tuple((first, last) for first, last in self.pending if last < top))


def _fitted(top: int, runs: tuple[Run, ...]) -> Cursor:
    """Return the cursor of *top* and *runs*, or, past MAX_RUNS runs, one that covers less and fits.

    Covering less is safe: a resume from it sends again some events the
    client has (it can tell them by their ids), and loses none.
    """
    if len(runs) <= MAX_RUNS:
        return Cursor(top, runs)
    return Cursor(runs[MAX_RUNS][0] - 1, runs[:MAX_RUNS])


def _within(first: int, last: int, other: Cursor) -> bool:
    """Return whether ids first..last are all left out by *other*: pending there, or above its top."""
    for low, high in other.pending:
        if low <= first and last <= high:
            return True
        if low <= first <= high:
            first = high + 1
            if first > last:
                return True
    return first > other.top


def _intersect(left: tuple[Run, ...], right: tuple[Run, ...]) -> tuple[Run, ...]:
    """Return the runs of ids in both sets of sorted runs."""
    right = tuple(sorted(right))
    out: list[Run] = []
    for a, b in left:
        for c, d in right:
            first, last = max(a, c), min(b, d)
            if first <= last:
                out.append((first, last))
    return tuple(_union(out))


def _union(runs: Iterable[Run]) -> tuple[Run, ...]:
    """Return sorted, disjoint, non-touching runs covering the given ones."""
    out: list[Run] = []
    for first, last in sorted(runs):
        if out and first <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], last))
        else:
            out.append((first, last))
    return tuple(out)


def runs_of(ids: Iterable[int]) -> tuple[Run, ...]:
    """Return the runs of the given ids."""
    return _union((event_id, event_id) for event_id in ids)
