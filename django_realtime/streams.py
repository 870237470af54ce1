"""Follow channels of the log: replay after a cursor, then live, with no gap.

:class:`Follower` is one stream's cursor and decides, without I/O, what the
stream does next (:meth:`Follower.step`): deliver a batch from the hub's
buffer, read a stretch from the log that the buffer no longer holds, send a
keepalive, or wait.  ``follow`` (threads, gevent) and ``afollow`` (asyncio)
are the two thin drivers that do the I/O and the waiting.  Replay and live
delivery share one cursor (cursor.py), so the handoff between them can
neither skip nor repeat an event: everything the cursor covers has been
delivered (or is not the stream's), everything else comes from the hub's
buffer, in the order it arrived (commit order), or, when the buffer no
longer reaches back that far, from the log, in id order, up to what the
hub's cursor covers.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from asgiref.sync import sync_to_async
from django.db import DatabaseError

from . import metrics
from .budget import PIECE, READ_COST, cost
from .cursor import Cursor
from .db import forget_connections, release_connections
from .eventlog import PAGE, Item, high_water_mark, read_page
from .framing import framed
from .names import reset_json

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator
    from threading import Event

    from .hub import Hub, Waiters

T = TypeVar("T")
logger = logging.getLogger("django_realtime")

#: What Follower.step() asks of its driver.
DELIVER, READ, WAIT = range(3)
#: What Parking.wake() asks of the server: nothing, a chunk written without blocking, or the stream's loop again.
STAY, WRITE, RESUME = range(3)
#: Rows a stream asks the log for at its first catch-up (then as many as fill a piece, up to eventlog.PAGE).
FIRST_ROWS = 64


def reset_item(reason: str, cursor: Cursor, resume: Cursor, channels: list[str]) -> Item:
    """Build the in-band ``reset`` event, for one stream: the client resumes from *resume*."""
    metrics.reset_sent(reason)
    return Item(resume.top, "", "reset", reset_json(reason, str(cursor), str(resume), channels), resume)


class Follower:
    """One stream's cursor over the log.

    ``step()`` touches neither the database nor the network; ``start()`` and
    ``catch_up()`` read the log and release their connection.  With
    *keepalive* None the stream never sends keepalives (WebSockets).

    A stream follows the hub's arrivals (``seq``), which come in commit
    order.  ``cursor`` covers what it has delivered: the cursor of the last
    event it sent, which a client resumes from.  A stream that starts at a
    client's cursor (another process may have issued it) sends only what
    that cursor does not cover, until the hub's own cursor covers all it
    does (``start``, then None).
    """

    __slots__ = ("channels", "hub", "seq", "cursor", "start_at", "reported", "due", "timed", "last_write", "rows")

    def __init__(
        self, hub: Hub, channels: frozenset[str], cursor: Cursor | int | None, keepalive: float | None
    ) -> None:
        if isinstance(cursor, int):  # an event id
            cursor = Cursor(cursor)
        self.hub = hub
        self.channels = channels
        #: Where the stream is in the hub's arrivals: None until the hub says where the cursor is (step()).
        self.seq: int | None
        self.start_at: Cursor | None
        if cursor is None:  # from now
            self.seq, self.cursor = hub.snapshot()
            self.start_at = None
        else:
            self.seq = None
            self.cursor = self.start_at = cursor
        #: The highest prune mark already reported with a reset.
        self.reported = 0
        # The hub's tick wakes every stream each hub.tick seconds: a stream
        # whose keepalive is that coarse waits for it instead of a timer of
        # its own (one per wait costs gevent a timer start and stop).
        if keepalive is None:
            self.timed, self.due = False, math.inf
        else:
            self.timed = keepalive < 2 * hub.tick
            self.due = keepalive if self.timed else keepalive - hub.tick
        self.last_write = time.monotonic()
        #: Rows to ask the log for at the next catch-up: as many as about one piece holds.
        self.rows = FIRST_ROWS

    @property
    def position(self) -> Cursor:
        """Return the cursor of what the stream has delivered (for logs and replies)."""
        return self.cursor

    def step(self, now: float) -> tuple[int, list[Item] | float | None]:
        """Return what to do next: ``(DELIVER, batch)``, ``(READ, None)`` or ``(WAIT, timeout)``.

        An empty batch is a keepalive.  Take the waiter group's signal before
        calling this, and wait on it after a WAIT: a batch that lands in
        between has already set it.
        """
        hub = self.hub
        seq = self.seq
        if seq is None:
            seq = self.seq = hub.locate(self.channels, self.cursor)
            if seq is None:
                return READ, None
        if seq < hub.seq:
            items, self.seq, cursor = hub.collect(self.channels, seq)
            if items is None:
                return READ, None
            start = self.start_at
            if start is not None:
                items = [item.under(start) for item in items if not start.covers(item.id)]
                if cursor.dominates(start):
                    self.start_at = None
            if items:
                self.cursor = items[-1].cursor
                self.last_write = now
                return DELIVER, items
        silence = now - self.last_write
        if silence >= self.due:
            self.last_write = now
            return DELIVER, []
        return WAIT, (self.due - silence if self.timed else None)

    def start(self) -> list[Item]:
        """Return a reset if the cursor is newer than anything the log ever held."""
        seq, current = self.hub.snapshot()
        if self.cursor.top <= current.top:
            return []
        try:
            with self.hub.reading():
                if self.cursor.top <= high_water_mark(self.hub.using):
                    return []  # another process served it; this hub will catch up
        finally:
            release_connections()
        reset = reset_item("unknown", self.cursor, current, sorted(self.channels))
        self.seq, self.cursor, self.start_at = seq, current, None
        return [reset]

    def catch_up(self) -> list[Item]:
        """Read the next piece from the log, after a reset if retention deleted some of it.

        The log is read for what the stream's cursor does not cover and the
        hub's cursor (taken first) does: once it has all of that, the stream
        goes on from the hub's arrivals at that moment.
        """
        from .models import PruneMark

        hub = self.hub
        start = self.cursor
        try:
            with hub.reading():
                seq, current = hub.snapshot()
                rows = self.rows
                # Read first, then look for prune marks above where we were: a
                # prune that lands between the two gives a reset, never a silent gap.
                page, reached = read_page(hub.using, self.channels, start.low, current.top, limit=rows, max_bytes=PIECE)
                marks = list(
                    PruneMark.objects.using(hub.using)
                    .filter(channel__in=list(self.channels), pruned_through__gt=max(start.low, self.reported))
                    .values_list("channel", "pruned_through")
                )
        finally:
            release_connections()
        # Cut by bytes: that many rows fill a piece.  Full by rows: ask for more next time.
        complete = reached >= current.top
        self.rows = max(1, len(page)) if len(page) < rows and not complete else min(PAGE, 2 * rows)
        items = [
            Item(row.id, row.channel, row.event, row.data_json, current.clip(row.id)).under(start)
            for row in page
            if not start.covers(row.id) and current.covers(row.id)
        ]
        self.cursor = start.merge(current if complete else current.clip(reached))
        # Complete: from here on the hub's arrivals, but those the cursor covers (another process saw them
        # first).  Else where the rest is, buffer or log, the next step() finds out.
        self.seq, self.start_at = (seq if complete else None), self.cursor
        if not marks:
            return self._wrote(items)
        # Events after the cursor are gone: say so, then go on with
        # every event still stored, so nothing that exists is skipped.
        self.reported = max(mark for _, mark in marks)
        return self._wrote([reset_item("expired", start, start, sorted(c for c, _ in marks)), *items])

    def _wrote(self, items: list[Item]) -> list[Item]:
        if items:
            self.last_write = time.monotonic()
        return items


class WriteMark(Protocol):
    """A watch on the server's writes of a stream (sse/watchdog.py): when the server took the chunk it holds."""

    #: time.monotonic() while the server holds a chunk it has not written, else 0.
    since: float


class Parking:
    """A caught-up stream's way to wait with no thread or greenlet of its own (issue 26).

    A server that can write to a stream's socket without blocking, from the
    hub's wake-ups of its group, sets ``enabled`` (the package's gunicorn
    worker).  ``follow()`` then yields this object where it would wait, with
    the stream's state here, and the server parks the stream with the hub
    (``Hub.park``).  Each wake-up calls ``wake()``, which does the plain
    case without I/O: a batch from the hub's buffer that needs no budget, or
    a keepalive, encoded for the server to write.  Anything else resumes
    the generator, which goes on from exactly where the stream is (the same
    Follower), sent the batch already taken from the hub, if any.
    """

    __slots__ = ("enabled", "follower", "group", "signal", "end", "encode", "write", "generator", "on_loop")

    follower: Follower
    group: Waiters
    signal: Event
    end: float
    encode: Callable[[list[Item]], bytes]
    write: WriteMark | None
    #: The generator that yields this object: a server parks only the stream it pulls itself.
    generator: object
    #: Under asyncio, the stream's writer while it waits parked on its loop (``afollow``).
    on_loop: OnLoop

    def __init__(self) -> None:
        self.enabled = False

    def begin(
        self,
        follower: Follower,
        group: Waiters,
        end: float,
        encode: Callable[[list[Item]], bytes],
        write: WriteMark | None,
    ) -> None:
        """Take the stream's state from its driver (``follow``, ``afollow``), which has just joined *group*."""
        self.follower, self.group, self.end, self.encode, self.write = follower, group, end, encode, write

    def may_park(self, now: float) -> bool:
        """Return whether a stream whose step says WAIT, untimed, may wait parked.

        Not within two ticks of its lifetime's end: its own wait ends it on
        time, where a parked stream is looked at only at its group's tick.
        """
        hub = self.follower.hub
        return self.enabled and not hub.draining and self.end - now > 2 * hub.tick

    def wake(self, now: float, shared: dict[object, object]) -> tuple[int, bytes | list[Item] | None]:
        """Return what a wake-up of the parked stream asks: ``(STAY, None)``, ``(WRITE, chunk)``, ``(RESUME, batch)``.

        The batch of a RESUME, if not None, was taken from the hub already:
        send it to the generator, which delivers it first.  *shared* is the
        dict of the group's streams at this wake-up (``Parked.wake``): a
        stream with nothing of its own to filter (no start cursor) takes the
        chunk another made at the same seq, while the hub has not changed,
        instead of collecting and encoding the same events again.
        """
        follower = self.follower
        if not self.may_park(now):  # drain, or the lifetime's end near: the generator ends the stream
            return RESUME, None
        key = None
        if follower.start_at is None and follower.seq is not None:
            key = (follower.seq, self.encode, follower.hub.changes)  # the count before the step: see Hub.changes
            made: Any = shared.get(key)
            if made is not None:
                follower.seq, follower.cursor, written, events, again = made
                follower.last_write = now
                if again is not None:  # counted as written, as encode() would have
                    again(events, len(written))
                return WRITE, written
        action, value = follower.step(now)
        if action == WAIT:
            return (STAY, None) if value is None else (RESUME, None)
        if action == READ:
            return RESUME, None
        batch: list[Item] = value  # type: ignore[assignment]
        if cost(batch):  # a piece that pays to the budget: its wait for it needs a greenlet
            return RESUME, batch
        try:
            chunk = self.encode(batch)
        except Exception:  # the generator encodes it again, and ends the stream at the event that fails
            return RESUME, batch
        if key is not None and batch:  # events (a keepalive is each stream's own)
            shared[key] = (follower.seq, follower.cursor, chunk, len(batch), getattr(self.encode, "again", None))
        return WRITE, chunk


class OnLoop:
    """A stream parked on its asyncio loop, whose wake-ups write with the server's *write* (issue 26).

    ``afollow()`` awaits ``park()``; each wake-up of the stream's group runs
    ``wake()`` on the loop (``Hub.park_on``), which writes the plain case
    (``Parking.wake``) with *write*: a function that writes the bytes to the
    connection without blocking and returns False, writing nothing, when it
    cannot (the server's buffer is full, the connection is going).  Anything
    else, and a chunk not written, is handed to the waiting task: it goes
    on the ordinary way, through the server's ``send()``.
    """

    __slots__ = ("parking", "write", "chunked", "resume")

    def __init__(self, parking: Parking, write: Callable[[bytes], bool], chunked: bool) -> None:
        self.parking = parking
        self.write = write
        #: Whether the response is in HTTP/1.1 chunks: each written chunk is framed (once per group's wake-up).
        self.chunked = chunked
        self.resume: asyncio.Future[object] | None = None

    async def park(self, hub: Hub, group: Waiters, signal: Event) -> object:
        """Wait parked; return what a wake-up hands back: None, a batch to deliver or a chunk to send."""
        loop = asyncio.get_running_loop()
        resume = self.resume = loop.create_future()
        if not hub.park_on(loop, group, self, signal):
            return None
        try:
            return await resume
        finally:
            self.resume = None

    def wake(self, now: float, shared: dict[object, object]) -> bool:
        """Write what the wake-up brings, or hand it to the task; return whether the stream stays parked."""
        resume = self.resume
        if resume is None or resume.done():  # its task was cancelled: the stream is gone
            return False
        try:
            action, value = self.parking.wake(now, shared)
        except Exception:  # a bug must not lose the stream: its task goes on
            logger.exception("django_realtime: a parked stream's wake-up failed")
            action, value = RESUME, None
        if action == STAY:
            return True
        if action == WRITE:
            chunk: bytes = value  # type: ignore[assignment]
            if self.write(framed(shared, chunk) if self.chunked else chunk):
                return True
        resume.set_result(value)
        return False


def _batch(items: list[Item]) -> list[Item]:
    return items


def follow(
    hub: Hub,
    channels: frozenset[str],
    cursor: Cursor | None,
    keepalive: float,
    encode: Callable[[list[Item]], T] = _batch,  # type: ignore[assignment]
    first: T | None = None,
    lifetime: float | None = None,
    parting: Callable[[], T] | None = None,
    write: WriteMark | None = None,
    parking: Parking | None = None,
) -> Iterator[T]:
    """Yield *first* if given, then ``encode(batch)`` for each batch of events after *cursor*.

    A batch is empty after *keepalive* seconds of silence.  The stream goes
    on forever, or ends once *lifetime* seconds (less up to a tenth, so that
    streams opened together do not all end together) have passed and it has
    nothing more to send.  It also ends, after ``parting()`` if given, once
    it has nothing more to send while the hub drains (the server shuts
    down).  *write*, if given, is the hub's watch on the server's writes:
    its ``since`` is set while the server holds a chunk it has not written.
    *parking*, once its server enables it, is yielded instead of waiting
    (see Parking); what is sent back is a batch to deliver first, or None.
    A waiting stream's memory is mostly its stack, so this driver is kept
    flat (*encode*, *first* and *write* each spare a generator level).
    """
    monotonic = time.monotonic
    if first is not None:
        if write is not None:
            write.since = monotonic()
        yield first
        if write is not None:
            write.since = 0.0
    # The server pulls this after the view has returned, out of any
    # ATOMIC_REQUESTS transaction: the connection the view used can go now,
    # and its wrapper (this thread, or greenlet, waits for as long as the stream lasts).
    forget_connections()
    follower = Follower(hub, channels, cursor, keepalive)
    group = hub.join(channels)
    end = _end_of(lifetime, monotonic())
    budget = hub.budget
    held = 0  # bytes of the budget that the piece last written holds (budget.py)
    if parking is not None:
        parking.begin(follower, group, end, encode, write)  # type: ignore[arg-type]
    try:
        resets = follower.start()
        chunk: T | None = encode(resets) if resets else None
        last = False  # the chunk is the stream's last
        while True:
            # One place that yields, so that one place tells the hub what the server holds.
            if chunk is not None:
                if write is not None:
                    write.since = monotonic()
                yield chunk
                if write is not None:
                    write.since = 0.0
                chunk = None
            if last:
                return
            if held:  # the server has taken the last piece
                budget.give(held)
                held = 0
            signal = group.signal
            now = monotonic()
            action, value = follower.step(now)
            if action == WAIT and value is None and parking is not None and parking.may_park(now):
                parking.signal = signal
                batch = yield parking  # type: ignore[misc]
                if batch is None:  # woken, or handed back by the server: step again
                    continue
                action, value = DELIVER, batch
            if action == READ:
                budget.take(READ_COST, hub.read_timeout)
                held = READ_COST
                action, value = DELIVER, follower.catch_up()
                forget_connections()
                if not value:
                    continue
            elif action == DELIVER:
                charge = cost(value)  # type: ignore[arg-type]
                if charge:
                    budget.take(charge, hub.read_timeout)
                    held = charge
            if action == DELIVER:
                try:
                    chunk = encode(value)  # type: ignore[arg-type]
                except Exception:
                    chunk, last = _encodable(encode, value), True  # type: ignore[arg-type]
            elif now >= end:
                return
            elif hub.draining:
                if parting is None:
                    return
                chunk, last = parting(), True
            else:
                signal.wait(_until(value, now, end))  # type: ignore[arg-type]
    except DatabaseError:
        _log_end(channels, follower)
    finally:
        if held:
            budget.give(held)
        hub.leave(group)


async def afollow(
    hub: Hub,
    channels: frozenset[str],
    cursor: Cursor | None,
    keepalive: float,
    encode: Callable[[list[Item]], T] = _batch,  # type: ignore[assignment]
    lifetime: float | None = None,
    parting: Callable[[], T] | None = None,
    parking: Parking | None = None,
) -> AsyncIterator[T]:
    """Yield ``encode(batch)`` for each batch of events of *channels* after *cursor*, on asyncio, as ``follow``.

    It ends, after ``parting()`` if given, once it has nothing more to send
    while the hub drains (an ASGI server told to stop: shutdown.py).  With
    *parking* enabled (its ``on_loop`` set), a caught-up stream waits parked
    on its loop: the group's wake-ups write its chunks there (``OnLoop``),
    and its task waits until one hands it something back.
    """
    follower = Follower(hub, channels, cursor, keepalive)
    group = hub.join(channels)
    monotonic = time.monotonic
    end = _end_of(lifetime, monotonic())
    budget = hub.budget
    held = 0  # as in follow()
    if parking is not None:
        parking.begin(follower, group, end, encode, None)  # type: ignore[arg-type]
    try:
        resets = await sync_to_async(follower.start, thread_sensitive=False)()
        if resets:
            yield encode(resets)
        while True:
            if held:
                budget.give(held)
                held = 0
            signal = hub.async_signal(group)
            parked = group.signal
            now = monotonic()
            action, value = follower.step(now)
            if action == WAIT and value is None and parking is not None and parking.may_park(now):
                signal.cancel()
                handed = await parking.on_loop.park(hub, group, parked)
                if handed is None:  # woken before it parked, or handed back: step again
                    continue
                if not isinstance(handed, list):  # a chunk its writer could not write: the ordinary way
                    yield handed  # type: ignore[misc]
                    continue
                action, value = DELIVER, handed
            if action == READ:
                await budget.atake(READ_COST, hub.read_timeout)
                held = READ_COST
                action, value = DELIVER, await sync_to_async(follower.catch_up, thread_sensitive=False)()
                if not value:
                    continue
            elif action == DELIVER:
                charge = cost(value)  # type: ignore[arg-type]
                if charge:
                    await budget.atake(charge, hub.read_timeout)
                    held = charge
            if action == DELIVER:
                try:
                    chunk = encode(value)  # type: ignore[arg-type]
                except Exception:
                    last = _encodable(encode, value)  # type: ignore[arg-type]
                    if last is not None:
                        yield last
                    return
                yield chunk
            elif now >= end:
                signal.cancel()
                return
            elif hub.draining:
                signal.cancel()
                if parting is not None:
                    yield parting()
                return
            else:
                await wait_signal(signal, _until(value, now, end))  # type: ignore[arg-type]
    except DatabaseError:
        _log_end(channels, follower)
    finally:
        if held:
            budget.give(held)
        hub.leave(group)


def _encodable(encode: Callable[[list[Item]], T], batch: list[Item]) -> T | None:
    """Return the encoding of the events of *batch* before the first that cannot be encoded, or None; log it.

    The stream then ends, cleanly: an exception would break the connection
    under WSGI and leave it open and silent under daphne, and what came
    before the event in its batch would be lost.  The client reconnects
    from the last event it got.
    """
    for index, item in enumerate(batch):
        try:
            encode([item])
        except Exception:
            logger.error(
                "django_realtime ends a stream at event %s of %s: it cannot be encoded",
                item.id,
                item.channel or "-",
                exc_info=True,
            )
            return encode(batch[:index]) if index else None
    return encode(batch)


def _end_of(lifetime: float | None, now: float) -> float:
    return math.inf if lifetime is None else now + lifetime * random.uniform(0.9, 1.0)


def _until(timeout: float | None, now: float, end: float) -> float | None:
    """Return how long to wait: *timeout*, but not past *end*."""
    if end == math.inf:
        return timeout
    left = end - now
    return left if timeout is None else min(timeout, left)


def _log_end(channels: frozenset[str], follower: Follower) -> None:
    # The stream ends, cleanly: its client reconnects with the id of the
    # last event it got, as after any end of stream, and misses nothing.
    # (An exception would leave the connection open under daphne, and an
    # EventSource waits on a silent connection forever.)
    logger.warning(
        "django_realtime ends a stream of %s at %s: the event log cannot be read, or no memory to catch up",
        ", ".join(sorted(channels)),
        follower.position,
        exc_info=True,
    )


async def wait_signal(signal: asyncio.Future[None], timeout: float | None) -> None:
    """Wait for a future of ``hub.async_signal()``, at most *timeout* seconds."""
    if timeout is None:
        await signal
        return
    try:
        async with asyncio.timeout(timeout):
            await signal
    except TimeoutError:
        pass
