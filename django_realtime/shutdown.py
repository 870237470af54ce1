"""When an ASGI server is told to stop, end its streams cleanly before it stops.

daphne stops on SIGTERM or SIGINT by stopping Twisted's reactor, whose
"before shutdown" trigger cancels every application at once
(``daphne.server.Server.kill_all_applications``); the reactor then drops
every connection.  It sends no lifespan events, so nothing tells an
application beforehand: each SSE client saw its response cut mid-chunk,
each WebSocket client a 1006 without a close frame, all at the same moment.
uvicorn, told to stop, waits for every connection to close, which a stream
never does (``--timeout-graceful-shutdown``, unlimited by default), then
closes WebSockets with 1012.

So at the first stream or WebSocket of a process (``watch_server_signals``),
if the current handler of SIGTERM and SIGINT is the server's own (the
reactor's, or uvicorn's ``Server.handle_exit``), the package puts its own
in front of it.  On the signal it:

1. stops accepting connections, so that a reconnect reaches another
   instance (the balancer's next upstream);
2. drains the hub (``hub.drain``): each SSE stream sends what it has, then
   a ``retry:`` drawn up to SHUTDOWN_RETRY, and ends, and its connection is
   shut rather than kept alive; each WebSocket is closed with 4004 and a
   reason ``retry=<ms>`` drawn the same way (docs/websocket.md, "Closing");
3. waits until the process's streams have ended and what they wrote has
   left, DRAIN_TIMEOUT at most;
4. calls the server's handler, and the server stops as it always did.

A second signal during the drain goes to the server's handler at once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import sys
import threading
import time
from typing import Any, cast

logger = logging.getLogger("django_realtime")

#: Signals that stop daphne and uvicorn.
SIGNALS = (signal.SIGTERM, signal.SIGINT)
#: Most seconds the streams get to end before the server's own handler runs.
DRAIN_TIMEOUT = 5.0
#: Seconds between two looks at whether every stream has ended.
DRAIN_POLL = 0.02

_watched_pid = 0
_told = False


def watch_server_signals() -> None:
    """Put the drain in front of the server's SIGTERM and SIGINT handlers, once per process.

    Call it on the event loop the server runs (its main thread).  Nothing
    happens under a server not known here, off the main thread, or where
    someone else's handler is installed.
    """
    global _watched_pid
    if _watched_pid == os.getpid():
        return
    _watched_pid = os.getpid()
    if threading.current_thread() is not threading.main_thread():
        return
    for number in SIGNALS:
        previous = signal.getsignal(number)
        server = _server_of(previous)
        if server is not None:
            signal.signal(number, functools.partial(_on_signal, server, previous))


def _server_of(handler: Any) -> Server | None:
    owner = getattr(handler, "__self__", None)
    if owner is None:
        return None
    reactor = sys.modules.get("twisted.internet.reactor")
    if "daphne.server" in sys.modules and reactor is not None and owner is reactor:
        return Daphne(reactor)
    if type(owner).__module__ == "uvicorn.server" and getattr(handler, "__name__", "") == "handle_exit":
        return Uvicorn(owner)
    return None


class Server:
    """What the drain needs of a server: stop accepting, and run a callable on its loop later."""

    def stop_accepting(self) -> None:
        raise NotImplementedError("subclasses of Server must provide stop_accepting()")

    def settled(self) -> bool:
        """Return whether what the ended streams wrote has left: stopping the server now loses none of it."""
        return True

    def call_soon_threadsafe(self, callback: Any, *args: Any) -> None:
        raise NotImplementedError("subclasses of Server must provide call_soon_threadsafe()")

    def call_later(self, delay: float, callback: Any, *args: Any) -> None:
        raise NotImplementedError("subclasses of Server must provide call_later()")


class Daphne(Server):
    """daphne: Twisted's reactor on the asyncio loop; its listening ports are among the reactor's readers."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor

    def stop_accepting(self) -> None:
        from twisted.internet.interfaces import IListeningPort

        for reader in list(self.reactor.getReaders()):
            if IListeningPort.providedBy(reader):
                reader.stopListening()

    def settled(self) -> bool:
        # The reactor drops its connections as it stops (disconnectAll), with whatever their
        # write buffers hold: the end of a response, a close frame.  A transport with data
        # to write is one of its writers.
        return not self.reactor.getWriters()

    def call_soon_threadsafe(self, callback: Any, *args: Any) -> None:
        self.reactor.callFromThread(callback, *args)

    def call_later(self, delay: float, callback: Any, *args: Any) -> None:
        self.reactor.callLater(delay, callback, *args)


class Uvicorn(Server):
    """uvicorn: its ``Server`` (the signal handler's owner) holds its listeners and connections."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()

    def stop_accepting(self) -> None:
        for listener in getattr(self.server, "servers", ()):
            listener.close()
        # An HTTP connection is closed once its response is complete (uvicorn's graceful
        # shutdown does the same); a WebSocket's shutdown() would close it with 1012 now.
        for connection in list(getattr(getattr(self.server, "server_state", None), "connections", ())):
            if ".protocols.http." in type(connection).__module__:
                connection.shutdown()

    def call_soon_threadsafe(self, callback: Any, *args: Any) -> None:
        self.loop.call_soon_threadsafe(callback, *args)

    def call_later(self, delay: float, callback: Any, *args: Any) -> None:
        self.loop.call_later(delay, callback, *args)


def _on_signal(server: Server, previous: Any, number: int, frame: Any) -> None:
    global _told
    if _told:  # told twice: stop now
        previous(number, frame)
        return
    _told = True
    server.call_soon_threadsafe(_drain, server, previous, number)


def _drain(server: Server, previous: Any, number: int) -> None:
    from .hub import drain, get_hub

    logger.info(
        "django_realtime: the server was told to stop (%s): its streams end, each with a spread retry",
        signal.Signals(number).name,
    )
    try:
        server.stop_accepting()
    except Exception:
        logger.exception("django_realtime could not stop the server accepting connections")
    drain()
    _wait(server, get_hub(), previous, number, time.monotonic() + DRAIN_TIMEOUT)


def _wait(server: Server, hub: Any, previous: Any, number: int, deadline: float) -> None:
    # Streams hold a seat, WebSockets and @event_stream streams are in on_drain until they end.
    if (hub.seats.taken > 0 or hub.on_drain or not server.settled()) and time.monotonic() < deadline:
        server.call_later(DRAIN_POLL, _wait, server, hub, previous, number, deadline)
        return
    if hub.seats.taken > 0:
        logger.warning("django_realtime: %s streams had not ended after %g s", hub.seats.taken, DRAIN_TIMEOUT)
    cast(Any, previous)(number, None)
