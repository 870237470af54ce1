"""A gunicorn gevent worker whose waiting SSE streams hold no greenlet at all (issue 26).

``gunicorn -k django_realtime.gunicorn_worker.GeventWorker`` serves
everything as ``-k gevent`` does.  Only an event stream's life differs: once
its response head and first chunk are written, the greenlet that served the
request (gunicorn's parser, request, environ and Django's whole call chain
under it) ends, and a fresh greenlet with a shallow stack writes the rest of
the stream.  The package's own streams (the SSE endpoint's) go further: once
caught up, such a stream parks (``Stream``): its greenlet ends too, and the
hub's wake-ups write its events and keepalives to its socket without
blocking.  A waiting stream then keeps its socket, its cursor and its
channels: about 9 KB of worker RSS warm, 12 cold (docs/benchmarks.md,
"Parked streams").  Other event streams (``@event_stream`` views) keep their
small greenlet.

It leans on gunicorn's gevent worker (checked with gunicorn 27): the Response
whose ``start_response`` the application is given says whether the head went
out and whether the body is chunked (a Response without those is served as
``-k gevent`` serves it); an exception that is not an ``Exception`` passes
through its request loop; and gevent's server closes the socket it accepted
when the request's greenlet ends, so the stream writes to a duplicate.

What differs from ``-k gevent`` for an event stream: gunicorn's access log
and ``post_request`` hook see it once its head is sent; its connection
closes when it ends (no keep-alive after a stream); and it does not hold one
of ``--worker-connections``, which then caps requests being served: cap the
streams with ``MAX_STREAMS``.  A worker told to stop waits up to
``--graceful-timeout`` for its streams as for its requests.  TLS and HTTP/2
connections are served as ``-k gevent`` serves them.
"""

from __future__ import annotations

import logging
import os
import ssl
import time
from typing import TYPE_CHECKING, Any

import gevent
from gevent.pool import Group
from gevent.socket import socket
from gunicorn.workers import ggevent

from .framing import framed

if TYPE_CHECKING:
    from .streams import Parking

# Nothing of Django at import: gunicorn imports its worker class before the worker patches
# the standard library, and Django's connections, made then, would be shared by every greenlet.

logger = logging.getLogger("django_realtime")

#: What Parking.wake() asks (streams.py), here without importing Django at import.
STAY, WRITE, RESUME = range(3)

#: The content type of what is handed to a greenlet of its own.
EVENT_STREAM = "text/event-stream"


class HandedOff(BaseException):
    """Raised to gunicorn's request loop: the stream goes on in a greenlet of its own, the request is done."""


class Connection:
    """A client's socket as gunicorn sees it: closed by gunicorn's handler unless a stream has taken it."""

    __slots__ = ("sock", "taken")

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.taken = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)

    def close(self) -> None:
        if not self.taken:
            self.sock.close()


class HandOff:
    """The iterator gunicorn is given for an event stream: the head and first chunk, then the hand-off."""

    __slots__ = ("worker", "response", "chunks", "server_response", "connection")

    def __init__(self, worker: GeventWorker, response: Any, server_response: Any, connection: Connection) -> None:
        self.worker = worker
        self.response = response
        self.chunks = iter(response)
        self.server_response = server_response
        self.connection = connection

    def __iter__(self) -> HandOff:
        return self

    def __next__(self) -> bytes:
        if self.server_response is None:
            raise StopIteration
        if not self.server_response.headers_sent:
            return next(self.chunks)  # gunicorn writes the head with it
        from .db import forget_connections

        # The view has returned and any ATOMIC_REQUESTS transaction is over: this
        # greenlet's connections end with it.
        forget_connections()
        chunked = bool(self.server_response.chunked)
        connection = self.connection
        # gevent's server closes the socket it accepted once this greenlet ends: the stream
        # goes on with a duplicate of it, which the stream's own closer (the hub's cut) sees too.
        connection.sock = socket(fileno=os.dup(connection.sock.fileno()))
        connection.taken = True
        # The head is sent: nothing reads the response's headers again, and they would
        # stay as long as the stream (about 1.2 KB: the security, CORS and SSE headers).
        self.response.headers = type(self.response.headers)({})
        parking = getattr(self.response, "parking", None)
        if parking is not None and parking.generator is self.chunks:
            # Only the package's own stream, pulled as it made it (no middleware's wrapper in
            # between), yields its Parking: the worker writes to its socket from the hub's wake-ups.
            parking.enabled = True
            stream = Stream(self.worker, self.chunks, self.response, self.connection, chunked, parking)
            self.worker.streams.spawn(_run_stream, stream)
        else:
            self.worker.streams.spawn(_write_stream, self.chunks, self.response, self.connection, chunked)
        self.server_response = None
        raise HandedOff

    def close(self) -> None:
        if not self.connection.taken:
            self.response.close()


def _write_stream(chunks: Any, response: Any, connection: Connection, chunked: bool) -> None:
    """Write the rest of a stream to its client, end it (chunked: its terminator), close the response and socket."""
    sock = connection.sock
    try:
        for chunk in chunks:
            if chunk:
                sock.sendall(b"%X\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
        if chunked:
            sock.sendall(b"0\r\n\r\n")
    except OSError:  # the client left, or the hub cut a client that stopped reading
        pass
    finally:
        try:
            response.close()
        finally:
            sock.close()


class Stream:
    """A stream handed off that the hub may write to while it waits parked, with no greenlet (issue 26).

    A caught-up stream's follow loop yields its Parking instead of waiting
    (streams.py): its greenlet ends and the stream joins its group's parked
    streams (``Hub.park``).  Each wake-up of the group (a batch, a tick, the
    drain) runs ``wake()`` where it happens, in the hub's reader or ticker:
    the plain case, an event or a keepalive, is framed and written at once
    with the socket's non-blocking ``send``.  Anything else (a write the
    socket took part of or none of, a read of the log, a piece that needs
    the budget, the drain, the lifetime's end) gives the stream a greenlet
    again, which writes what is left of the chunk first, then runs the same
    follow loop on from where the stream is.  A write that fails (the client
    left) ends the stream, in a greenlet too: its closers leave presence.
    """

    __slots__ = ("worker", "chunks", "response", "connection", "fd", "chunked", "parking", "parked")

    def __init__(
        self, worker: GeventWorker, chunks: Any, response: Any, connection: Connection, chunked: bool, parking: Parking
    ) -> None:
        self.worker = worker
        self.chunks = chunks
        self.response = response
        self.connection = connection
        #: The socket's descriptor, written to while parked: closed only by end(), which unparks first.
        self.fd: int = connection.sock.fileno()
        self.chunked = chunked
        self.parking = parking
        self.parked = False

    def park(self) -> bool:
        """Park the stream with the hub; return False if its group was woken since it looked (it looks again)."""
        parking = self.parking
        if not parking.follower.hub.park(parking.group, self, parking.signal):
            return False
        self.parked = True
        self.worker.parked.add(self)
        return True

    def wake(self, now: float, shared: dict[object, object]) -> bool:
        """Write what the wake-up brings without blocking; return whether the stream stays parked.

        The streams of a group at the same seq write the same chunk (*shared*, ``Parking.wake``), framed once.
        """
        if not self.parked:  # ended at the worker's exit
            return False
        try:
            action, value = self.parking.wake(now, shared)
        except Exception:  # a bug must not lose the stream: its loop goes on, or ends, in a greenlet
            logger.exception("django_realtime: a parked stream's wake-up failed")
            action, value = RESUME, None
        if action == STAY:
            return True
        if action == RESUME:
            self._unpark(_run_stream, b"", value)
            return False
        chunk: bytes = value  # type: ignore[assignment]
        data = framed(shared, chunk) if self.chunked else chunk
        try:
            sent = os.write(self.fd, data)  # the socket is non-blocking under gevent
        except BlockingIOError:
            sent = 0
        except OSError:  # the client left, or the watchdog cut it: end the stream where it may block (presence)
            self._unpark(_end_stream)
            return False
        if sent == len(data):
            return True
        self._unpark(_run_stream, data[sent:], None)
        return False

    def _unpark(self, run: Any, *args: Any) -> None:
        self.parked = False
        self.worker.parked.discard(self)
        self.worker.streams.spawn(run, self, *args)

    def end(self) -> None:
        """End the stream: close its response (its seat, presence and metrics), then its connection."""
        self.parked = False
        try:
            self.response.close()
        finally:
            self.connection.sock.close()


def _run_stream(stream: Stream, rest: bytes = b"", batch: Any = None) -> None:
    """Write *rest* (a chunk's remainder), then run the stream's loop (sent *batch* first), until it ends or parks."""
    sock = stream.connection.sock
    chunks = stream.chunks
    parking = stream.parking
    chunked = stream.chunked
    try:
        if rest:
            write = parking.write
            if write is not None:  # watched as any chunk the server holds: a client that stopped reading is cut
                write.since = time.monotonic()
            sock.sendall(rest)
            if write is not None:
                write.since = 0.0
        while True:
            try:
                chunk = chunks.send(batch)
            except StopIteration:
                break
            batch = None
            if chunk is parking:
                if stream.park():
                    return  # the hub has it now: no end
                continue
            if chunk:
                sock.sendall(b"%X\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
        if chunked:
            sock.sendall(b"0\r\n\r\n")
    except OSError:  # the client left, or the hub cut a client that stopped reading
        pass
    finally:
        if not stream.parked:
            stream.end()


def _end_stream(stream: Stream) -> None:
    stream.end()


class GeventWorker(ggevent.GeventWorker):
    """gunicorn's gevent worker, whose event streams each wait in a small greenlet of their own."""

    streams: Group
    #: The streams that wait parked, with no greenlet: they count as streams until they end.
    parked: set[Stream]
    wsgi: Any

    def init_process(self) -> None:
        self.streams = Group()
        self.parked = set()
        super().init_process()

    def load_wsgi(self) -> None:
        super().load_wsgi()
        application: Any = self.wsgi

        def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
            response = application(environ, start_response)
            connection = environ.get("gunicorn.socket")
            # gunicorn's Response, whose start_response this is: it knows whether the head went out, chunked.
            server_response = getattr(start_response, "__self__", None)
            if (
                isinstance(connection, Connection)
                and environ.get("HTTP_VERSION") != "2"  # one stream of a multiplexed connection
                and hasattr(server_response, "headers_sent")
                and hasattr(server_response, "chunked")
                and getattr(response, "streaming", False)
                and str(response.get("Content-Type", "")).startswith(EVENT_STREAM)
            ):
                return HandOff(self, response, server_response, connection)
            return response

        self.wsgi = wsgi

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        # TLS sockets are told apart by type (and ALPN picks HTTP/2 there): served as -k gevent serves them.
        super().handle(listener, client if isinstance(client, ssl.SSLSocket) else Connection(client), addr)

    def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> Any:
        try:
            return super().handle_request(listener_name, req, sock, addr)
        except HandedOff:
            raise StopIteration from None  # gunicorn's handler leaves the connection ("Closing connection")

    def run(self) -> None:
        super().run()
        # gunicorn waited for the requests it serves; the streams handed off wait here, as long.
        deadline = time.monotonic() + self.cfg.graceful_timeout
        while (len(self.streams) or self.parked) and time.monotonic() < deadline:
            self.notify()
            left = max(0.0, deadline - time.monotonic())
            if len(self.streams):
                self.streams.join(timeout=min(1.0, left))
            else:  # the parked ones get a greenlet at the drain
                gevent.sleep(min(0.05, left))
        self.streams.kill(timeout=1)
        for stream in list(self.parked):
            stream.end()
        self.parked.clear()
