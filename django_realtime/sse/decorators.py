"""``@event_stream``: a plain generator view, streamed as SSE on any server."""

from __future__ import annotations

import asyncio
import inspect
import logging
import queue
import threading
from dataclasses import dataclass
from functools import wraps
from typing import TYPE_CHECKING, Any

from django.http import HttpResponseBase

from ..conf import realtime_settings
from ..daphne_server import daphne_transport
from ..db import release_connections
from ..hub import get_hub
from ..names import validate_event_name
from ..publishing import encode_data
from ..shutdown import watch_server_signals
from .encoding import KEEPALIVE, encode_event, encode_retry
from .responses import (
    ShutAtDrain,
    SSEResponse,
    connection_closer,
    is_async_request,
    part_at_shutdown,
    parting,
    prelude,
    release_request_thread,
    warn_if_threaded_worker,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator, Mapping

    from ..hub import Hub

logger = logging.getLogger("django_realtime")

#: Events a producer may run ahead of a slow client.
QUEUE_SIZE = 16


@dataclass(frozen=True)
class ServerEvent:
    """One event of an ``@event_stream`` view.

    A ``str`` *data* is sent as it is (it may span lines); anything else as
    its JSON text.
    """

    data: Any = None
    event: str | None = None
    id: str | None = None
    retry: int | None = None


def to_sse(item: object) -> bytes:
    """Encode what an ``@event_stream`` generator yielded."""
    if isinstance(item, str):
        item = ServerEvent(item)
    elif isinstance(item, dict):
        unknown = set(item) - {"data", "event", "id", "retry"}
        if unknown:
            raise TypeError(f"an event dict may have data, event, id and retry, not {sorted(unknown)}")
        item = ServerEvent(**item)
    elif not isinstance(item, ServerEvent):
        raise TypeError(f"@event_stream views yield str, dict or ServerEvent, not {type(item).__name__}")
    data = item.data if isinstance(item.data, str) else encode_data(item.data)
    event = validate_event_name(item.event, allow_reserved=True) if item.event is not None else None
    encoded = encode_event(data, event=event, id=item.id)
    return encode_retry(item.retry) + encoded if item.retry is not None else encoded


_END = object()
#: Put in a stream's queue when the hub drains: the stream looks at hub.draining.
_WAKE = object()


class _Producer(threading.Thread):
    """Run the user's generator on its own thread (greenlet under gevent).

    The stream can then send keepalives, and notice a client that left, while
    the generator blocks between two events.
    """

    def __init__(self, generator: Iterator[object], put: Callable[[object], bool]) -> None:
        super().__init__(name="django-realtime-event-stream", daemon=True)
        self.generator = generator
        self.put = put
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            for item in self.generator:
                if self.stopped.is_set() or not self.put(to_sse(item)):
                    return
        except Exception:
            logger.exception("@event_stream generator raised; ending the stream")
        finally:
            self.put(_END)
            close = getattr(self.generator, "close", None)
            if close is not None:
                close()
            release_connections()


def _sync_stream(generator: Iterator[object], keepalive: float, hub: Hub) -> Iterator[bytes]:
    events: queue.Queue[object] = queue.Queue(QUEUE_SIZE)

    def drained() -> None:
        try:
            events.put_nowait(_WAKE)
        except queue.Full:  # the stream has chunks to take, and looks at hub.draining before each
            pass

    def put(chunk: object) -> bool:
        while not producer.stopped.is_set():
            try:
                events.put(chunk, timeout=1.0)
                return True
            except queue.Full:
                continue
        return False

    producer = _Producer(generator, put)
    producer.start()
    hub.on_drain.add(drained)
    try:
        yield prelude()
        while True:
            if hub.draining:
                yield _parting_sync(events)
                return
            try:
                chunk = events.get(timeout=keepalive)
            except queue.Empty:
                yield KEEPALIVE
                continue
            if chunk is _WAKE:
                continue
            if chunk is _END:
                return
            yield chunk  # type: ignore[misc]
    finally:
        hub.on_drain.discard(drained)
        producer.stopped.set()


def _parting_sync(events: queue.Queue[object]) -> bytes:
    """Return what the producer has queued already, then a ``parting()``: the stream ends as its server stops."""
    chunks = []
    while True:
        try:
            chunk = events.get_nowait()
        except queue.Empty:
            break
        if chunk is _END:
            break
        if chunk is not _WAKE:
            chunks.append(chunk)
    return b"".join(chunks) + parting()  # type: ignore[arg-type]


async def _async_stream(
    generator: Iterator[object],
    keepalive: float,
    hub: Hub,
    scope: Mapping[str, Any],
    shut_at_drain: ShutAtDrain,
) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[object] = asyncio.Queue()

    def drained() -> None:  # from the thread that drains the hub
        loop.call_soon_threadsafe(events.put_nowait, _WAKE)

    # An unbounded asyncio queue filled through call_soon_threadsafe, with a
    # semaphore for backpressure: a timed-out run_coroutine_threadsafe(put)
    # could still complete later and deliver a chunk twice.
    room = threading.Semaphore(QUEUE_SIZE)

    def put(chunk: object) -> bool:
        while not producer.stopped.is_set():
            if room.acquire(timeout=1.0):
                try:
                    loop.call_soon_threadsafe(events.put_nowait, chunk)
                except RuntimeError:  # the loop has closed
                    return False
                return True
        return False

    producer = _Producer(generator, put)
    producer.start()
    hub.on_drain.add(drained)
    try:
        yield prelude()
        # The generator has a thread of its own; the request's needs none more.
        release_request_thread()
        watch_server_signals()
        transport = daphne_transport(scope)
        if transport is not None:

            def shut() -> None:  # from the thread that closes the response
                loop.call_soon_threadsafe(transport.loseConnection)

            shut_at_drain.shut = shut
        while True:
            if hub.draining:
                chunks = []
                while not events.empty():
                    chunk = events.get_nowait()
                    if chunk is _END:
                        break
                    if chunk is not _WAKE:
                        room.release()
                        chunks.append(chunk)
                yield b"".join(chunks) + parting()  # type: ignore[arg-type]
                return
            try:
                async with asyncio.timeout(keepalive):
                    chunk = await events.get()
            except TimeoutError:
                yield KEEPALIVE
                continue
            if chunk is _WAKE:
                continue
            room.release()
            if chunk is _END:
                return
            yield chunk  # type: ignore[misc]
    finally:
        hub.on_drain.discard(drained)
        producer.stopped.set()


def event_stream(view: Callable[..., Any] | None = None, *, keepalive: float | None = None) -> Any:
    """Make a generator view into an SSE response that streams under WSGI and ASGI.

    The generator yields ``str`` (data only), ``dict`` with ``data``,
    ``event``, ``id`` and ``retry`` keys, or :class:`ServerEvent`.  It runs
    on a thread of its own, so it may block between events; keepalive
    comments go out meanwhile.  A view that returns a response instead (for
    example a 403) has it sent as it is.  When the server is told to stop
    (the gunicorn drain hook, daphne's TERM: shutdown.py) the stream sends
    what the generator has given, then a ``retry:`` drawn up to
    SHUTDOWN_RETRY, and ends.
    """

    def decorator(func: Callable[..., Any]) -> Callable[..., HttpResponseBase]:
        if inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func):
            raise TypeError(
                f"@event_stream needs a plain (sync) generator view; {func.__qualname__} is async. "
                "Publish events and stream them with the SSE endpoint instead."
            )

        @wraps(func)
        def wrapper(request, *args, **kwargs) -> HttpResponseBase:
            result = func(request, *args, **kwargs)
            if isinstance(result, HttpResponseBase):
                return result
            seconds = float(keepalive if keepalive is not None else realtime_settings.KEEPALIVE)
            release_connections()
            hub = get_hub()
            if is_async_request(request):
                shut_at_drain = ShutAtDrain(hub)
                response = SSEResponse(_async_stream(result, seconds, hub, request.scope, shut_at_drain))
                response._resource_closers.append(shut_at_drain)
                return response
            warn_if_threaded_worker(request)
            response = SSEResponse(_sync_stream(result, seconds, hub))
            shut = connection_closer(request)
            if shut is not None:
                response._resource_closers.append(part_at_shutdown(hub, shut))
            return response

        return wrapper

    return decorator(view) if view is not None else decorator
