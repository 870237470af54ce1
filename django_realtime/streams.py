"""Follow channels of the log: replay after a cursor, then live, with no gap.

``follow`` (threads, gevent) and ``afollow`` (asyncio) yield batches of
events; an empty batch means "quiet for KEEPALIVE seconds".  Replay and live
delivery share one cursor, so the handoff between them can neither skip nor
repeat an event: everything at or below the cursor has been delivered,
everything above it comes from the hub's buffer or, when the buffer no longer
reaches back that far, from the log, always bounded by the hub's horizon.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, TypeVar

from asgiref.sync import sync_to_async

from .hub import Item, high_water_mark, read_page, release_connections
from .sse import encode_event

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

    from .hub import Hub

T = TypeVar("T")


def reset_item(reason: str, cursor: int, resume: int, channels: list[str]) -> Item:
    """Build the in-band ``reset`` event: the client's state is stale, reload it."""
    data = json.dumps(
        {"reason": reason, "last_event_id": str(cursor), "resume_id": str(resume), "channels": channels},
        separators=(",", ":"),
    )
    return Item(resume, "", "reset", data, encode_event(data, event="reset", id=str(resume)))


class Follower:
    """One stream's cursor over the log; its methods touch the database and release it."""

    __slots__ = ("channels", "hub", "position", "reported")

    def __init__(self, hub: Hub, channels: frozenset[str], cursor: int | None) -> None:
        self.hub = hub
        self.channels = channels
        self.position = hub.horizon if cursor is None else cursor
        #: The highest prune mark already reported with a reset.
        self.reported = 0

    def start(self) -> list[Item]:
        """Return a reset if the cursor is newer than anything the log ever held."""
        horizon = self.hub.horizon
        if self.position <= horizon:
            return []
        try:
            if self.position <= high_water_mark(self.hub.using):
                return []  # another process served it; this hub will catch up
        finally:
            release_connections()
        reset = reset_item("unknown", self.position, horizon, sorted(self.channels))
        self.position = horizon
        return [reset]

    def catch_up(self) -> list[Item]:
        """Read the next page from the log, after a reset if retention deleted some of it."""
        from .models import PruneMark

        try:
            # Read first, then look for prune marks above where we were: a
            # prune that lands between the two gives a reset, never a silent gap.
            start = self.position
            page, self.position = read_page(self.hub.using, self.channels, start, self.hub.horizon)
            marks = list(
                PruneMark.objects.using(self.hub.using)
                .filter(channel__in=list(self.channels), pruned_through__gt=max(start, self.reported))
                .values_list("channel", "pruned_through")
            )
            if not marks:
                return page
            # Events after the cursor are gone: say so, then go on with
            # every event still stored, so nothing that exists is skipped.
            self.reported = max(mark for _, mark in marks)
            return [reset_item("expired", start, start, sorted(c for c, _ in marks)), *page]
        finally:
            release_connections()


def _batch(items: list[Item]) -> list[Item]:
    return items


def follow(
    hub: Hub,
    channels: frozenset[str],
    cursor: int | None,
    keepalive: float,
    encode: Callable[[list[Item]], T] = _batch,  # type: ignore[assignment]
    first: T | None = None,
) -> Iterator[T]:
    """Yield *first* if given, then ``encode(batch)`` for each batch of events after *cursor*, forever.

    A batch is empty after *keepalive* seconds of silence.  This loop runs once
    per stream per wake-up, and a waiting stream's memory is mostly its
    stack: so the loop is kept flat (*encode* and *first* spare a generator
    level), and when the hub's ticks are frequent enough the wait has no timer.
    """
    if first is not None:
        yield first
    follower = Follower(hub, channels, cursor)
    resets = follower.start()
    if resets:
        yield encode(resets)
    timed = keepalive < 2 * hub.tick
    due = keepalive if timed else keepalive - hub.tick  # the next tick comes within hub.tick
    last_write = time.monotonic()
    while True:
        signal = hub.signal
        if follower.position < hub.horizon:
            items, follower.position = hub.collect(channels, follower.position)
            if items is None:
                items = follower.catch_up()
            if items:
                yield encode(items)
                last_write = time.monotonic()
                continue
        silence = time.monotonic() - last_write
        if silence >= due:
            yield encode([])
            last_write = time.monotonic()
        elif timed:
            signal.wait(due - silence)
        else:
            signal.wait()


async def afollow(
    hub: Hub,
    channels: frozenset[str],
    cursor: int | None,
    keepalive: float,
    encode: Callable[[list[Item]], T] = _batch,  # type: ignore[assignment]
) -> AsyncIterator[T]:
    """Yield ``encode(batch)`` for each batch of events of *channels* after *cursor*, forever, on asyncio."""
    follower = Follower(hub, channels, cursor)
    resets = await sync_to_async(follower.start, thread_sensitive=False)()
    if resets:
        yield encode(resets)
    loop = asyncio.get_running_loop()
    timed = keepalive < 2 * hub.tick
    due = keepalive if timed else keepalive - hub.tick
    last_write = loop.time()
    while True:
        # Shielded: the future is shared by every stream of the loop, and a
        # stream that leaves (cancellation) must not cancel it for the rest.
        signal = hub.async_signal()
        if follower.position < hub.horizon:
            items, follower.position = hub.collect(channels, follower.position)
            if items is None:
                items = await sync_to_async(follower.catch_up, thread_sensitive=False)()
            if items:
                yield encode(items)
                last_write = loop.time()
                continue
        silence = loop.time() - last_write
        if silence >= due:
            yield encode([])
            last_write = loop.time()
        elif timed:
            try:
                async with asyncio.timeout(due - silence):
                    await asyncio.shield(signal)
            except TimeoutError:
                pass
        else:
            await asyncio.shield(signal)
