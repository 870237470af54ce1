import asyncio
import functools
import socket
import types

import pytest
from daphne.server import Server

from django_realtime.daphne_server import WriteGate, adapt_connection, daphne_protocol


class Producer:
    def __init__(self):
        self.calls = []

    def pauseProducing(self):
        self.calls.append("pause")

    def resumeProducing(self):
        self.calls.append("resume")

    def stopProducing(self):
        self.calls.append("stop")


class Transport:
    """The producer slot of twisted.internet.abstract.FileDescriptor."""

    def __init__(self, producer=None, paused=False):
        self.producer = producer
        self.streamingProducer = producer is not None
        self.producerPaused = paused

    def registerProducer(self, producer, streaming):
        if self.producer is not None:
            raise RuntimeError("Cannot register producer, because producer was never unregistered.")
        self.producer, self.streamingProducer = producer, streaming

    def unregisterProducer(self):
        self.producer = None


class Protocol:
    """The attributes of autobahn's WebSocketServerProtocol that matter here."""

    def __init__(self, transport):
        self.transport = transport
        self.failByDrop = True


def daphne_send(protocol):
    server = object.__new__(Server)  # Server() itself needs endpoints
    return functools.partial(server.handle_reply, protocol)


def test_write_gate_follows_the_transport_and_passes_calls_on_to_the_producer_it_replaced():
    async def main():
        previous = Producer()
        transport = Transport(previous)
        gate = WriteGate(transport)
        assert transport.producer is gate and transport.streamingProducer
        assert gate.open.is_set()
        gate.pauseProducing()
        assert not gate.open.is_set()
        gate.resumeProducing()
        assert gate.open.is_set()
        gate.pauseProducing()
        gate.stopProducing()
        assert gate.open.is_set(), "a closed connection must not leave the sender waiting"
        assert previous.calls == ["pause", "resume", "pause", "stop"]

    asyncio.run(main())


def test_write_gate_starts_shut_when_the_buffer_is_already_full():
    async def main():
        gate = WriteGate(Transport(Producer(), paused=True))
        assert not gate.open.is_set()
        gate.resumeProducing()
        assert gate.open.is_set()

    asyncio.run(main())


def test_write_gate_works_without_a_previous_producer():
    async def main():
        transport = Transport()
        gate = WriteGate(transport)
        gate.pauseProducing()
        gate.resumeProducing()
        assert transport.producer is gate and gate.open.is_set()

    asyncio.run(main())


def test_daphne_protocol_is_found_through_channels_session_wrapper():
    from channels.sessions import InstanceSessionWrapper

    protocol = Protocol(Transport(Producer()))
    send = daphne_send(protocol)
    assert daphne_protocol(send) is protocol
    wrapper = object.__new__(InstanceSessionWrapper)
    wrapper.real_send = send
    assert daphne_protocol(wrapper.send) is protocol


async def other_send(message):
    pass


@pytest.mark.parametrize(
    "send",
    [other_send, functools.partial(other_send), functools.partial(Producer().pauseProducing, 1), object()],
    ids=["function", "partial", "foreign-partial", "object"],
)
def test_other_servers_are_left_alone(send):
    assert daphne_protocol(send) is None
    assert adapt_connection(send) is None


def test_a_daphne_connection_gets_a_write_gate_and_sends_close_codes():
    async def main():
        protocol = Protocol(Transport(Producer()))
        writable = adapt_connection(daphne_send(protocol))
        assert writable is protocol.transport.producer.open
        assert protocol.failByDrop is False

    asyncio.run(main())


def test_adapting_gives_up_with_a_warning_when_the_slot_holds_a_pull_producer(caplog):
    async def main():
        protocol = Protocol(Transport(Producer()))
        protocol.transport.streamingProducer = False
        assert adapt_connection(daphne_send(protocol)) is None
        assert "cannot watch" in caplog.text

    asyncio.run(main())


def test_event_messages_skip_channels_session_middleware_and_nothing_else():
    from channels.sessions import InstanceSessionWrapper

    from django_realtime.daphne_server import unwrap_send

    async def server_send(message):
        pass

    scope = {"cookies": {}}
    wrapper = InstanceSessionWrapper(scope, server_send)
    assert unwrap_send(wrapper.send) is server_send
    outer = InstanceSessionWrapper({**scope, "session": object()}, wrapper.send)
    assert unwrap_send(outer.send) is server_send, "nested session middleware, both passed over"

    class Logging:
        async def send(self, message):
            pass

    other = Logging().send
    assert unwrap_send(other) is other, "middleware of another kind is kept"


class Factory:
    """The options of autobahn's WebSocketServerFactory that daphne leaves at their defaults."""

    maskServerFrames = False
    autoFragmentSize = 0


class OpenProtocol(Protocol):
    """An open connection of autobahn's: its state, compression and queue of frames to send."""

    STATE_OPEN = 3

    def __init__(self, transport):
        super().__init__(transport)
        self.factory = Factory()
        self.state = self.STATE_OPEN
        self._perMessageCompress = None
        self.send_queue = []


class Written(Transport):
    def __init__(self):
        super().__init__()
        self.written = []

    def write(self, data):
        self.written.append(data)


def test_a_frame_goes_straight_to_an_open_daphne_connection_and_nowhere_else():
    from django_realtime.daphne_server import frame_writer

    protocol = OpenProtocol(Written())
    write = frame_writer(daphne_send(protocol))
    assert write(b"\x81\x01x") is True
    assert protocol.transport.written == [b"\x81\x01x"]
    # Where autobahn would not send the frame as it is, nothing is written: the caller uses send().
    protocol.maxMessagePayloadSize = 4  # daphne's --websocket_max_message_size: autobahn refuses larger messages
    assert frame_writer(daphne_send(protocol))(b"\x81\x05hello") is False
    protocol.maxMessagePayloadSize = 0
    for attribute, value in [("send_queue", [b"queued"]), ("_perMessageCompress", object()), ("state", 4)]:
        saved = getattr(protocol, attribute)
        setattr(protocol, attribute, value)
        assert write(b"\x81\x01y") is False, attribute
        setattr(protocol, attribute, saved)
    assert protocol.transport.written == [b"\x81\x01x"]
    protocol.factory.maskServerFrames = True
    assert frame_writer(daphne_send(protocol)) is None, "masked server frames are not the same on every connection"
    assert frame_writer(other_send) is None


class TcpTransport:
    """What sse_writer reads of twisted.internet.tcp.Server: its socket, its write buffers, its HTTP channel."""

    __module__ = "twisted.internet.tcp"

    def __init__(self, sock, request):
        self.sock = sock
        self.dataBuffer = b""
        self._tempDataBuffer = []
        self.disconnecting = False
        # Twisted's HTTP factory wraps the channel in a protocol that may switch it to HTTP/2.
        self.protocol = types.SimpleNamespace(_channel=types.SimpleNamespace(requests=[request]))

    def fileno(self):
        return self.sock.fileno()

    def write(self, data):
        self._tempDataBuffer.append(data)


def started_request(chunked=1):
    return types.SimpleNamespace(startedWriting=1, chunked=chunked, finished=False, _disconnected=False)


def test_a_parked_sse_chunk_is_sent_at_once_only_when_twisted_holds_nothing_for_the_connection():
    """Written with one send while Twisted's buffer is empty; what the socket does not take, and every chunk
    after it until Twisted has written it, goes into Twisted's buffer, behind what it holds: the order stays."""
    from django_realtime.daphne_server import sse_writer

    ours, client = socket.socketpair()
    ours.setblocking(False)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    try:
        transport = TcpTransport(ours, started_request())
        room = asyncio.Event()
        room.set()
        write, chunked = sse_writer(transport, room)
        assert chunked is True
        assert write(b"one") is True
        assert client.recv(10) == b"one" and transport._tempDataBuffer == []
        big = bytes(range(256)) * 4096  # 1 MiB: more than the socket takes
        assert write(big) is True
        (rest,) = transport._tempDataBuffer
        assert 0 < len(rest) < len(big) and big.endswith(rest)
        got = drain(client)  # the socket has room again; Twisted still holds the rest
        assert write(b"two") is True
        assert drain(client) == b"", "written ahead of what Twisted holds"
        assert got + b"".join(transport._tempDataBuffer) == big + b"two"
        # While the write gate is shut, or the response is over, nothing is written: the task sends it.
        transport._tempDataBuffer = []
        room.clear()
        assert write(b"three") is False
        room.set()
        transport.protocol._channel.requests[0].finished = True
        assert write(b"three") is False
        assert drain(client) == b"" and transport._tempDataBuffer == []
    finally:
        ours.close()
        client.close()


def drain(sock):
    sock.setblocking(False)
    got = b""
    while True:
        try:
            data = sock.recv(1 << 20)
        except BlockingIOError:
            return got
        got += data


def test_the_sse_writer_is_for_one_plain_http_response_only():
    from django_realtime.daphne_server import sse_writer

    room = asyncio.Event()
    ours, client = socket.socketpair()
    try:
        assert sse_writer(TcpTransport(ours, started_request(chunked=0)), room)[1] is False, "HTTP/1.0: no chunks"
        tls = types.SimpleNamespace(**vars(TcpTransport(ours, started_request())))
        assert sse_writer(tls, room) is None, "not a TCP transport of Twisted's (TLS wraps it)"
        waiting = TcpTransport(ours, started_request())
        waiting.protocol._channel.requests[0].startedWriting = 0
        assert sse_writer(waiting, room) is None, "no response begun"
        pipelined = TcpTransport(ours, started_request())
        pipelined.protocol._channel.requests.append(started_request())
        assert sse_writer(pipelined, room) is None, "more than one request on the connection"
    finally:
        ours.close()
        client.close()
