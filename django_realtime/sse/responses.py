"""The SSE response, streaming with an iterator of the kind the server needs.

Under ASGI Django consumes a *sync* iterator whole before sending anything,
and under WSGI it buffers an *async* one (see the project notes), so every
response is built from the request: an async iterator for ``ASGIRequest``,
a sync one otherwise.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import random
import re
import socket
import time
from typing import TYPE_CHECKING, Any, TypeGuard

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, StreamingHttpResponse

from .. import metrics
from ..conf import realtime_settings
from ..daphne_server import daphne_transport, daphne_write_gate, sse_writer
from ..db import release_connections, shut_down_socket
from ..gunicorn_server import HINT, THREADED, threaded_worker
from ..shutdown import watch_server_signals
from ..streams import OnLoop, Parking, afollow, follow
from ..uvicorn_server import uvicorn_sse_writer
from .encoding import KEEPALIVE, encode_channel_field, encode_event, encode_retry
from .watchdog import get_watchdog

logger = logging.getLogger("django_realtime")

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator, Mapping

    from ..cursor import Cursor
    from ..eventlog import Item
    from ..hub import Hub
    from .watchdog import Watched


class SSEResponse(StreamingHttpResponse):
    """A ``text/event-stream`` response that proxies leave alone."""

    #: The stream's leave to wait parked, for a server that can write to its socket from the hub's wake-ups
    #: (the package's gunicorn worker): the SSE endpoint's WSGI streams have one (streams.Parking).
    parking: Parking | None = None

    def __init__(self, streaming_content: Iterator[bytes] | AsyncIterator[bytes], **kwargs) -> None:
        super().__init__(streaming_content, content_type="text/event-stream; charset=utf-8", **kwargs)
        self["Cache-Control"] = "no-cache"
        self["X-Accel-Buffering"] = "no"

    @property
    def streaming_content(self):
        # The server asks for this once, as it starts to stream, after the
        # handler registered request.close() to run when the response closes.
        # That bound method would keep the request alive as long as the
        # stream (about 3 KB per stream: META, the resolver match, the lazy
        # user...), for nothing: a GET stream has no uploaded files to close.
        # (Django's private attributes below have no types in django-stubs.)
        closers = self._resource_closers  # type: ignore[has-type]
        self._resource_closers = [closer for closer in closers if not _closes_a_request(closer)]
        # The iterators given here yield bytes already: skip Django's map()
        # through make_bytes, a call per chunk and a level of every stream's stack.
        return self._iterator  # type: ignore[attr-defined]

    @streaming_content.setter
    def streaming_content(self, value):
        self._set_streaming_content(value)  # type: ignore[attr-defined]


def _closes_a_request(closer: object) -> bool:
    return getattr(closer, "__func__", None) is HttpRequest.close


def is_async_request(request: HttpRequest) -> TypeGuard[ASGIRequest]:
    """Return whether *request* is served by ASGI and needs an async iterator."""
    return isinstance(request, ASGIRequest)


def prelude() -> bytes:
    """Return the bytes every stream starts with: the retry delay, at once."""
    return encode_retry(int(realtime_settings.RETRY))


def parting() -> bytes:
    """Return the last bytes of a stream ended at server shutdown: a ``retry:`` drawn from 0 to SHUTDOWN_RETRY.

    Each stream draws its own, so that the clients of a stopping worker come
    back spread over that window rather than all at once.
    """
    return encode_retry(random.randint(0, int(realtime_settings.SHUTDOWN_RETRY)))


def part_at_shutdown(hub: Hub, shut: Callable[[], None]) -> Callable[[], None]:
    """Return a closer that shuts the connection of a stream whose response ended while *hub* drains (@event_stream).

    The SSE endpoint's own WSGI streams do this in their one closer (``WSGIStream``, sse/views.py).

    gunicorn keeps an HTTP/1.1 connection open for the next request when the
    request began before its worker was told to stop: the client's reconnect
    would come back on it to the stopping worker, and be told to go again.
    The server calls the response's closers after it wrote the end of the
    response, so the client has the whole stream, then the end of the
    connection, and reconnects to a new worker.
    """

    def close() -> None:
        if hub.draining:
            shut()

    return close


def _event_form(item: Item) -> bytes:
    return encode_event(item.data_json, event=item.event, id=item.cursor_text)


def _text_form(item: Item) -> bytes:
    if not item.data_json.startswith('"'):
        return event_bytes(item)
    text = json.loads(item.data_json)
    if not text.isascii():  # a lone surrogate, stored before publish() refused them: U+FFFD, as a decoder would
        text = _LONE_SURROGATE.sub("\ufffd", text)
    return encode_event(text, event=item.event, id=item.cursor_text)


class ShutAtDrain:
    """A response closer that shuts an ASGI stream's connection if its response ended while the hub drains.

    As ``part_at_shutdown`` does under gunicorn: a kept-alive connection
    would bring the client's reconnect back to the stopping server.  Under
    daphne the stream finds its connection (``asse_stream``) and sets
    ``shut``; the server calls the response's closers, on a thread, after
    it has sent the end of the response.
    """

    __slots__ = ("hub", "shut")

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.shut: Callable[[], None] | None = None

    def __call__(self) -> None:
        if self.hub.draining and self.shut is not None:
            self.shut()


def event_bytes(item: Item) -> bytes:
    """Return the SSE bytes of *item*, made once per process and event."""
    return item.encoded(_event_form)


def text_bytes(item: Item) -> bytes:
    """Return the SSE bytes of *item* for a ``?data=text`` stream: a string's text as it is, else its JSON."""
    return item.encoded(_text_form)


def sse_chunk(batch: list[Item]) -> bytes:
    """Encode a batch of events, or a keepalive for an empty one."""
    return b"".join([item.encoded(_event_form) for item in batch]) if batch else KEEPALIVE


def sse_text_chunk(batch: list[Item]) -> bytes:
    """Encode a batch as ``sse_chunk`` does, string data as text (``?data=text``: htmx swaps it in as HTML)."""
    return b"".join([item.encoded(_text_form) for item in batch]) if batch else KEEPALIVE


def sse_chunk_with_channels(batch: list[Item], form: Callable[[Item], bytes] = _event_form) -> bytes:
    """Encode a batch as ``sse_chunk`` does, each event after a ``channel:`` line (``?include=channel``).

    The event's own bytes are the ones every stream shares; only the line
    before them is added.  A Follower's ``reset`` belongs to no one channel
    (it lists its channels in its data), so it has none; a reset stored for a
    late event (django_realtime.skips) is its channel's, and has one.
    """
    if not batch:
        return KEEPALIVE
    return b"".join(
        encode_channel_field(item.channel) + item.encoded(form) if item.channel else item.encoded(form)
        for item in batch
    )


def sse_text_chunk_with_channels(batch: list[Item]) -> bytes:
    """``?include=channel&data=text``."""
    return sse_chunk_with_channels(batch, _text_form)


def chunker(*, with_channels: bool, text: bool) -> Callable[[list[Item]], bytes]:
    """Return the encoder of a stream's batches, for its ``include`` and ``data`` parameters."""
    if text:
        return sse_text_chunk_with_channels if with_channels else sse_text_chunk
    return sse_chunk_with_channels if with_channels else sse_chunk


_worker_warned = False


def warn_if_threaded_worker(request: HttpRequest) -> None:
    """Log once per process that gunicorn serves this WSGI stream on an OS thread (django_realtime.W003).

    ``manage.py check --deploy`` cannot see gunicorn's command line; the
    first stream a worker serves can (django_realtime.gunicorn_server).
    """
    global _worker_warned
    if _worker_warned:
        return
    worker = threaded_worker(request.META)
    if worker is not None:
        _worker_warned = True
        logger.warning("django_realtime.W003: %s. %s", THREADED[worker], HINT)


def connection_closer(request: HttpRequest) -> Callable[[], None] | None:
    """Return a callable that cuts *request*'s connection from another thread, or None if the server offers none."""
    sock = request.META.get("gunicorn.socket")
    if sock is None:
        return None
    return functools.partial(_shut_down, sock)


def _shut_down(sock: socket.socket) -> None:
    shut_down_socket(sock.fileno())  # -1 once closed: nothing to shut down


def sse_stream(
    hub: Hub,
    channels: frozenset[str],
    cursor: Cursor | None,
    keepalive: float,
    lifetime: float | None = None,
    write: Watched | None = None,
    encode: Callable[[list[Item]], bytes] = sse_chunk,
    first: bytes | None = None,
    parking: Parking | None = None,
) -> Iterator[bytes]:
    """Return the SSE bytes of a stream, for threads and gevent; *write* is the watchdog's watch on its writes, if any.

    A server that can write to the stream's socket from the hub's wake-ups
    enables *parking* (streams.Parking): the stream then waits parked.

    The stream starts with *first* (by default the ``prelude()``) and encodes
    each batch with *encode*; it ends with a ``parting()`` once it has sent
    what it has while the hub drains (a gunicorn worker told to stop).  The
    server pulls a chunk only once it has written the last: while it holds
    one (``write.since`` set), a client that stops reading blocks it, and
    the watchdog cuts the connection after SSE_SEND_TIMEOUT.
    """
    first = prelude() if first is None else first
    return follow(
        hub,
        channels,
        cursor,
        keepalive,
        encode,
        first=first,
        lifetime=lifetime,
        parting=parting,
        write=write,
        parking=parking,
    )


async def asse_stream(
    hub: Hub,
    channels: frozenset[str],
    cursor: Cursor | None,
    keepalive: float,
    lifetime: float | None = None,
    scope: Mapping[str, Any] | None = None,
    give_seat: Callable[[], None] | None = None,
    encode: Callable[[list[Item]], bytes] = sse_chunk,
    first: bytes | None = None,
    connection: metrics.Connection | None = None,
    shut_at_drain: ShutAtDrain | None = None,
) -> AsyncIterator[bytes]:
    """Yield the SSE bytes of a stream, on asyncio; *encode* and *first* as for ``sse_stream``.

    *connection* is told why the stream ended, and closed, for the metrics.
    The stream ends with a ``parting()`` once it has sent what it has while
    the hub drains (an ASGI server told to stop: shutdown.py); under daphne
    *shut_at_drain* is given the way to shut its connection then.

    Django sends each chunk before it asks for the next, so the time between
    a yield and the next request is the server's send.  A server whose send
    waits for the client (uvicorn, hypercorn, granian) makes a client that
    stops reading block it: past SSE_SEND_TIMEOUT the watchdog cancels the task
    that streams, Django ends the response and the server the connection.
    daphne's send never waits, so there the stream watches the connection's
    write buffer itself (daphne_server.py): it sends on only while the buffer
    has room, and ends if it stays full for SSE_SEND_TIMEOUT.
    """
    yield prelude() if first is None else first
    # On the thread that ran the view, after it returned and left any
    # ATOMIC_REQUESTS transaction: the stream must not hold its connection.
    await sync_to_async(release_connections)()
    release_request_thread()
    watch_server_signals()
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    watchdog = get_watchdog(hub)
    write = None
    if task is not None:

        def cut() -> None:
            if connection is not None:
                connection.reason = metrics.SLOW_CLIENT
            task.cancel()
            # Now, not when the generator is finalised: Django 6.1 neither closes
            # the response of a cancelled stream nor closes this generator.
            if give_seat is not None:
                give_seat()

        def close() -> None:  # from the hub's ticker thread
            loop.call_soon_threadsafe(cut)

        write = watchdog.watch(close)
    transport = daphne_transport(scope) if scope is not None else None
    room = daphne_write_gate(transport) if transport is not None and write is not None else None
    if transport is not None and shut_at_drain is not None:

        def shut() -> None:  # from the thread that closes the response
            loop.call_soon_threadsafe(transport.loseConnection)

        shut_at_drain.shut = shut
    # A caught-up stream waits parked, its chunks written by the hub's wake-ups, where the server is known.
    writer = None
    if room is not None:
        writer = sse_writer(transport, room)
    elif write is not None and scope is not None and transport is None:
        writer = uvicorn_sse_writer(scope)
    parking = None
    if writer is not None:
        parking = Parking()
        parking.enabled = True
        parking.on_loop = OnLoop(parking, *writer)
    try:
        async for chunk in afollow(hub, channels, cursor, keepalive, encode, lifetime, parting, parking):
            if room is not None and not room.is_set():
                timeout = watchdog.send_timeout
                try:
                    async with asyncio.timeout(timeout):
                        await room.wait()
                except TimeoutError:
                    watchdog.cut()
                    if connection is not None:
                        connection.reason = metrics.SLOW_CLIENT
                    logger.info("django_realtime ends an SSE stream whose client has not read for %g s", timeout)
                    return
            if write is None:
                yield chunk
                continue
            write.since = time.monotonic()
            yield chunk
            write.since = 0.0
        if connection is not None:  # it ended by itself: its lifetime, or the log could not be read
            connection.reason = metrics.ENDED
    finally:
        watchdog.unwatch(write)
        if connection is not None:
            connection.close(metrics.SERVER_SHUTDOWN if hub.stopping or hub.draining else None)
        if give_seat is not None:
            give_seat()


def release_request_thread() -> bool:
    """Let the thread that Django's ASGI handler keeps for this request's synchronous code end now.

    Django runs a request's synchronous parts (the view, and every
    ``MiddlewareMixin`` middleware's hooks) on a thread of the request's own,
    which lives until the response ends: for a stream, as long as the client
    stays.  Once a stream's view and middleware have returned and its
    connections are closed on that thread, nothing needs it, so its executor
    is let go (asgiref creates another, briefly, if the request calls
    synchronous code again, as Django does to close the response).  This
    reaches into asgiref (``SyncToAsync.thread_sensitive_context`` and
    ``context_to_thread_executor``, asgiref 3.3 to 3.13 at least); where
    those are missing the thread stays, as before, and the server tests'
    thread count fails.  Return whether a thread was let go.
    """
    from asgiref.sync import SyncToAsync

    contexts = getattr(SyncToAsync, "thread_sensitive_context", None)
    executors = getattr(SyncToAsync, "context_to_thread_executor", None)
    if contexts is None or executors is None:
        return False
    context = contexts.get(None)
    executor = executors.pop(context, None) if context is not None else None
    if executor is None:
        return False
    executor.shutdown(wait=False)
    return True
