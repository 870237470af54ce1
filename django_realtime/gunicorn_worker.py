"""A gunicorn gevent worker whose SSE streams wait in a greenlet of their own, not in the request's (issue 26).

``gunicorn -k django_realtime.gunicorn_worker.GeventWorker`` serves
everything as ``-k gevent`` does.  Only an event stream's life differs: once
its response head and first chunk are written, the greenlet that served the
request (gunicorn's parser, request, environ and Django's whole call chain
under it) ends, and a fresh greenlet with a shallow stack writes the rest of
the stream.  A waiting stream then keeps its socket, its cursor, its
channels and that small greenlet: about 12 KB of worker RSS instead of 22
(docs/benchmarks.md, "Per-stream memory on the demo's path").

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

import os
import ssl
import time
from typing import Any

from gevent.pool import Group
from gevent.socket import socket
from gunicorn.workers import ggevent

# Nothing of Django at import: gunicorn imports its worker class before the worker patches
# the standard library, and Django's connections, made then, would be shared by every greenlet.

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


class GeventWorker(ggevent.GeventWorker):
    """gunicorn's gevent worker, whose event streams each wait in a small greenlet of their own."""

    streams: Group
    wsgi: Any

    def init_process(self) -> None:
        self.streams = Group()
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
        while len(self.streams) and time.monotonic() < deadline:
            self.notify()
            self.streams.join(timeout=min(1.0, max(0.0, deadline - time.monotonic())))
        self.streams.kill(timeout=1)
