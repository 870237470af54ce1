"""What the package does under daphne beyond ASGI: Twisted's write buffers, and daphne's close codes.

ASGI gives an application no way to know whether the client reads what it
is sent, and daphne's ``send()`` never waits: it hands each message to
Twisted, whose transport appends it to a write buffer without limit.
Measured here: one client that stopped reading grew a daphne process by
240 MB in ten seconds (docs/websocket.md).  Under daphne, then, the
WebSocket consumer and SSE streams reach their connection's Twisted
transport and take part in Twisted's documented producer/consumer flow
control (``WriteGate``): the transport calls ``pauseProducing()`` when its
buffer passes ``bufferSize`` (64 KiB) and ``resumeProducing()`` once it has
drained, and nothing is handed over in between.

* WebSockets (``adapt_connection``): the transport is found through the
  ``send`` callable daphne gives the application.  Daphne's WebSocket
  library (autobahn) also drops the TCP connection without a close frame
  when a client breaks a limit, so a client sees 1006 where RFC 6455
  (section 7.4.1) has 1009 for a message too big; the consumer asks it to
  send the close frame.  daphne drops a close's reason; ``close_with_reason``
  has autobahn send it.  ``send_now`` hands a message over from
  synchronous code; ``unwrap_send`` skips Channels' session middleware;
  ``frame_writer`` writes an event's frame, made once for all its
  subscribers, straight to the connection's transport.
* SSE (``daphne_write_gate``): Django sends each chunk of a stream with the
  server's ``send()`` before it asks for the next; uvicorn, hypercorn and
  granian make that wait while the client does not read, so the
  SSE_SEND_TIMEOUT watchdog sees it (sse/watchdog.py).  Under daphne the
  stream finds its connection's transport among the reactor's readers, by
  the peer and server addresses of the ASGI scope (public Twisted API),
  hands the next chunk over only while the buffer has room, and ends if it
  stays full for SSE_SEND_TIMEOUT.

Under other servers nothing is changed: the WebSocket outbox still bounds
what it holds, and a server whose ``send()`` waits for the network (such as
uvicorn's websockets-based one) bounds its own buffer.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, cast

logger = logging.getLogger("django_realtime")


class WriteGate:
    """An IPushProducer that opens and shuts with the room in a Twisted transport's write buffer.

    It takes over the transport's producer slot and passes every call on to
    the producer it found there (daphne leaves the upgraded connection's
    ``HTTPChannel`` registered), so Twisted behaves exactly as before.
    """

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.open = asyncio.Event()
        self.previous = transport.producer
        if self.previous is not None and not transport.streamingProducer:
            raise TypeError("the transport has a pull producer; its write buffer cannot be watched")
        if not getattr(transport, "producerPaused", False):
            self.open.set()
        if self.previous is not None:
            transport.unregisterProducer()
        transport.registerProducer(self, True)

    def pauseProducing(self) -> None:
        self.open.clear()
        if self.previous is not None:
            self.previous.pauseProducing()

    def resumeProducing(self) -> None:
        self.open.set()
        if self.previous is not None:
            self.previous.resumeProducing()

    def stopProducing(self) -> None:
        # The connection is gone: let the sender run on into the server,
        # which drops messages for closed connections.
        self.open.set()
        if self.previous is not None:
            self.previous.stopProducing()


def daphne_protocol(send: Any) -> Any:
    """Return daphne's protocol object behind an ASGI ``send`` callable, or None for other servers."""
    for _ in range(8):
        if isinstance(send, functools.partial):
            # daphne.server.Server.create_application passes partial(self.handle_reply, protocol).
            owner = getattr(send.func, "__self__", None)
            if type(owner).__module__ != "daphne.server" or len(send.args) != 1:
                return None
            return send.args[0]
        # Channels' session middleware (in AuthMiddlewareStack) wraps send in
        # a method of an InstanceSessionWrapper, which keeps the original.
        send = getattr(getattr(send, "__self__", None), "real_send", None)
        if send is None:
            return None
    return None


def unwrap_send(send: Any) -> Any:
    """Return the ``send`` callable beneath Channels' session middleware, for ``websocket.send`` messages.

    ``InstanceSessionWrapper.send`` (in ``AuthMiddlewareStack``) acts only
    on ``http.response.start``; for every other message it reads the lazy
    session twice and passes the message on: about 5 % of daphne's CPU per
    delivered event at 1,000 subscribers.  Any other wrapper is kept.
    """
    for _ in range(8):
        owner: Any = getattr(send, "__self__", None)
        if type(owner).__name__ != "InstanceSessionWrapper" or type(owner).__module__ != "channels.sessions":
            return send
        if "websocket.send" in getattr(owner, "save_message_types", ()):
            return send
        send = owner.real_send
    return send


def send_now(send: Any, message: dict[str, Any]) -> None:
    """Hand *message* to daphne at once, from synchronous code on the event loop.

    daphne's ``Server.handle_reply`` is a coroutine that never waits (it
    checks the connection and calls the protocol), so running it one step
    completes it.  Raise RuntimeError if it does wait: then it did not
    finish, and the caller must send the message the ordinary way.
    """
    coroutine = send(message)
    try:
        coroutine.send(None)
    except StopIteration:
        return
    coroutine.close()
    raise RuntimeError("the server's send() waited; it cannot be driven synchronously")


def frame_writer(send: Any) -> Callable[[bytes], bool] | None:
    """Return a function that writes a ready text frame to daphne's connection behind *send*, or None.

    daphne's ``send()`` of one message goes through ``Server.handle_reply``,
    daphne's and autobahn's ``sendMessage``, which encodes and frames the
    text again for each connection and builds a debug line's arguments
    before Twisted's ``write()``: 23 % of daphne's CPU at 1,000 subscribers
    (docs/benchmarks.md, issue 26).  A server's frames are unmasked, so the frame made
    once per event (``websocket.frames``) is the same bytes on every
    connection that negotiated no compression.  The function returns False,
    writing nothing, where autobahn would not send that frame as it is (the
    connection is not open, compresses, has frames queued, or the message is
    over daphne's ``--websocket_max_message_size``, which autobahn refuses to
    send too): the caller sends the message the ordinary way.  None under
    another server, or when daphne's factory masks or fragments server frames.
    """
    protocol = daphne_protocol(send)
    factory = getattr(protocol, "factory", None)
    if protocol is None or not hasattr(protocol, "STATE_OPEN") or factory is None:
        return None
    if getattr(factory, "maskServerFrames", True) or getattr(factory, "autoFragmentSize", 1):
        return None
    open_state = protocol.STATE_OPEN
    limit = getattr(protocol, "maxMessagePayloadSize", 0) or 0

    def write(frame: bytes) -> bool:
        if protocol.state != open_state or protocol._perMessageCompress is not None or protocol.send_queue:
            return False
        if 0 < limit < len(frame):  # the frame's few header bytes included: at worst the ordinary way
            return False
        transport = protocol.transport
        if transport is None:
            return False
        transport.write(frame)
        return True

    return write


def close_with_reason(send: Any, code: int, reason: str) -> bool:
    """Close daphne's WebSocket behind *send* with *code* and *reason*; return False under another server.

    daphne's ``websocket.close`` drops the ASGI message's ``reason``
    (``WebSocketProtocol.serverClose``); its protocol, autobahn's, sends one.
    """
    protocol = daphne_protocol(send)
    if protocol is None or not hasattr(protocol, "sendClose"):
        return False
    protocol.sendClose(code=code, reason=reason)
    return True


def adapt_connection(send: Any) -> asyncio.Event | None:
    """Adapt a daphne connection; return an event set while its write buffer has room.

    Return None when the buffer cannot be watched: under another server, or
    when middleware other than Channels' session middleware wraps ``send``.
    """
    protocol = daphne_protocol(send)
    if protocol is None:
        return None
    if hasattr(protocol, "failByDrop"):
        protocol.failByDrop = False  # send 1009 (and other RFC 6455 codes) before closing
    transport = getattr(protocol, "transport", None)
    if transport is None or not hasattr(transport, "registerProducer"):
        return None
    try:
        return WriteGate(transport).open
    except (TypeError, RuntimeError) as exc:
        logger.warning("django_realtime cannot watch this connection's write buffer: %s", exc)
        return None


def daphne_transport(scope: Mapping[str, Any]) -> Any:
    """Return the Twisted transport of the daphne connection of *scope*, or None.

    None under any other server, or if the connection is not found.  Call
    it on the event loop, which daphne shares with Twisted's reactor.
    """
    if "daphne.server" not in sys.modules or "twisted.internet.reactor" not in sys.modules:
        return None  # not daphne: and importing the reactor would install one
    client, server = scope.get("client"), scope.get("server")
    if not client or not server:
        return None
    from twisted.internet import reactor

    # The stubs type the reactor as an interface, not as the reactor.
    for reader in cast(Any, reactor).getReaders():
        try:
            peer, host = reader.getPeer(), reader.getHost()
        except Exception:  # a listening port, a waker: not a connection
            continue
        if (getattr(peer, "host", None), getattr(peer, "port", None)) != (client[0], client[1]):
            continue
        if getattr(host, "port", None) != server[1] or not hasattr(reader, "registerProducer"):
            continue
        return reader
    return None


def sse_writer(transport: Any, room: asyncio.Event) -> tuple[Callable[[bytes], bool], bool] | None:
    """Return a function that writes an SSE stream's chunk straight to its connection, and whether to frame it.

    Django sends each chunk through daphne's ``handle_reply`` and Twisted's
    ``Request.write``, and Twisted's ``write()`` registers the socket with
    the loop for writing on every write and writes it at the loop's next
    turn: about 70 % of daphne's CPU per event (docs/benchmarks.md).  A
    parked stream (``streams.OnLoop``) writes instead: with one
    non-blocking ``send`` when Twisted holds nothing for the connection,
    else (and for what the socket did not take) through the transport's
    ``write()``, behind what it holds, so the order stays.  Twisted's
    ``Request`` framed the response in HTTP/1.1 chunks or not, at its first
    write: the caller frames as it did.  The function returns False,
    writing nothing, when the buffer is full (``room``, the write gate) or
    the connection is going.  None if *transport* is not a plain TCP
    connection of daphne's with one response begun on it (TLS, say).
    """
    if type(transport).__module__ != "twisted.internet.tcp" or not hasattr(transport, "_tempDataBuffer"):
        return None
    protocol = getattr(transport, "protocol", None)
    # Twisted's HTTP factory wraps the HTTPChannel in a protocol that may switch it to HTTP/2.
    requests = getattr(getattr(protocol, "_channel", protocol), "requests", None)
    if not requests or len(requests) != 1 or not getattr(requests[0], "startedWriting", False):
        return None
    request = requests[0]
    fd = transport.fileno()
    is_open = room.is_set

    def write(data: bytes) -> bool:
        if not is_open() or request.finished or request._disconnected or transport.disconnecting:
            return False
        if transport._tempDataBuffer or transport.dataBuffer:
            transport.write(data)
            return True
        try:
            sent = os.write(fd, data)  # Twisted's sockets are non-blocking
        except BlockingIOError:
            sent = 0
        except OSError:  # the client left: the task sends it the ordinary way, and Twisted notices
            return False
        if sent < len(data):
            transport.write(data[sent:])  # Twisted writes the rest when the socket has room
        return True

    return write, bool(request.chunked)


def daphne_write_gate(transport: Any) -> asyncio.Event | None:
    """Return an event set while the write buffer of *transport* (``daphne_transport()``) has room, or None."""
    try:
        return WriteGate(transport).open
    except (TypeError, RuntimeError) as exc:
        logger.warning("django_realtime cannot watch this SSE connection's write buffer: %s", exc)
        return None
