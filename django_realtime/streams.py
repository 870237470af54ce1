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
from typing import TYPE_CHECKING

from asgiref.sync import sync_to_async

from .hub import Item, high_water_mark, read_page, release_connections
from .sse import encode_event

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from .hub import Hub


def reset_item(reason: str, cursor: int, resume: int, channels: list[str]) -> Item:
    """Build the in-band ``reset`` event: the client's state is stale, reload it."""
    data = json.dumps(
        {"reason": reason, "last_event_id": str(cursor), "resume_id": str(resume), "channels": channels},
        separators=(",", ":"),
    )
    return Item(resume, "", "reset", data, encode_event(data, event="reset", id=str(resume)))


def start_position(hub: Hub, channels: frozenset[str], cursor: int | None) -> tuple[list[Item], int]:
    """Return a reset event if *cursor* cannot be resumed, and where to start."""
    try:
        if cursor is None:
            return [], hub.horizon
        if cursor < hub.floor:
            from .models import PruneMark

            expired = sorted(
                PruneMark.objects.using(hub.using)
                .filter(channel__in=list(channels), pruned_through__gt=cursor)
                .values_list("channel", flat=True)
            )
            if expired:
                return [reset_item("expired", cursor, hub.horizon, expired)], hub.horizon
        elif cursor > hub.horizon and cursor > high_water_mark(hub.using):
            return [reset_item("unknown", cursor, hub.horizon, sorted(channels))], hub.horizon
        return [], cursor
    finally:
        release_connections()


def _read_released(hub: Hub, channels: frozenset[str], cursor: int) -> tuple[list[Item], int]:
    try:
        return read_page(hub.using, channels, cursor, hub.horizon)
    finally:
        release_connections()


def follow(hub: Hub, channels: frozenset[str], cursor: int | None, keepalive: float) -> Iterator[list[Item]]:
    """Yield batches of events of *channels* after *cursor*, forever."""
    first, position = start_position(hub, channels, cursor)
    if first:
        yield first
    last_write = time.monotonic()
    while True:
        signal = hub.signal
        items, position = hub.collect(channels, position)
        if items is None:
            items, position = _read_released(hub, channels, position)
        if items:
            yield items
            last_write = time.monotonic()
            continue
        remaining = last_write + keepalive - time.monotonic()
        if remaining > 0 and signal.wait(remaining):
            continue
        if time.monotonic() - last_write >= keepalive:
            yield []
            last_write = time.monotonic()


async def afollow(
    hub: Hub, channels: frozenset[str], cursor: int | None, keepalive: float
) -> AsyncIterator[list[Item]]:
    """Yield batches of events of *channels* after *cursor*, forever, on asyncio."""
    first, position = await sync_to_async(start_position, thread_sensitive=False)(hub, channels, cursor)
    if first:
        yield first
    loop = asyncio.get_running_loop()
    last_write = loop.time()
    while True:
        signal = hub.async_signal()
        items, position = hub.collect(channels, position)
        if items is None:
            items, position = await sync_to_async(_read_released, thread_sensitive=False)(hub, channels, position)
        if items:
            yield items
            last_write = loop.time()
            continue
        remaining = last_write + keepalive - loop.time()
        if remaining > 0:
            try:
                async with asyncio.timeout(remaining):
                    await asyncio.shield(signal)
                continue
            except TimeoutError:
                pass
        yield []
        last_write = loop.time()
