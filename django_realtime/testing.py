"""Helpers for testing a project that uses django_realtime.

* :func:`capture_events`: the events published while it is open, like
  ``django.core.mail.outbox``, committed or not (a ``TestCase`` never commits);
* :func:`read_sse`: the first events of a live SSE response, from Django's
  test client (``Client`` or ``AsyncClient``), parsed as a browser would;
* :func:`read_websocket`: the first events a Channels ``WebsocketCommunicator``
  receives;
* :func:`reset`: a fresh hub and backend, for test isolation (a hub is one
  per process and keeps its buffer and threads between tests);
* :func:`capture_progress`: the progress a task published while it is open
  (django_realtime.progress).
* :func:`capture_broadcasts`, :func:`assert_broadcasts`,
  :func:`assert_no_broadcasts`: the live actions a block publishes
  (docs/live.md), with their rendered fragments.

These are public and documented in docs/testing.md.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from . import signals
from .live.actions import Action, parse_action
from .models import Event

__all__ = [
    "SSEEvent",
    "aread_sse",
    "assert_broadcasts",
    "assert_no_broadcasts",
    "capture_broadcasts",
    "capture_events",
    "capture_progress",
    "read_sse",
    "read_websocket",
    "reset",
]


class CapturedEvents(list):
    """The events published while :func:`capture_events` is open, oldest first."""

    def data(self) -> list[Any]:
        """Return each captured event's data, decoded."""
        return [event.data for event in self]


@contextmanager
def capture_events(channel: str | None = None) -> Iterator[CapturedEvents]:
    """Collect the events stored (by ``publish()`` or the ORM) while the block runs, of *channel* if given.

    ::

        with capture_events("user:42") as published:
            client.post("/orders/")
        assert published.data() == [{"order": 7}]
    """
    captured = CapturedEvents()

    def stored(sender: type[Event], event: Event, **kwargs: Any) -> None:
        if channel is None or event.channel == channel:
            captured.append(event)

    signals.event_stored.connect(stored, weak=False)
    try:
        yield captured
    finally:
        signals.event_stored.disconnect(stored)


@dataclass(frozen=True)
class SSEEvent:
    """One event of an SSE stream: its fields as an EventSource would see them."""

    id: str
    event: str
    #: The ``data:`` lines joined with newlines, as sent.
    raw: str

    @property
    def data(self) -> Any:
        """Return the data decoded from JSON."""
        return json.loads(self.raw)


class SSEParser:
    """The SSE parsing algorithm of the HTML standard, for events (comments and ``retry:`` are dropped)."""

    def __init__(self) -> None:
        self.buffer = ""
        self.last_id = ""
        self._event = ""
        self._data: list[str] = []

    def feed(self, chunk: bytes | str) -> list[SSEEvent]:
        self.buffer += chunk.decode("utf-8") if isinstance(chunk, bytes) else chunk
        events = []
        *lines, self.buffer = self.buffer.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        for line in lines:
            if not line:
                if self._data:
                    events.append(SSEEvent(self.last_id, self._event or "message", "\n".join(self._data)))
                self._event, self._data = "", []
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                self._data.append(value)
            elif name == "event":
                self._event = value
            elif name == "id" and "\0" not in value:
                self.last_id = value
        return events


def read_sse(response: Any, count: int, *, timeout: float = 10.0) -> list[SSEEvent]:
    """Return the first *count* events of a streaming SSE *response* from Django's test ``Client``.

    The stream is read in this thread, so publish the events before, or from
    another thread.  The deadline is checked between two chunks of the
    stream: a stream that sends nothing (no event, no keepalive) blocks
    until its next keepalive (``KEEPALIVE`` seconds).  The response is closed
    afterwards.  For ``AsyncClient`` use :func:`aread_sse`.
    """
    if not getattr(response, "streaming", False):
        raise TypeError(f"not a streaming response: {response!r}")
    parser, events = SSEParser(), []
    deadline = time.monotonic() + timeout
    try:
        for chunk in response.streaming_content:
            events += parser.feed(chunk)
            if len(events) >= count:
                return events[:count]
            if time.monotonic() > deadline:
                break
    finally:
        response.close()
    raise TimeoutError(f"{len(events)} of {count} events within {timeout:g} s: {events}")


async def aread_sse(response: Any, count: int, *, timeout: float = 10.0) -> list[SSEEvent]:
    """Return the first *count* events of a streaming SSE *response* from Django's ``AsyncClient``."""
    import asyncio

    if not getattr(response, "streaming", False):
        raise TypeError(f"not a streaming response: {response!r}")
    parser, events = SSEParser(), []
    content: AsyncIterator[bytes] = aiter(response.streaming_content)

    async def read() -> list[SSEEvent]:
        nonlocal events
        async for chunk in content:
            events += parser.feed(chunk)
            if len(events) >= count:
                return events[:count]
        raise EOFError(f"the stream ended after {len(events)} of {count} events: {events}")

    try:
        return await asyncio.wait_for(read(), timeout)
    except TimeoutError:
        raise TimeoutError(f"{len(events)} of {count} events within {timeout:g} s: {events}") from None
    finally:
        close = getattr(content, "aclose", None)
        if close is not None:
            await close()


async def read_websocket(communicator: Any, count: int, *, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Return the first *count* ``event`` messages a Channels ``WebsocketCommunicator`` receives.

    Other messages (``subscribed``, ``pong``...) are skipped; an ``error``
    raises AssertionError with it.  Each event is the protocol's message as
    JSON decodes it: ``{"type": "event", "channel", "id", "event", "data"}``.
    """
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(events) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{len(events)} of {count} events within {timeout:g} s: {events}")
        message = await communicator.receive_json_from(timeout=left)
        if message.get("type") == "error":
            raise AssertionError(f"the server sent an error: {message}")
        if message.get("type") == "event":
            events.append(message)
    return events


def reset() -> None:
    """Stop this process's hub and presence heartbeat and forget the loaded backend: the next stream starts afresh.

    Call it between tests that change ``REALTIME`` by hand or that need an
    empty buffer (``override_settings(REALTIME=...)`` does it itself).
    """
    from .backends import clear_cache
    from .hub import reset_hub
    from .presence import reset_registry

    reset_hub()
    reset_registry()
    clear_cache()


class CapturedProgress(list):
    """The progress states a task published while :func:`capture_progress` is open, oldest first."""

    def fractions(self) -> list[float | None]:
        """Return each published state's fraction (None where it was unknown)."""
        return [progress.fraction for progress in self]

    def messages(self) -> list[str]:
        """Return each published state's message."""
        return [progress.message for progress in self]

    @property
    def outcome(self) -> Any:
        """Return the last state if it ended the task (done or failed), else None."""
        return self[-1] if self and self[-1].ended else None


@contextmanager
def capture_progress(task: object) -> Iterator[CapturedProgress]:
    """Collect the progress states published for *task* (its id or result) while the block runs.

    Only what was published counts: a report the rate held back and the
    next one replaced is not there, as no page ever saw it. ::

        with capture_progress(task_id) as progress:
            generate_report(task_id)
        assert progress.outcome.state == "done"
        assert progress.fractions()[-1] == 1.0
    """
    from .progress import ProgressReporter, progress_channel, progress_published

    wanted = progress_channel(task)
    captured = CapturedProgress()

    def published(sender: type[ProgressReporter], progress: Any, **kwargs: Any) -> None:
        if kwargs["channel"] == wanted:
            captured.append(progress)

    progress_published.connect(published, weak=False)
    try:
        yield captured
    finally:
        progress_published.disconnect(published)


class CapturedBroadcasts(list):
    """The live actions published while :func:`capture_broadcasts` is open, oldest first (refreshes included)."""

    def actions(self) -> list[tuple[str, str]]:
        """Return ``(channel, action)`` for each, in order."""
        return [(item.channel, item.action) for item in self]

    def fragments(self, action: str | None = None) -> list[str]:
        """Return the event data of each broadcast (of *action* if given): HTML, rendered and escaped."""
        return [item.html for item in self if action is None or item.action == action]


@contextmanager
def capture_broadcasts(channel: str | None = None) -> Iterator[CapturedBroadcasts]:
    """Collect the live actions and refreshes stored while the block runs, on *channel* if given.

    Each is an :class:`~django_realtime.live.Action`: ``channel``, ``action``
    (``append``... ``remove``, ``refresh``), ``target``, ``dom_id`` and
    ``html``, the event's data as pages receive it.
    """
    captured = CapturedBroadcasts()
    with capture_events(channel) as events:
        yield captured
        captured.extend(_actions(events))


def _actions(events: list[Event]) -> list[Action]:
    found = (parse_action(event.channel, event.event, event.data) for event in events)
    return [action for action in found if action is not None]


@contextmanager
def assert_broadcasts(channel: str, *actions: str, count: int | None = None) -> Iterator[CapturedBroadcasts]:
    """Fail unless the block broadcasts on *channel* exactly *actions*, in order (or *count* of any action).

    ::

        with assert_broadcasts("board:items", "append") as sent:
            Item.objects.create(title="Milk")
        assert "Milk" in sent.fragments()[0]
    """
    with capture_broadcasts(channel) as captured:
        yield captured
    names = [item.action for item in captured]
    if not actions and count is None and not names:
        raise AssertionError(f"no broadcast on {channel!r}")
    if count is not None and len(names) != count:
        raise AssertionError(f"{len(names)} broadcasts on {channel!r}, not {count}: {names}")
    if actions and names != list(actions):
        raise AssertionError(f"broadcasts on {channel!r} were {names}, not {list(actions)}")


@contextmanager
def assert_no_broadcasts(channel: str | None = None) -> Iterator[None]:
    """Fail if the block broadcasts any live action or refresh (on *channel* if given)."""
    with capture_broadcasts(channel) as captured:
        yield
    if captured:
        raise AssertionError(f"expected no broadcasts, got {captured.actions()}")
