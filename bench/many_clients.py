"""The cheapest SSE clients that still check exactly-once: for ``bench.many_streams`` (issue 26).

``bench.clients`` decodes HTTP chunking and parses every line in asyncio; at
100,000 streams on two cores the clients' own CPU would then decide the
latency.  These are non-blocking sockets under one ``epoll`` per process,
with no event loop above it: a ready socket costs one ``recv``, one
``find`` per event in what arrived, two number conversions, one byte set
in the stream's ``seen`` array and one latency appended.  They read the
response head once, then only look for the bench's event data,
``{"t":<publish time>,"seq":<n>}``.  That leans on the server writing each
event whole in one chunk (the package's writers do), so that a chunk's size
line never falls inside an event's data; an event cut between two reads is
kept and completed by the next.

Each client process holds its share of the streams, binds their source
addresses over several loopback addresses (one address has ~28,000 ports
to one server port), keeps at most ``concurrency`` connections opening at
once and retries the ones that failed (refused, reset, a 503 from a full
worker) a second later, so the server's listen queue is never the limit.
The runner drives it over a pipe, as ``bench.clients`` does.
"""

from __future__ import annotations

import errno
import multiprocessing
import select
import socket
import time
from array import array
from collections import deque
from typing import Any

from bench.clients import ProcessPool, raise_fd_limit

START = b'{"t":'
SEQ = b',"seq":'
# Linux's IP_BIND_ADDRESS_NO_PORT: the port is picked at connect(), for the whole 4-tuple.
BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
CONNECTING, HEAD, BODY = 0, 1, 2
#: Seconds a connection may take to answer its GET with a head.
OPEN_TIMEOUT = 60.0
RETRY_AFTER = 1.0


class Tally:
    """What one process's streams received since the last reset."""

    def __init__(self, expect: int) -> None:
        self.expect = expect
        self.latencies = array("d")
        self.received = 0
        self.duplicates = 0
        self.unexpected = 0
        self.cpu_start = time.process_time()


class Stream:
    """One SSE connection: its socket, its state, the seqs it got."""

    __slots__ = ("sock", "state", "head", "rest", "seen", "lost", "started")

    def __init__(self, sock: socket.socket | None, expect: int) -> None:
        self.sock = sock
        self.state = CONNECTING
        self.head = b""
        self.rest = b""
        self.seen = bytearray(expect)
        self.lost = False
        self.started = time.monotonic()

    def take_head(self, data: bytes) -> bytes | None:
        """Gather the response head; return the bytes after it once whole, None before.

        Raise ConnectionError if the status is not 200 (a full worker answers 503).
        """
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            return None
        if not self.head.startswith(b"HTTP/1.1 200"):
            raise ConnectionError(self.head.split(b"\r\n", 1)[0].decode(errors="replace"))
        data, self.head = self.head[end + 4 :], b""
        self.state = BODY
        return data

    def feed(self, data: bytes, now: float, tally: Tally) -> None:
        """Count the events in *data*, read at *now*."""
        if self.rest:
            data, self.rest = self.rest + data, b""
        pos, done = data.find(START), 0
        while pos >= 0:
            comma = data.find(SEQ, pos)
            close = data.find(b"}", comma) if comma >= 0 else -1
            if close < 0:
                self.rest = data[pos:]  # the event's end is in the next read
                return
            seq = int(data[comma + 7 : close])
            if seq >= 0:  # negative: the start mark and warm-ups
                if seq >= tally.expect:
                    tally.unexpected += 1
                elif self.seen[seq]:
                    tally.duplicates += 1
                else:
                    self.seen[seq] = 1
                    tally.received += 1
                    tally.latencies.append(now - float(data[pos + 5 : comma]))
            done = close + 1
            pos = data.find(START, done)
        # The next event's start may be cut in two: keep what could be its first bytes.
        self.rest = data[max(done, len(data) - len(START) + 1) :]


class Opening:
    """An ``open`` command in progress: what is left to open, and what failed so far."""

    def __init__(self, host: str, port: int, path: str, count: int, sources: list[str], deadline: float) -> None:
        self.address = (host, port)
        self.request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n".encode()
        self.sources = sources
        self.todo: deque[tuple[float, int]] = deque((0.0, index) for index in range(count))
        self.count = count
        self.opened = 0
        self.in_flight = 0
        self.failures: dict[str, int] = {}
        self.deadline = deadline
        self.started = time.monotonic()

    def failed(self, index: int, reason: str) -> None:
        self.failures[reason] = self.failures.get(reason, 0) + 1
        self.todo.append((time.monotonic() + RETRY_AFTER, index))

    def reply(self) -> dict[str, Any]:
        return {
            "opened": self.opened,
            "unopened": self.count - self.opened,
            "failed_attempts": sum(self.failures.values()),
            "failures": self.failures,
            "seconds": time.monotonic() - self.started,
        }


class Holder:
    """One client process: its streams under one epoll, and the runner's commands on a pipe."""

    def __init__(self, conn: multiprocessing.connection.Connection) -> None:
        self.conn = conn
        self.poll = select.epoll()
        self.poll.register(conn.fileno(), select.EPOLLIN)
        self.streams: dict[int, Stream] = {}  # by descriptor: open, or opening
        self.indexes: dict[int, int] = {}  # descriptor -> its index in the opening, while opening
        self.tally = Tally(0)
        self.opening: Opening | None = None
        self.concurrency = 100
        self.running = True

    # The runner's commands.

    def open(self, host: str, port: int, path: str, count: int, sources: list[str], concurrency: int, deadline: float):
        """Start opening *count* streams; the reply goes once all are open or *deadline* (epoch) passes."""
        self.opening = Opening(host, port, path, count, sources, deadline)
        self.concurrency = concurrency
        return None

    def reset(self, expect: int) -> dict[str, Any]:
        self.tally = Tally(expect)
        for stream in self.streams.values():
            stream.seen = bytearray(expect)
        return {"streams": len(self.streams)}

    def status(self) -> dict[str, Any]:
        return {
            "received": self.tally.received,
            "expected": self.tally.expect * len(self.streams),
            "live": sum(not stream.lost for stream in self.streams.values()),
        }

    def results(self) -> dict[str, Any]:
        tally = self.tally
        streams = self.streams.values()
        return {
            "latencies": tally.latencies.tobytes(),
            "received": tally.received,
            "expected": tally.expect * len(self.streams),
            "duplicates": tally.duplicates,
            "unexpected": tally.unexpected,
            "streams_with_loss": sum(stream.seen.count(0) > 0 for stream in streams),
            "dropped_connections": sum(stream.lost for stream in streams),
            "cpu_seconds": time.process_time() - tally.cpu_start,
        }

    def close_all(self) -> dict[str, Any]:
        for stream in self.streams.values():
            if stream.sock is not None:
                stream.sock.close()  # closing unregisters it from epoll
        closed, self.streams = len(self.streams), {}
        return {"closed": closed}

    def stop(self) -> dict[str, Any]:
        self.running = False
        return self.close_all()

    # The loop.

    def _start_connections(self) -> None:
        opening = self.opening
        now = time.monotonic()
        while opening.todo and opening.in_flight < self.concurrency and opening.todo[0][0] <= now:
            _, index = opening.todo.popleft()
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                sock.setsockopt(socket.IPPROTO_IP, BIND_ADDRESS_NO_PORT, 1)
                sock.bind((opening.sources[index % len(opening.sources)], 0))
                code = sock.connect_ex(opening.address)
                if code not in (0, errno.EINPROGRESS):
                    raise OSError(code, errno.errorcode.get(code, str(code)))
            except OSError as exc:
                sock.close()
                opening.failed(index, f"connect: {exc.strerror or exc}")
                continue
            fd = sock.fileno()
            self.streams[fd] = Stream(sock, self.tally.expect)
            self.indexes[fd] = index
            opening.in_flight += 1
            self.poll.register(fd, select.EPOLLOUT)

    def _open_failed(self, fd: int, reason: str) -> None:
        stream = self.streams.pop(fd)
        stream.sock.close()
        self.opening.in_flight -= 1
        self.opening.failed(self.indexes.pop(fd), reason)

    def _check_opening(self) -> None:
        opening = self.opening
        now = time.monotonic()
        for fd in [fd for fd in self.indexes if now - self.streams[fd].started > OPEN_TIMEOUT]:
            self._open_failed(fd, "no head in time")
        self._start_connections()
        if (not opening.todo and not opening.in_flight) or time.time() > opening.deadline:
            for fd in list(self.indexes):
                self._open_failed(fd, "deadline")
            self.opening = None
            self.conn.send(opening.reply())

    def _ready(self, fd: int, events: int, now: float) -> None:
        stream = self.streams.get(fd)
        if stream is None:
            return
        if stream.state == CONNECTING:
            code = stream.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                self._open_failed(fd, f"connect: {errno.errorcode.get(code, code)}")
                return
            stream.sock.send(self.opening.request)  # a few dozen bytes into an empty socket buffer
            stream.state = HEAD
            self.poll.modify(fd, select.EPOLLIN)
            return
        try:
            data = stream.sock.recv(65536)
        except OSError as exc:
            data, reason = b"", f"recv: {exc.strerror or exc}"
        else:
            reason = "closed"
        if not data:
            if stream.state == HEAD:
                self._open_failed(fd, reason)
            else:
                stream.lost = True
                self.poll.unregister(fd)
            return
        if stream.state == HEAD:
            try:
                data = stream.take_head(data)
            except ConnectionError as exc:
                self._open_failed(fd, str(exc))
                return
            if data is None:
                return
            del self.indexes[fd]
            self.opening.in_flight -= 1
            self.opening.opened += 1
            if not data:
                return
        stream.feed(data, now, self.tally)

    def run(self) -> None:
        self.conn.send({"ready": True})
        pipe = self.conn.fileno()
        while self.running:
            for fd, events in self.poll.poll(0.2 if self.opening else 1.0):
                if fd == pipe:
                    command, *args = self.conn.recv()
                    reply = getattr(self, command)(*args)
                    if reply is not None:
                        self.conn.send(reply)
                else:
                    self._ready(fd, events, time.time())
            if self.opening is not None:
                self._check_opening()


def main(conn: multiprocessing.connection.Connection) -> None:
    """Entry point of a client process: as many descriptors as the hard limit allows."""
    raise_fd_limit(1 << 30)
    Holder(conn).run()


class Pool(ProcessPool):
    """The runner's handle on the client processes; streams are spread evenly over them."""

    stop_timeout = 10.0

    def __init__(self, processes: int) -> None:
        super().__init__(processes, main, (), "many-clients")

    def _all(self, command: str, *args: Any, timeout: float = 60) -> list[dict[str, Any]]:
        return super()._all(command, *args, timeout=timeout)

    def open(
        self, host: str, port: int, path: str, count: int, sources: list[str], concurrency: int, timeout: float
    ) -> dict[str, Any]:
        """Open *count* streams to *path* over all processes; give up on the rest after *timeout* seconds."""
        n = len(self.conns)
        deadline = time.time() + timeout
        for i, conn in enumerate(self.conns):
            share = count // n + (i < count % n)
            # Each process starts at another source address, so that they all spread over every address.
            mine = sources[i % len(sources) :] + sources[: i % len(sources)]
            conn.send(("open", host, port, path, share, mine, concurrency, deadline))
        replies = self._gather(timeout + 90)
        failures: dict[str, int] = {}
        for reply in replies:
            for kind, times in reply["failures"].items():
                failures[kind] = failures.get(kind, 0) + times
        return {
            "opened": sum(r["opened"] for r in replies),
            "unopened": sum(r["unopened"] for r in replies),
            "failed_attempts": sum(r["failed_attempts"] for r in replies),
            "failures": failures,
            "seconds": max(r["seconds"] for r in replies),
        }

    def reset(self, expect: int) -> int:
        return sum(r["streams"] for r in self._all("reset", expect))

    def status(self) -> dict[str, int]:
        replies = self._all("status")
        return {key: sum(r[key] for r in replies) for key in ("received", "expected", "live")}

    def results(self) -> dict[str, Any]:
        replies = self._all("results", timeout=120)
        latencies = array("d")
        for reply in replies:
            latencies.frombytes(reply.pop("latencies"))
        merged = {key: sum(r[key] for r in replies) for key in replies[0]}
        merged["latencies"] = latencies
        return merged

    def close_all(self) -> int:
        return sum(r["closed"] for r in self._all("close_all"))
