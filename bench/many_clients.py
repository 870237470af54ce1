"""The cheapest SSE clients that still check exactly-once: for ``bench.many_streams`` (issue 26).

``bench.clients`` decodes HTTP chunking and parses every line; at 100,000
streams on two cores the clients' own CPU would then decide the latency.
These read the response head once, then only look for the bench's event
data in what arrives, ``{"t":<publish time>,"seq":<n>}``: one ``find`` per
event, two number conversions, one byte set in the stream's ``seen`` array
and one latency appended.  That leans on the server writing each event
whole in one chunk (the package's writers do), so a chunk's size line never
falls inside an event's data; an event cut between two reads is kept and
completed by the next.

Each client process holds its share of the streams in one event loop, binds
their source addresses over several loopback addresses (one address has
~28,000 ports to one server port), opens them a few hundred at a time and
retries the ones that failed (a refused or reset connection, a 503 from a
full worker) in later waves, so the server's listen queue is never the
limit.  The runner drives it over a pipe, as ``bench.clients`` does.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
import time
from array import array
from typing import Any

from bench.clients import raise_fd_limit

START = b'{"t":'
SEQ = b',"seq":'
# Linux's IP_BIND_ADDRESS_NO_PORT: the port is picked at connect(), for the whole 4-tuple.
BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


class Tally:
    """What one process's streams received since the last reset."""

    def __init__(self, expect: int) -> None:
        self.expect = expect
        self.latencies = array("d")
        self.received = 0
        self.duplicates = 0
        self.unexpected = 0
        self.cpu_start = time.process_time()


class Stream(asyncio.Protocol):
    """One SSE connection: the GET, the status line, then the bench's events."""

    __slots__ = ("tally_of", "request", "opened", "transport", "head", "seen", "rest", "lost")

    def __init__(self, owner: Holder, request: bytes) -> None:
        self.tally_of = owner
        self.request = request
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.head: bytes | None = b""  # None once the head is read
        self.seen = bytearray(owner.tally.expect)
        self.rest = b""
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"closed before the head: {exc}"))

    def data_received(self, data: bytes) -> None:
        now = time.time()
        if self.head is not None:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.head.startswith(b"HTTP/1.1 200"):
                self.opened.set_exception(ConnectionError(self.head.split(b"\r\n", 1)[0].decode(errors="replace")))
                self.transport.close()
                return
            data, self.head = self.head[end + 4 :], None
            self.opened.set_result(None)
        if self.rest:
            data, self.rest = self.rest + data, b""
        pos, done = data.find(START), 0
        while pos >= 0:
            comma = data.find(SEQ, pos)
            close = data.find(b"}", comma) if comma >= 0 else -1
            if close < 0:
                self.rest = data[pos:]  # the event's end is in the next read
                return
            self._count(int(data[comma + 7 : close]), now - float(data[pos + 5 : comma]))
            done = close + 1
            pos = data.find(START, done)
        # The next event's start may be cut in two: keep what could be its first bytes.
        self.rest = data[max(done, len(data) - len(START) + 1) :]

    def _count(self, seq: int, latency: float) -> None:
        if seq < 0:
            return  # the start mark and warm-ups
        tally = self.tally_of.tally
        if seq >= tally.expect:
            tally.unexpected += 1
        elif self.seen[seq]:
            tally.duplicates += 1
        else:
            self.seen[seq] = 1
            tally.received += 1
            tally.latencies.append(latency)


class Holder:
    """One client process: its streams and what they received."""

    def __init__(self) -> None:
        self.streams: list[Stream] = []
        self.tally = Tally(0)

    async def _connect(self, host: str, port: int, source: str, request: bytes) -> Stream:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_IP, BIND_ADDRESS_NO_PORT, 1)
            sock.bind((source, 0))
            await loop.sock_connect(sock, (host, port))
            _, stream = await loop.create_connection(lambda: Stream(self, request), sock=sock)
        except BaseException:
            sock.close()
            raise
        try:
            await asyncio.wait_for(stream.opened, 60)
        except BaseException:
            stream.transport.close()
            raise
        return stream

    async def open(
        self, host: str, port: int, path: str, count: int, sources: list[str], concurrency: int, deadline: float
    ) -> dict[str, Any]:
        """Open *count* streams, *concurrency* at a time, in waves until all are open or *deadline* (epoch) passes."""
        request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n".encode()
        gate = asyncio.Semaphore(concurrency)
        failures: dict[str, int] = {}
        started = time.monotonic()
        todo, waves = list(range(count)), 0

        async def one(index: int) -> bool:
            async with gate:
                try:
                    stream = await self._connect(host, port, sources[index % len(sources)], request)
                except (OSError, TimeoutError, ConnectionError) as exc:
                    kind = f"{type(exc).__name__}: {str(exc)[:60]}"
                    failures[kind] = failures.get(kind, 0) + 1
                    return False
                self.streams.append(stream)
                return True

        while todo and time.time() < deadline:
            waves += 1
            done = await asyncio.gather(*(one(index) for index in todo))
            todo = [index for index, ok in zip(todo, done, strict=True) if not ok]
            if todo:
                await asyncio.sleep(1.0)  # let the server's queues drain before the next wave
        return {
            "opened": count - len(todo),
            "unopened": len(todo),
            "failed_attempts": sum(failures.values()),
            "failures": failures,
            "waves": waves,
            "seconds": time.monotonic() - started,
        }

    def reset(self, expect: int) -> dict[str, Any]:
        self.tally = Tally(expect)
        for stream in self.streams:
            stream.seen = bytearray(expect)
        return {"streams": len(self.streams)}

    def status(self) -> dict[str, Any]:
        return {
            "received": self.tally.received,
            "expected": self.tally.expect * len(self.streams),
            "live": sum(not stream.lost for stream in self.streams),
        }

    def results(self) -> dict[str, Any]:
        tally = self.tally
        return {
            "latencies": tally.latencies.tobytes(),
            "received": tally.received,
            "expected": tally.expect * len(self.streams),
            "duplicates": tally.duplicates,
            "unexpected": tally.unexpected,
            "streams_with_loss": sum(stream.seen.count(0) > 0 for stream in self.streams),
            "dropped_connections": sum(stream.lost for stream in self.streams),
            "cpu_seconds": time.process_time() - tally.cpu_start,
        }

    def close_all(self) -> dict[str, Any]:
        for stream in self.streams:
            if stream.transport is not None:
                stream.transport.close()
        closed, self.streams = len(self.streams), []
        return {"closed": closed}


async def _serve(conn: multiprocessing.connection.Connection) -> None:
    holder = Holder()
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    async def handle(command: str, args: tuple) -> None:
        if command == "open":
            reply = await holder.open(*args)
        elif command == "stop":
            reply = holder.close_all()
            done.set_result(None)
        else:
            reply = getattr(holder, command)(*args)
        conn.send(reply)

    def readable() -> None:
        command, *args = conn.recv()
        loop.create_task(handle(command, tuple(args)))

    loop.add_reader(conn.fileno(), readable)
    conn.send({"ready": True})
    await done


def main(conn: multiprocessing.connection.Connection) -> None:
    """Entry point of a client process: as many descriptors as the hard limit allows."""
    raise_fd_limit(1 << 30)
    asyncio.run(_serve(conn))


class Pool:
    """The runner's handle on the client processes; streams are spread evenly over them."""

    def __init__(self, processes: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conns, self.procs = [], []
        for i in range(processes):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=main, args=(child,), name=f"many-clients-{i}", daemon=True)
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)
        self._gather(30)

    @property
    def pids(self) -> list[int]:
        return [proc.pid for proc in self.procs]

    def _gather(self, timeout: float) -> list[dict[str, Any]]:
        replies = []
        deadline = time.monotonic() + timeout
        for conn in self.conns:
            if not conn.poll(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"a client process did not answer within {timeout:.0f}s")
            replies.append(conn.recv())
        return replies

    def _all(self, command: str, *args: Any, timeout: float = 60) -> list[dict[str, Any]]:
        for conn in self.conns:
            conn.send((command, *args))
        return self._gather(timeout)

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
            "waves": max(r["waves"] for r in replies),
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

    def stop(self) -> None:
        for conn in self.conns:
            try:
                conn.send(("stop",))
            except OSError:
                pass
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join()
