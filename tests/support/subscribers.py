"""Subscribers on one asyncio loop, and the check of what they received against what was published.

The scale-out and chaos scenarios (tests/support/scale_out.py,
tests/support/chaos.py) each have a subscriber of their own, SSE (httpx-sse)
and WebSocket (``websockets``) alike; a :class:`SubscriberPool` runs them as
tasks of one event loop on a thread of its own, so that the test thread
orchestrates, every wait has a deadline, and ``close()`` disconnects them
for real.  :func:`delivery_problems` says what is wrong with what one of them
received: an empty list when every committed event of its channels came
once, as published, in commit order, each with a cursor that covers it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from django_realtime.cursor import Cursor

if TYPE_CHECKING:
    from tests.support.scale_out import Outcome

#: Events as a subscriber records them: (id, channel or None where SSE does not say, event name, data, time.time()).
Received = tuple[int, str | None, str, Any, float]


class Subscriber(Protocol):
    """What a :class:`SubscriberPool` needs of a subscriber."""

    channels: tuple[str, ...]

    async def run(self) -> None:
        """Subscribe, and record what arrives, until cancelled."""

    def is_ready(self) -> bool:
        """Return whether its stream is open (SSE: the retry: prelude came; WebSocket: every channel subscribed)."""

    def gave_up(self) -> bool:
        """Return whether it stopped trying: it will never be ready."""

    def state(self) -> str:
        """Return what it knows of its connection, for a failure's message."""

    def has_all(self, expected: dict[str, list[int]]) -> bool:
        """Return whether it received every id *expected* (channel: committed ids) lists of its channels."""

    def stop(self) -> None:
        """Tell it not to reconnect: the pool is closing."""


class SubscriberPool:
    """Run subscribers as tasks of one asyncio loop on a thread of its own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="subscribers", daemon=True)
        self.thread.start()
        self.subscribers: list[Any] = []
        self._tasks: list[asyncio.Task[None]] = []

    def __enter__(self) -> SubscriberPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self, subscribers: Sequence[Subscriber]) -> None:
        async def spawn() -> None:
            self._tasks += [asyncio.create_task(subscriber.run()) for subscriber in subscribers]

        self.subscribers += subscribers
        asyncio.run_coroutine_threadsafe(spawn(), self.loop).result(5)

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Wait until every subscriber's stream is open."""
        deadline = time.monotonic() + timeout
        for subscriber in list(self.subscribers):
            while not subscriber.is_ready():
                if subscriber.gave_up() or time.monotonic() > deadline:
                    raise AssertionError(f"{subscriber} did not subscribe within {timeout}s: {subscriber.state()}")
                time.sleep(0.05)

    def wait_until(self, outcome: Outcome, timeout: float) -> bool:
        """Wait until every subscriber has every committed event of its channels; return whether they have."""
        channels = {name for subscriber in self.subscribers for name in subscriber.channels}
        expected = {name: outcome.committed_ids(name) for name in channels}
        deadline = time.monotonic() + timeout
        while not all(subscriber.has_all(expected) for subscriber in self.subscribers):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def close(self) -> None:
        """Disconnect every subscriber, then stop and close the loop."""

        async def cancel() -> None:
            for subscriber in self.subscribers:
                subscriber.stop()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(cancel(), self.loop).result(30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()


def percentile(values: Sequence[float], fraction: float) -> float:
    """Return the value at *fraction* of *values* sorted (index ``int(fraction * n)``, at most the last); NaN: none."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def has_all(
    received: Sequence[Received], channels: Sequence[str], expected: dict[str, list[int]], after: int = 0
) -> bool:
    """Return whether *received* holds every id after *after* that *expected* lists of *channels*."""
    got = {item[0] for item in received}
    return all(got.issuperset(i for i in expected[name] if i > after) for name in channels)


def delivery_problems(
    label: str,
    transport: str,
    channels: Sequence[str],
    received: Sequence[Received],
    cursors: Sequence[str],
    outcome: Outcome,
    *,
    after: int = 0,
    event: str = "scale",
) -> list[str]:
    """Return what is wrong with what a subscriber received: an empty list when every event came once, in order.

    Every committed event of *channels* after *after* must come, once, as
    published (as event *event*), and no rolled-back one nor one of another
    channel.  Commit order (docs/architecture.md): each publisher's
    transactions commit one after the other, so its events of a channel
    arrive in the order it published them; the cursor each event comes with
    covers it and every event received before it.
    """
    problems = []
    for event_id, channel, name, data, _ in received:
        published = outcome.committed.get(event_id) or outcome.rolled_back.get(event_id)
        if event_id in outcome.rolled_back:
            problems.append(f"{label}: got rolled-back event {event_id} of {published[0]}")
        elif published is None:
            problems.append(f"{label}: got event {event_id} ({name} {data!r}), which no publisher committed")
        elif published[0] not in channels:
            problems.append(f"{label}: got event {event_id} of {published[0]}, a channel it did not subscribe to")
        elif channel not in (None, published[0]) or name != event or data != published[1]:
            problems.append(f"{label}: event {event_id} came as {channel} {name} {data!r}, not as published")
    for name in channels:
        expected = [i for i in outcome.committed_ids(name) if i > after]
        ids = [item[0] for item in received if outcome.committed.get(item[0], ("",))[0] == name]
        counts = Counter(ids)
        if missing := [i for i in expected if i not in counts]:
            late = ", ".join(f"{i} (ended {outcome.ended_at[i]:.3f})" for i in missing[:12])
            problems.append(f"{label}: {name}: {len(missing)} of {len(expected)} events missing: {late}")
        if duplicates := sorted(i for i, n in counts.items() if n > 1):
            problems.append(f"{label}: {name}: events received more than once: {duplicates[:20]}")
        problems += commit_order_problems(f"{label}: {name}", ids, outcome)
    return problems + cursor_problems(label, transport, received, cursors)


def commit_order_problems(label: str, ids: list[int], outcome: Outcome) -> list[str]:
    """Return where *ids* (one channel's, as received) break commit order: each publisher's in the order it
    committed them (docs/architecture.md)."""
    by_publisher: dict[str, list[int]] = {}
    for event_id in ids:
        by_publisher.setdefault(outcome.committed[event_id][1]["publisher"], []).append(event_id)
    return [
        f"{label}: {publisher}'s events out of commit order: {disorder[:10]}"
        for publisher, mine in by_publisher.items()
        if (disorder := [(a, b) for a, b in zip(mine, mine[1:], strict=False) if b <= a])
    ]


def cursor_problems(label: str, transport: str, received: Sequence[Received], texts: Sequence[str]) -> list[str]:
    """Return where the cursor an event came with fails to cover it and what came before it (per channel on a
    WebSocket, whose subscriptions have a cursor each), across reconnects too: each resumed from the last one."""
    seen: dict[str | None, list[int]] = {}
    for (event_id, channel, *_), text in zip(received, texts, strict=False):
        mine = seen.setdefault(channel if transport == "ws" else None, [])
        mine.append(event_id)
        if uncovered := [i for i in mine[-50:] if not Cursor.parse(text).covers(i)]:
            return [f"{label}: the cursor {text} of event {event_id} leaves out {uncovered[:5]}"]
    return []
