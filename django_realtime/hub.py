"""The per-process hub: one reader of the log, shared by every stream of the process.

The hub's thread (a greenlet under gevent) reads new rows once per process
and keeps the newest ``BUFFER_SIZE`` of them in memory, indexed by channel.
Streams wait without a database connection, in *waiter groups*: all the
streams of one process that follow the same set of channels share one group,
and a batch wakes only the groups of the channels it carries, each once.  So
an event costs what its subscribers cost, not what every stream costs.  A
group's threads and greenlets wait on one ``threading.Event`` (gevent's own
``Event`` once the server has monkey-patched); its coroutines on one asyncio
future per event loop, resolved through ``loop.call_soon_threadsafe``, once
per loop and batch.  Every KEEPALIVE/2 a tick wakes every group, so that
silent streams send their keepalives.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Protocol

from django.core.signals import setting_changed
from django.db import OperationalError, connections

from . import metrics
from .backends import get_backend
from .budget import PIECE, Budget
from .conf import realtime_settings
from .cursor import Cursor
from .daemon import Daemon
from .db import interrupt
from .eventlog import Item, Row
from .reader import Reader
from .retention import Pruner

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from .backends.base import BaseBackend

logger = logging.getLogger("django_realtime")

#: A tick (every KEEPALIVE/2 seconds, each waiter group woken once) is spread over this many slices.
TICK_SLICES = 16
#: Replaced readers that may stay blocked at once; past that a hung reader is left to its query.
MAX_STUCK_READERS = 3


class Resolvable(Protocol):
    """What a wake-up resolves: an asyncio future, or anything with these of a future's methods."""

    def get_loop(self) -> asyncio.AbstractEventLoop: ...

    def done(self) -> bool: ...

    def set_result(self, result: None) -> None: ...


class Parked(Protocol):
    """A stream that waits with no thread of its own: its group's wake-ups run it (``Hub.park``)."""

    def wake(self, now: float, shared: dict[object, object]) -> bool:
        """Do what the wake-up asks, without blocking and without raising; return whether to stay parked.

        *shared* is one dict for the streams of one group at one wake-up:
        what one of them made (a batch encoded, a chunk framed) another at
        the same place in the arrivals may take instead of making it again.
        """
        ...


class Waiters:
    """The streams of one process that follow one set of channels, and what they wait on."""

    __slots__ = ("channels", "count", "signal", "futures", "parked", "on_loops", "wakeups")

    def __init__(self, channels: frozenset[str]) -> None:
        self.channels = channels
        #: Streams in the group.
        self.count = 0
        #: Set at the group's next wake-up; take it before looking at the hub.
        self.signal = threading.Event()
        #: One future per waiting coroutine, its own: it may cancel it without harm to the others.
        self.futures: list[Resolvable] = []
        #: Streams parked here: each wake-up runs them, where it happens (the reader, the ticker, a drain).
        self.parked: list[Parked] = []
        #: Streams parked on an event loop: each wake-up runs them there (``Hub.park_on``).
        self.on_loops: dict[asyncio.AbstractEventLoop, list[Parked]] = {}
        #: Wake-ups so far, batches and ticks: for tests and benchmarks.
        self.wakeups = 0


class Seats:
    """Open streams of a process, at most *limit* of them (None: any number)."""

    __slots__ = ("limit", "taken", "_lock")

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.taken = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        """Take a seat; return False, taking none, if all are taken."""
        with self._lock:
            if self.limit is not None and self.taken >= self.limit:
                return False
            self.taken += 1
            return True

    def give(self) -> None:
        """Give a seat back: its stream has ended."""
        with self._lock:
            self.taken -= 1

    def giver(self) -> Callable[[], None]:
        """Return a callable that gives one seat back, however many times and from wherever it is called."""
        given = False

        def give() -> None:
            nonlocal given
            with self._lock:  # the check and the count at once: two threads give it back once
                if not given:
                    given = True
                    self.taken -= 1

        return give


class ChannelBuffer:
    """The buffered events of one channel: every one that arrived in the hub after ``floor_seq``.

    ``floor`` is the hub's cursor at ``floor_seq``: every event of the
    channel that it covers arrived then or before, and may be gone.
    """

    __slots__ = ("floor", "floor_seq", "seqs", "items", "groups")

    def __init__(self, floor: Cursor, floor_seq: int) -> None:
        self.floor = floor
        self.floor_seq = floor_seq
        #: The hub's arrival number of each buffered event (rising), and the events.
        self.seqs: list[int] = []
        self.items: list[Item] = []
        #: The waiter groups that follow this channel.
        self.groups: list[Waiters] = []


class Hub:
    """Read the log once per process and fan new events out to the streams that follow their channels.

    Two threads (greenlets under gevent) serve a hub: the *reader*
    (``reader.py``), the only one that queries the log, and the *ticker*,
    which wakes the waiter groups for their keepalives and watches the
    reader.  The ticker never waits on the database, so a database that
    hangs delays events, never keepalives.
    """

    def __init__(
        self,
        backend: BaseBackend,
        *,
        using: str,
        buffer_size: int,
        buffer_bytes: int,
        keepalive: float = 15.0,
        read_timeout: float = 10.0,
        max_streams: int | None = None,
        catch_up_connections: int = 4,
        catch_up_memory: int = 16 * 1024 * 1024,
    ) -> None:
        self.backend = backend
        self.using = using
        self.buffer_size = buffer_size
        self.buffer_bytes = buffer_bytes
        #: Seconds between two wake-ups of every stream, for their keepalives.
        self.tick = keepalive / 2
        #: Seconds a query of the reader may take before the reader is replaced.
        self.read_timeout = read_timeout
        #: The SSE streams this process serves, MAX_STREAMS at most.
        self.seats = Seats(max_streams)
        #: Streams reading the log themselves (history older than the buffer), at most this many at once.
        self.catch_up_connections = catch_up_connections
        self._catch_ups = threading.BoundedSemaphore(catch_up_connections)
        #: Bytes that streams catching up may hold at once, in pieces (budget.py).
        self.budget = Budget(catch_up_memory)
        #: What else runs on the ticker's passes (on_tick()).
        self._tick_hooks: tuple[Callable[[float], None], ...] = ()
        self._next_slice = self._next_period = 0.0
        #: When the reader reads the log next, unless something wakes it first.
        self.next_read = 0.0
        #: The groups still to wake in this tick, and how many to wake per slice.
        self._ticking: deque[Waiters] = deque()
        self._slice = 0
        self._bytes = 0
        #: The hub's cursor: every id it covers has arrived (or is dead).  Events arrive in commit
        #: order, each with a number (seq); every one that arrived after floor_seq is buffered.
        self.cursor = Cursor(0)
        self.seq = 0
        self.floor_seq = 0
        #: Changes to what collect() returns so far (arrivals, prunes, trims): a batch made at one count is
        #: another stream's too, at the same seq, while the count stays (Parking.wake).
        self.changes = 0
        #: The cursor at floor_seq: what the events dropped from the buffer (and those before the start) cover.
        self.floor_cursor = Cursor(0)
        #: The reader's last failure, until a read succeeds.
        self.error: BaseException | None = None
        #: time.monotonic() of the last successful read, or None.
        self.last_read: float | None = None
        #: Readers replaced so far, hung or dead.
        self.replaced = 0
        #: Reads of the log by the reader, and the rows they returned, so far.
        self.reads = 0
        self.rows_read = 0
        #: Catch-ups the reader has begun (each reads until the log has nothing new), and the number of the
        #: last one it finished: see fresh_cursor().
        self.catch_ups_begun = 0
        self.catch_ups_done = 0
        self._caught_up = threading.Condition(threading.Lock())
        self._items: deque[Item] = deque()
        self._channels: dict[str, ChannelBuffer] = {}
        self._groups: dict[frozenset[str], Waiters] = {}
        self._lock = threading.Lock()
        self._poke = threading.Event()
        self._ready = threading.Event()
        self._stop = threading.Event()
        self.stopping = False
        #: Set by drain(): the server is shutting down, and each stream ends once it has sent what it has.
        self.draining = False
        #: Called once the hub drains, by connections that need no waiter group to hear of it (WebSockets).
        self.on_drain: set[Callable[[], None]] = set()
        self._reader: Reader | None = None
        #: Replaced readers still blocked somewhere (a connect to a host that does not answer).
        self._stuck: list[Reader] = []
        self._ticker: Daemon | None = None
        self._backend_started = False
        self._pruner: Pruner | None = None

    # Life cycle -----------------------------------------------------------

    def ensure_ready(self, timeout: float = 10.0) -> bool:
        """Start the hub if needed; return whether it has read the log and its reader runs."""
        starts: list[Reader | Daemon | Pruner] = []
        with self._lock:
            if self.stopping:
                return False
            # Daemon.alive(), not Thread.is_alive(): under gevent that switches, with the lock held (daemon.py).
            if self._reader is None or not self._reader.alive():
                # The reader first: its first read makes the hub ready.
                starts.append(self._replace_reader("ended" if self._reader is not None else None))
            reader = self._reader
            if self._ticker is None or not self._ticker.alive():
                starts.append(ticker := Daemon(self._run_ticker, "django-realtime-tick"))
                self._ticker = ticker
                interval = realtime_settings.PRUNE_INTERVAL
                if interval and self._pruner is None:
                    starts.append(pruner := Pruner(self.using, interval))
                    self._pruner = pruner
        # Out of the lock: under gevent a start switches, and the requests that came meanwhile
        # would wait for the lock with their whole call chain on their stacks (daemon.py).
        for thread in starts:
            thread.start()
        assert reader is not None  # replaced just above
        return self._ready.wait(timeout) and reader.alive()

    @property
    def ready(self) -> bool:
        """Return whether the hub has started: its horizon is a safe place to follow from."""
        return self._ready.is_set()

    def stop(self) -> None:
        """Stop the reader, the ticker and the backend's listener."""
        self.stopping = True
        self._stop.set()
        self._poke.set()
        for daemon in (self._reader.daemon if self._reader else None, self._ticker):
            if daemon is not None:
                daemon.join(5)
        if self._pruner is not None:
            self._pruner.stop()
        self.backend.stop()

    def drain(self) -> None:
        """Have every stream end as soon as it has sent what it has: the server is shutting down.

        The hub itself reads on: streams still catching up get their events
        first.  A stream opened from now on ends as soon as it has caught up.
        """
        self.draining = True
        with self._lock:
            groups = list(self._groups.values())
        self._wake(groups)
        for callback in list(self.on_drain):
            callback()

    def poke(self) -> None:
        """Ask the reader to look at the log now."""
        self._poke.set()

    def fresh_cursor(self, timeout: float) -> Cursor | None:
        """Return a cursor that covers every event committed before this call, having the reader read now.

        The hub's cursor alone may lag an event committed a moment ago (a
        wake-up on its way, a poll interval): a page rendered from the
        database, with that cursor, would get that event again.  So this
        waits for a catch-up of the reader that began after the call, which
        sees every commit before it (and names the ids still in flight).
        Return None if none finished within *timeout* seconds.
        """
        with self._caught_up:
            wanted = self.catch_ups_begun + 1
        self.poke()
        deadline = time.monotonic() + timeout
        with self._caught_up:
            while self.catch_ups_done < wanted:
                left = deadline - time.monotonic()
                if left <= 0 or not self.healthy():
                    return None
                self._caught_up.wait(min(left, 0.1))
            return self.cursor

    def begin_catch_up(self) -> int:
        """Note that the reader begins reading the log until it has nothing new; return the catch-up's number."""
        with self._caught_up:
            self.catch_ups_begun += 1
            return self.catch_ups_begun

    def end_catch_up(self, number: int) -> None:
        """Note that catch-up *number* has read everything committed before it began."""
        with self._caught_up:
            self.catch_ups_done = max(self.catch_ups_done, number)
            self._caught_up.notify_all()

    def take_poke(self) -> bool:
        """Return whether the hub was poked since the last call."""
        poked = self._poke.is_set()
        self._poke.clear()
        return poked

    def wait_poke(self, timeout: float) -> None:
        self._poke.wait(timeout)

    def status(self) -> dict[str, object]:
        """Describe the hub's health: for a health check, and for logs."""
        reader = self._reader
        now = time.monotonic()
        waiting = None if reader is None else reader.tailer.waiting_since
        held_back = reader is not None and getattr(reader.tailer, "held_back", False)
        return {
            "ready": self.ready,
            "reader": "running" if reader is not None and reader.alive() else "stopped",
            "error": None if self.error is None else f"{type(self.error).__name__}: {self.error}",
            "seconds_since_read": None if self.last_read is None else round(now - self.last_read, 3),
            "horizon": self.horizon,
            "streams": self.seats.taken,
            "parked": self.parked(),
            "cursor": str(self.cursor),
            "waiting_for_publishers": None if waiting is None else round(now - waiting, 3),
            "held_back": held_back,
            "readers_replaced": self.replaced,
            "log_reads": self.reads,
            "rows_read": self.rows_read,
        }

    def parked(self) -> int:
        """Return how many streams wait parked (``park()``, ``park_on()``), less those a wake-up is running."""
        with self._lock:
            return sum(
                len(group.parked) + sum(len(streams) for streams in group.on_loops.values())
                for group in self._groups.values()
            )

    def healthy(self) -> bool:
        """Return whether the hub reads the log now: started, its reader running, its last read a success."""
        reader = self._reader
        return self.ready and reader is not None and reader.alive() and self.error is None

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Let a stream read the log on its own connection, one of CATCH_UP_CONNECTIONS, for READ_TIMEOUT at most.

        After a restart every client whose cursor is older than the new
        buffer reads the log at once: they take turns, so a reconnect storm
        opens CATCH_UP_CONNECTIONS connections, not one per client.  A
        stream that gets no turn within READ_TIMEOUT, or whose read takes
        longer, gets an OperationalError (and ends; its client resumes later).
        """
        if not self._catch_ups.acquire(timeout=self.read_timeout):
            raise OperationalError(
                f"no turn to read the event log within {self.read_timeout:g} s: "
                f"all CATCH_UP_CONNECTIONS ({self.catch_up_connections}) are busy"
            )
        timer = threading.Timer(self.read_timeout, interrupt, args=(connections[self.using],))
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()
            self._catch_ups.release()

    # The reader's calls ---------------------------------------------------

    @property
    def horizon(self) -> int:
        """Return the highest id the hub has read."""
        return self.cursor.top

    def started(self, cursor: Cursor) -> None:
        """Start following the log from *cursor*: every id it covers is visible or dead."""
        with self._lock:
            self.cursor = self.floor_cursor = cursor
            self.changes += 1
        if not self._backend_started:
            self._backend_started = True
            self.backend.start(self.poke, self.using)
        self.next_read = time.monotonic() + self.read_every()
        self._ready.set()

    def read_succeeded(self) -> None:
        self.error = None
        self.last_read = time.monotonic()

    def read_failed(self, exc: BaseException) -> None:
        self.error = exc

    def read_every(self) -> float:
        """Return how long the log may go unread if nothing wakes the hub: a poll interval, a gap's recheck, a tick."""
        reader = self._reader
        recheck = reader.tailer.recheck_after if reader is not None else None
        return min(t for t in (self.backend.poll_interval, recheck, self.tick) if t is not None)

    # The ticker -----------------------------------------------------------

    def on_tick(self, hook: Callable[[float], None]) -> None:
        """Have the ticker call *hook* with time.monotonic() on each of its passes (0.25 s apart at most).

        For housekeeping that must not wait on the database: *hook* runs on
        the ticker's thread and must return quickly (a transport's watch on
        its clients, such as ``sse/watchdog.py``).
        """
        with self._lock:
            self._tick_hooks = (*self._tick_hooks, hook)

    def _run_ticker(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            try:
                if now >= self._next_slice:
                    self._tick(now)
                self._supervise(now)
                for hook in self._tick_hooks:
                    hook(now)
                metrics.flush()
            except Exception:  # the ticker must outlive any bug in what it calls
                logger.exception("django_realtime hub tick failed")
            self._stop.wait(max(0.01, min(self._next_slice - time.monotonic(), 0.25)))

    def _supervise(self, now: float) -> None:
        """Replace a reader that died or hangs: streams must never be left unwoken."""
        replacement = None
        with self._lock:
            reader = self._reader
            if reader is None or self.stopping:
                return
            if not reader.alive():
                replacement = self._replace_reader("ended")
            elif reader.hung(now, self.read_timeout):
                self.error = TimeoutError(f"the event log did not answer within {self.read_timeout:g} s")
                reader.interrupt()
                self._stuck = [stuck for stuck in self._stuck if stuck.alive()]
                if len(self._stuck) < MAX_STUCK_READERS:
                    self._stuck.append(reader)
                    replacement = self._replace_reader("hung")
        if replacement is not None:
            replacement.start()

    def _replace_reader(self, why: str | None) -> Reader:
        """Put a new reader in place and return it (call with the lock held, then start it without the lock).

        The old one, if any, changes nothing more.
        """
        old = self._reader
        if old is not None:
            old.superseded = True
            self.replaced += 1
            metrics.reader_restarted(why or "ended")
            if why == "ended":
                self.error = self.error or RuntimeError("the hub's reader ended")
                logger.error("django_realtime hub reader ended unexpectedly; starting another")
            else:
                logger.error(
                    "django_realtime hub reader hung for over %g s on the event log; starting another",
                    self.read_timeout,
                )
        reader = self._reader = Reader(self)
        self.next_read = 0.0
        return reader

    def _tick(self, now: float) -> None:
        """Wake the next slice of the waiter groups, so that every group is woken once per tick.

        Streams wait without a timer of their own (one per wait costs gevent a
        timer start and stop): these wake-ups let those silent for long
        enough send a keepalive.  A tick is spread over TICK_SLICES slices,
        so that 10,000 streams do not all wake, and all write, at once.
        """
        self._next_slice = now + self.tick / TICK_SLICES
        ticking = self._ticking
        if not ticking and now >= self._next_period:
            self._next_period = now + self.tick
            ticking.extend(self._groups.values())
            self._slice = -(-len(ticking) // TICK_SLICES)  # ceil
        self._wake([ticking.popleft() for _ in range(min(self._slice, len(ticking)))])

    # Buffering ------------------------------------------------------------

    def append(
        self,
        rows: list[Row],
        before: Cursor,
        after: Cursor,
        source: Reader | None = None,
        pruned: dict[str, int] | None = None,
    ) -> bool:
        """Take in *rows* (newly visible, in id order) that move the hub's cursor from *before* to *after*.

        Each becomes an event that arrives now, with its own cursor (see
        ``arrivals``), and wakes the groups of its channel.  *pruned* maps
        channels to the newest id retention deleted above *before*, unread:
        the buffer no longer holds every event of those channels it covers,
        so their streams read the log past it (and get a reset).  Return
        False, and change nothing, if *source* is a reader the hub replaced
        or *before* is not the hub's cursor.
        """
        woken: dict[int, Waiters] = {}
        with self._lock:
            if source is not None and source is not self._reader or before != self.cursor:
                return False
            channels = self._channels
            if pruned:
                for name in pruned:
                    buffer = channels.get(name)
                    if buffer is None:
                        buffer = channels[name] = ChannelBuffer(self.floor_cursor, self.floor_seq)
                    # Nothing it covers may be taken from the buffer: read the log, and be told.
                    buffer.floor, buffer.floor_seq = after, self.seq + len(rows)
                    for group in buffer.groups:
                        woken[id(group)] = group
            seq = self.seq
            for item in arrivals(rows, before, after):
                seq += 1
                item.seq = seq
                buffer = channels.get(item.channel)
                if buffer is None:
                    buffer = channels[item.channel] = ChannelBuffer(self.floor_cursor, self.floor_seq)
                buffer.seqs.append(seq)
                buffer.items.append(item)
                for group in buffer.groups:
                    woken[id(group)] = group
                self._bytes += _size(item)
                self._items.append(item)
            self.seq = seq
            self.cursor = after
            self.changes += 1
            if len(self._items) > 2 * self.buffer_size or self._bytes > self.buffer_bytes:
                self._trim()
        self._wake(woken.values())
        return True

    def _wake(self, groups: Iterable[Waiters]) -> None:
        """Wake every stream of *groups*, threads, greenlets and coroutines, once each."""
        loops: dict[asyncio.AbstractEventLoop, list[Resolvable]] = {}
        signals = []
        parked: list[tuple[Waiters, list[Parked]]] = []
        on_loops: dict[asyncio.AbstractEventLoop, list[tuple[Waiters, list[Parked], int]]] = {}
        with self._lock:
            for group in groups:
                group.wakeups += 1
                signals.append(group.signal)
                group.signal = threading.Event()
                if group.futures:
                    for future in group.futures:
                        loops.setdefault(future.get_loop(), []).append(future)
                    group.futures = []
                if group.parked:
                    parked.append((group, group.parked))
                    group.parked = []
                if group.on_loops:
                    for loop, streams in group.on_loops.items():
                        on_loops.setdefault(loop, []).append((group, streams, group.wakeups))
                    group.on_loops = {}
        for signal in signals:
            signal.set()
        for loop, futures in loops.items():
            try:
                loop.call_soon_threadsafe(_resolve, futures)
            except RuntimeError:  # the loop has closed; its streams are gone
                pass
        for loop, woken in on_loops.items():
            try:
                loop.call_soon_threadsafe(self._run_on_loop, loop, woken)
            except RuntimeError:
                pass
        if parked:
            _run_parked(parked, time.monotonic())

    def _trim(self) -> None:
        """Drop the oldest arrivals, down to BUFFER_SIZE events and half of BUFFER_BYTES."""
        items = self._items
        channels = self._channels
        dropped: dict[str, Item] = {}
        counts: dict[str, int] = {}
        while items and (len(items) > self.buffer_size or self._bytes > self.buffer_bytes // 2):
            item = items.popleft()
            self._bytes -= _size(item)
            self.floor_seq, self.floor_cursor = item.seq, item.cursor
            dropped[item.channel] = item
            counts[item.channel] = counts.get(item.channel, 0) + 1
        for name, last in dropped.items():
            buffer = channels[name]
            if last.seq > buffer.floor_seq:
                buffer.floor, buffer.floor_seq = last.cursor, last.seq
            count = counts[name]
            del buffer.seqs[:count]
            del buffer.items[:count]
            if not buffer.seqs and not buffer.groups:
                # Nothing buffered and nobody waiting: the hub's floor,
                # which is at least this channel's, stands for it.
                del channels[name]

    # Waiting --------------------------------------------------------------

    def join(self, channels: frozenset[str]) -> Waiters:
        """Add a stream of *channels* to the hub's waiters; call leave() with the result when it ends."""
        followed = False
        with self._lock:
            group = self._groups.get(channels)
            if group is None:
                group = self._groups[channels] = Waiters(channels)
                for name in channels:
                    buffer = self._channels.get(name)
                    if buffer is None:
                        buffer = self._channels[name] = ChannelBuffer(self.floor_cursor, self.floor_seq)
                    if not buffer.groups:  # the first stream of the channel: other processes' events wake us
                        self.backend.follow(name)
                        followed = True
                    buffer.groups.append(group)
            group.count += 1
        if followed:
            # Wake-ups for the channel did not wake this hub until now: read what one may have missed.
            self.poke()
        return group

    def leave(self, group: Waiters) -> None:
        """Remove a stream that joined *group*."""
        with self._lock:
            group.count -= 1
            if group.count or self._groups.get(group.channels) is not group:
                return
            del self._groups[group.channels]
            for name in group.channels:
                buffer = self._channels.get(name)
                if buffer is None:
                    continue
                buffer.groups.remove(group)
                if not buffer.groups:
                    self.backend.unfollow(name)
                    if not buffer.seqs:
                        del self._channels[name]

    def async_signal(self, group: Waiters) -> asyncio.Future[None]:
        """Return a new future of the running loop, resolved at *group*'s next wake-up.

        The future is the caller's alone (cancelling it harms nobody); the
        hub resolves all the futures of one loop with one call_soon_threadsafe.
        """
        future = asyncio.get_running_loop().create_future()
        self.register(group, future)
        return future

    def register(self, group: Waiters, waiter: Resolvable) -> None:
        """Have *group*'s next wake-up resolve *waiter*, on its loop: a future, or anything with its
        ``get_loop()``, ``done()`` and ``set_result()``."""
        with self._lock:
            group.futures.append(waiter)

    def park(self, group: Waiters, stream: Parked, signal: threading.Event) -> bool:
        """Have *group*'s wake-ups run *stream* until its ``wake()`` returns False.

        *signal* is the group's signal the stream took before it last looked
        at the hub: return False, parking nothing, if the group was woken
        since (the stream must look again).
        """
        with self._lock:
            if group.signal is not signal:
                return False
            group.parked.append(stream)
            return True

    def park_on(self, loop: asyncio.AbstractEventLoop, group: Waiters, stream: Parked, signal: threading.Event) -> bool:
        """Have *group*'s wake-ups run *stream* on *loop*, as ``park()`` does where they happen."""
        with self._lock:
            if group.signal is not signal:
                return False
            group.on_loops.setdefault(loop, []).append(stream)
            return True

    def _run_on_loop(self, loop: asyncio.AbstractEventLoop, woken: list[tuple[Waiters, list[Parked], int]]) -> None:
        """Run the streams parked on *loop* that wake-ups took, on it; park again those that stay.

        A wake-up that came while they ran did not see them (they were not
        parked): they run again until none came, then park.
        """
        for group, streams, seen in woken:
            while streams:
                now = time.monotonic()
                shared: dict[object, object] = {}
                streams = [stream for stream in streams if stream.wake(now, shared)]
                with self._lock:
                    if group.wakeups == seen:
                        if streams:
                            group.on_loops.setdefault(loop, []).extend(streams)
                        break
                    seen = group.wakeups

    def collect(self, channels: frozenset[str], seq: int) -> tuple[list[Item] | None, int, Cursor]:
        """Return the buffered events of *channels* that arrived after *seq*, in arrival order, the seq the
        caller has now seen up to, and the hub's cursor there.

        At most about ``budget.PIECE`` bytes of data are returned (one event
        at least): the seq then stops at the last of them, and the rest comes
        at the next call.  Return ``(None, seq, cursor)`` when the buffer no
        longer reaches back to *seq* for one of the channels: the caller must
        read that stretch from the log.
        """
        with self._lock:
            top = self.seq
            if seq >= top:
                return [], seq, self.cursor
            found: list[Item] = []
            sources = 0
            # The lowest seq at which a channel's piece was cut: nothing after it may be returned.
            cut = top
            for name in channels:
                buffer = self._channels.get(name)
                if buffer is None:
                    if seq < self.floor_seq:
                        return None, seq, self.cursor
                    continue
                if seq < buffer.floor_seq:
                    return None, seq, self.cursor
                seqs = buffer.seqs
                start = bisect_right(seqs, seq)
                end = len(seqs)
                if start < end:
                    if end - start > 1:  # one event is always a piece: the live case costs no more
                        end = _piece_end(buffer.items, start, end)
                        if end < len(seqs):
                            cut = min(cut, seqs[end - 1])
                    found.extend(buffer.items[start:end])
                    sources += 1
            if sources > 1:
                found.sort(key=_item_seq)
                if cut < top:
                    found = found[: bisect_right(found, cut, key=_item_seq)]
                end = _piece_end(found, 0, len(found))
                if end < len(found):
                    found, cut = found[:end], found[end - 1].seq
            if cut < top:
                return found, cut, found[-1].cursor
            return found, top, self.cursor

    def locate(self, channels: frozenset[str], cursor: Cursor) -> int | None:
        """Return a seq after which every buffered event of *channels* that *cursor* does not cover arrived,
        or None if one that it does not cover may be gone from the buffer (read the log)."""
        with self._lock:
            start = self.seq
            for name in channels:
                buffer = self._channels.get(name)
                if not cursor.dominates(self.floor_cursor if buffer is None else buffer.floor):
                    return None
                if buffer is None or not buffer.items:
                    continue
                # Arrivals' cursors only grow: from the first one the cursor does not dominate on, it may lack some.
                index = bisect_left(buffer.items, True, key=lambda item: not cursor.dominates(item.cursor))
                start = min(start, buffer.seqs[index - 1] if index else buffer.floor_seq)
            return start

    def snapshot(self) -> tuple[int, Cursor]:
        """Return the hub's seq and cursor, together."""
        with self._lock:
            return self.seq, self.cursor


def _item_seq(item: Item) -> int:
    return item.seq


def arrivals(rows: list[Row], before: Cursor, after: Cursor) -> Iterator[Item]:
    """Yield the events of *rows* (in id order) as they arrive, each with the cursor just after it.

    *rows* moved the cursor from *before* to *after*: some were pending in
    *before* (late, below its top), the others above it.  The late ones
    arrive first, then the new ones in id order; every id *after* covers
    that *before* did not and no row holds is dead, covered from the start.
    """
    late = [row for row in rows if row[0] < before.top]
    # Below the old top: what is still pending after the rows, and the late rows, not arrived yet.
    current = Cursor(before.top).with_pending((*after.pending, *((row[0], row[0]) for row in late)))
    for row in late:
        current = current.without(row[0])
        yield Item(*row, current)
    for row in rows[len(late) :]:
        yield Item(*row, after.clip(row[0]))


def _piece_end(items: list[Item], start: int, end: int) -> int:
    """Return where a piece of *items* from *start* ends: after PIECE bytes of data, one event at least."""
    total = 0
    for index in range(start, end):
        total += len(items[index].data_json)
        if total >= PIECE:
            return index + 1
    return end


def _size(item: Item) -> int:
    # The SSE bytes and the WebSocket text each hold the data about once
    # more, when made; the JSON text once; and the objects around them.
    return 3 * len(item.data_json) + 200


def _run_parked(parked: list[tuple[Waiters, list[Parked]]], now: float) -> None:
    for group, streams in parked:
        shared: dict[object, object] = {}
        for stream in streams:
            # Put back at once, not after the loop: a wake-up that comes while a later one
            # waits for the hub's lock must find those already woken.
            if stream.wake(now, shared):
                group.parked.append(stream)


def _resolve(futures: list[Resolvable]) -> None:
    for future in futures:
        if not future.done():
            future.set_result(None)


_hub: Hub | None = None
_hub_pid = 0
_draining_pid = 0
_hub_lock = threading.Lock()


def get_hub() -> Hub:
    """Return this process's hub, creating it on first use (and again after a fork)."""
    global _hub, _hub_pid
    with _hub_lock:
        if _hub is None or _hub_pid != os.getpid():
            _hub = Hub(
                get_backend(),
                using=realtime_settings.DATABASE,
                buffer_size=realtime_settings.BUFFER_SIZE,
                buffer_bytes=realtime_settings.BUFFER_BYTES,
                keepalive=float(realtime_settings.KEEPALIVE),
                read_timeout=float(realtime_settings.READ_TIMEOUT),
                max_streams=realtime_settings.MAX_STREAMS,
                catch_up_connections=int(realtime_settings.CATCH_UP_CONNECTIONS),
                catch_up_memory=int(realtime_settings.CATCH_UP_MEMORY),
            )
            _hub_pid = os.getpid()
            _hub.draining = _draining_pid == _hub_pid
        return _hub


def drain() -> None:
    """Have this process's streams end, now and from now on, as its server shuts down (see Hub.drain)."""
    global _draining_pid
    with _hub_lock:
        _draining_pid = os.getpid()
        hub = _hub if _hub_pid == _draining_pid else None
    if hub is not None:
        hub.drain()


def reset_hub() -> None:
    """Stop and forget this process's hub, and any drain (for tests and settings changes)."""
    global _hub, _draining_pid
    with _hub_lock:
        hub, _hub = _hub, None
        _draining_pid = 0
    if hub is not None:
        hub.stop()


def _on_setting_changed(*, setting: str, **kwargs: object) -> None:
    if setting == "REALTIME":
        reset_hub()


setting_changed.connect(_on_setting_changed)
