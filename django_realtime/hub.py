"""The per-process hub: one reader of the log, shared by every stream of the process.

The hub's thread (a greenlet under gevent) reads new rows once per process,
encodes each event to SSE bytes once, keeps the newest ``BUFFER_SIZE`` of
them in memory, and wakes every waiting stream.  Streams wait without a
database connection: on a ``threading.Event`` (gevent's own ``Event`` once
the server has monkey-patched, which wakes thousands of greenlets cheaply),
or on an asyncio future resolved through ``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import threading
import time
from bisect import bisect_right
from typing import TYPE_CHECKING, NamedTuple

from django.db import connections
from django.db.models import Max

from .conf import realtime_settings
from .log import PAGE, PAGE_BYTES, Tailer, read_rows, tailer_for
from .sse import encode_event

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .backends.base import BaseBackend

logger = logging.getLogger("django_realtime")


class Item(NamedTuple):
    """An event as streams need it: its fields and its SSE encoding."""

    id: int
    channel: str
    event: str
    data_json: str
    sse: bytes


def make_item(id: int, channel: str, event: str, data_json: str) -> Item:
    return Item(id, channel, event, data_json, encode_event(data_json, event=event, id=str(id)))


def release_connections() -> None:
    """Close this thread's database connections, so an idle stream holds none."""
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close()


def read_page(using: str, channels: Iterable[str], after: int, upto: int) -> tuple[list[Item], int]:
    """Read stored events of *channels* in (after, upto]; return them and the new cursor."""
    rows, complete = read_rows(using, after, upto=upto, channels=channels)
    items = [make_item(*row) for row in rows]
    return items, (upto if complete else items[-1].id)


def high_water_mark(using: str) -> int:
    """Return the highest event id the log has ever held, pruned ones included."""
    from .models import Event, PruneMark

    newest = Event.objects.using(using).aggregate(m=Max("id"))["m"] or 0
    pruned = PruneMark.objects.using(using).aggregate(m=Max("pruned_through"))["m"] or 0
    return max(newest, pruned)


class Hub:
    """Read the log once per process and fan new events out to waiting streams."""

    def __init__(
        self, backend: BaseBackend, *, using: str, buffer_size: int, buffer_bytes: int, keepalive: float = 15.0
    ) -> None:
        self.backend = backend
        self.using = using
        self.buffer_size = buffer_size
        self.buffer_bytes = buffer_bytes
        #: Seconds between two wake-ups of every stream, for their keepalives.
        self.tick = keepalive / 2
        self._next_tick = 0.0
        self._bytes = 0
        #: The buffer holds every event with an id in (floor, horizon].
        self.floor = 0
        self.horizon = 0
        self.error: BaseException | None = None
        self._ids: list[int] = []
        self._items: list[Item] = []
        self._lock = threading.Lock()
        self._signal = threading.Event()
        self._loops: dict[asyncio.AbstractEventLoop, asyncio.Future[None]] = {}
        self._poke = threading.Event()
        self._ready = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._tailer: Tailer = Tailer(using)

    # Life cycle -----------------------------------------------------------

    def ensure_ready(self, timeout: float = 10.0) -> bool:
        """Start the reader if needed; return whether it has read the log."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="django-realtime-hub", daemon=True)
                self._thread.start()
        return self._ready.wait(timeout)

    def stop(self) -> None:
        """Stop the reader thread and the backend's listener."""
        self._stopping = True
        self._poke.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)
        self.backend.stop()

    def poke(self) -> None:
        """Ask the reader to look at the log now."""
        self._poke.set()

    def _run(self) -> None:
        backoff = 0.1
        prune_every = realtime_settings.PRUNE_INTERVAL
        next_prune = time.monotonic() + (prune_every or 0) * random.uniform(0.1, 1.0)
        while not self._stopping:
            self._poke.clear()
            if time.monotonic() >= self._next_tick:
                # Streams wait without a timer of their own (one per wait
                # costs gevent a timer start and stop): this tick wakes them
                # all, and those silent for long enough send a keepalive.
                self._next_tick = time.monotonic() + self.tick
                self._wake()
            try:
                if self._ready.is_set():
                    self._read_new()
                else:
                    self._tailer = tailer_for(self.using)
                    self.horizon = self.floor = self._tailer.start_horizon(lambda: self._stopping)
                    self.backend.start(self)
                    self._ready.set()
                if prune_every and time.monotonic() >= next_prune:
                    next_prune = time.monotonic() + prune_every
                    self._prune()
                self.error = None
                backoff = 0.1
            except Exception as exc:
                # A database hiccup must not end delivery: log it, drop the
                # connection and read again, from the same horizon, later.
                self.error = exc
                logger.exception("django_realtime hub could not read the event log; retrying in %.1fs", backoff)
                release_connections()
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            self._poke.wait(self._timeout())
        release_connections()

    def _timeout(self) -> float:
        """Return how long to wait for a poke before reading the log or ticking anyway."""
        tick = max(0.0, self._next_tick - time.monotonic())
        return min(t for t in (self.backend.poll_interval, self._tailer.recheck_after, tick) if t is not None)

    def _prune(self) -> None:
        from .retention import prune

        prune(using=self.using)

    # Reading --------------------------------------------------------------

    def _read_new(self) -> None:
        while rows := self._tailer.read(self.horizon):
            self._append([make_item(*row) for row in rows])
            if len(rows) < PAGE and sum(len(row[3]) for row in rows) < PAGE_BYTES:
                return  # a short page is the end (or a gap): no need for an empty read to say so

    def _append(self, items: list[Item]) -> None:
        with self._lock:
            self._ids.extend(item.id for item in items)
            self._items.extend(items)
            self._bytes += sum(_size(item) for item in items)
            self.horizon = items[-1].id
            if len(self._ids) > 2 * self.buffer_size or self._bytes > self.buffer_bytes:
                self._trim()
        self._wake()

    def _wake(self) -> None:
        """Wake every waiting stream, thread, greenlet or coroutine."""
        with self._lock:
            signal, self._signal = self._signal, threading.Event()
            waiting, self._loops = self._loops, {}
        signal.set()
        for loop, future in waiting.items():
            try:
                loop.call_soon_threadsafe(_resolve, future)
            except RuntimeError:  # the loop has closed; its streams are gone
                pass

    def _trim(self) -> None:
        """Drop the oldest events, down to BUFFER_SIZE events and half of BUFFER_BYTES."""
        cut = max(0, len(self._ids) - self.buffer_size)
        dropped = sum(_size(item) for item in self._items[:cut])
        while cut < len(self._items) and self._bytes - dropped > self.buffer_bytes // 2:
            dropped += _size(self._items[cut])
            cut += 1
        if cut:
            self.floor = self._ids[cut - 1]
            del self._ids[:cut]
            del self._items[:cut]
            self._bytes -= dropped

    # Waiting --------------------------------------------------------------

    @property
    def signal(self) -> threading.Event:
        """Return the event set at the next batch or tick; take it before collect()."""
        return self._signal

    def async_signal(self) -> asyncio.Future[None]:
        """Return a future of the running loop resolved at the next batch or tick."""
        loop = asyncio.get_running_loop()
        with self._lock:
            future = self._loops.get(loop)
            if future is None:
                future = self._loops[loop] = loop.create_future()
        return future

    def collect(self, channels: frozenset[str], cursor: int) -> tuple[list[Item] | None, int]:
        """Return buffered events of *channels* after *cursor*, and the new cursor.

        Return ``(None, cursor)`` when the buffer no longer reaches back to
        *cursor*: the caller must read that stretch from the log.
        """
        with self._lock:
            if cursor < self.floor:
                return None, cursor
            if cursor >= self.horizon:
                return [], cursor
            items = self._items
            start = bisect_right(self._ids, cursor)
            found = [items[i] for i in range(start, len(items)) if items[i].channel in channels]
            return found, self.horizon


def _size(item: Item) -> int:
    # The SSE bytes hold the data once in UTF-8; the JSON text about as much again.
    return 2 * len(item.sse)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


_hub: Hub | None = None
_hub_pid = 0
_hub_lock = threading.Lock()


def get_hub() -> Hub:
    """Return this process's hub, creating it on first use (and again after a fork)."""
    global _hub, _hub_pid
    with _hub_lock:
        if _hub is None or _hub_pid != os.getpid():
            from .backends import load_backend

            # A backend of its own: its listener lives and dies with this hub.
            _hub = Hub(
                load_backend(realtime_settings.BACKEND, realtime_settings.OPTIONS),
                using=realtime_settings.DATABASE,
                buffer_size=realtime_settings.BUFFER_SIZE,
                buffer_bytes=realtime_settings.BUFFER_BYTES,
                keepalive=float(realtime_settings.KEEPALIVE),
            )
            _hub_pid = os.getpid()
        return _hub


def poke_local_hub() -> None:
    """Wake this process's hub if it is running; never start one."""
    if _hub is not None and _hub_pid == os.getpid():
        _hub.poke()


def reset_hub() -> None:
    """Stop and forget this process's hub (for tests and settings changes)."""
    global _hub
    with _hub_lock:
        hub, _hub = _hub, None
    if hub is not None:
        hub.stop()
