"""Memory for catching up: each stream writes history in pieces, and the process lends bytes for them.

A stream far behind (``lastEventId=0``, a reconnect after a deploy) used to
build its whole backlog into one chunk and hold it, encoded, for as long as
its client did not read: a hundred clients that never read could take
hundreds of megabytes.  Now a stream takes at most ``PIECE`` bytes of events
at a time (one event at least, which ``MAX_DATA_SIZE`` bounds), writes them,
and only then takes the next: what it holds is one piece.  And a piece
larger than ``FREE`` (a live event is smaller) is paid for out of one
budget per process, ``CATCH_UP_MEMORY`` bytes, taken before the piece is
read or encoded and given back once the server has taken the piece: a
stream that finds the budget spent waits for it rather than allocating, and
ends (its client resumes later) if it waits longer than ``READ_TIMEOUT``.
"""

from __future__ import annotations

import asyncio
import threading
import time

from django.db import OperationalError

#: Bytes of event data one stream takes from the buffer or the log at a time (at least one event).
PIECE = 64 * 1024
#: Bytes a piece may take without paying: a live event, a small batch.
FREE = 16 * 1024
#: What a read of the log pays up front: the rows read and the bytes they encode to.
READ_COST = 2 * PIECE
#: Seconds between two looks at the budget by a coroutine waiting for it.
ASYNC_POLL = 0.02


class Budget:
    """At most *total* bytes lent at once; take() waits for them, give() returns them."""

    __slots__ = ("total", "lent", "_lock", "_returned")

    def __init__(self, total: int) -> None:
        self.total = total
        self.lent = 0
        self._lock = threading.Lock()
        self._returned = threading.Condition(self._lock)

    def _fit(self, amount: int) -> int:
        # An amount above the whole budget is lent once nothing else is: it must be able to run.
        return min(amount, self.total)

    def try_take(self, amount: int) -> bool:
        """Lend *amount* bytes if the budget has them; return whether it did."""
        amount = self._fit(amount)
        with self._lock:
            if self.lent + amount > self.total:
                return False
            self.lent += amount
            return True

    def take(self, amount: int, timeout: float) -> None:
        """Lend *amount* bytes, waiting up to *timeout* seconds (threads, gevent); else raise OperationalError."""
        fitted = self._fit(amount)
        deadline = time.monotonic() + timeout
        with self._returned:
            while self.lent + fitted > self.total:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise _spent(self.total, timeout)
                self._returned.wait(left)
            self.lent += fitted

    async def atake(self, amount: int, timeout: float) -> None:
        """Lend *amount* bytes, waiting up to *timeout* seconds on asyncio; else raise OperationalError.

        It looks again every ASYNC_POLL seconds: the budget is spent only
        while many clients catch up at once, and a coroutine cannot wait on
        the threads' condition.
        """
        deadline = time.monotonic() + timeout
        while not self.try_take(amount):
            if time.monotonic() >= deadline:
                raise _spent(self.total, timeout)
            await asyncio.sleep(ASYNC_POLL)

    def give(self, amount: int) -> None:
        """Return *amount* bytes lent by take()."""
        with self._returned:
            self.lent -= self._fit(amount)
            self._returned.notify_all()


def _spent(total: int, timeout: float) -> OperationalError:
    # An OperationalError, as for a read that gets no connection in time: the stream ends and its client resumes.
    return OperationalError(
        f"no memory to catch up within {timeout:g} s: CATCH_UP_MEMORY ({total} bytes) is lent to other streams"
    )


def cost(items: list) -> int:
    """Return what a piece of *items* pays to the budget: its bytes of data, or 0 if it is small enough to be free."""
    if len(items) == 1:
        size = len(items[0].data_json)
    else:
        size = sum(len(item.data_json) for item in items)
    return size if size > FREE else 0
