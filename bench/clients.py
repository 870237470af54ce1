"""SSE clients for the benchmark: raw asyncio sockets in worker processes.

Each worker process runs one event loop holding its share of the streams and
obeys commands from the runner over a pipe.  Parsing is the least that gives
an honest number: undo HTTP chunking, split lines, and ``json.loads`` only the
``data: {`` lines, which carry ``{"t": publish time, "seq": n}``.  Each chunk
is timestamped once, on arrival.  Events with a negative seq are warm-ups and
are ignored; data objects with no seq (presence events, say) are only
counted.  By default every stream expects every event; a path with ``{i}``
gives each stream a channel of its own, and :meth:`ClientPool.reset` can
then name the one stream each event is for.  Other transports subclass
:class:`Stream` (``bench.ws_clients``) and are named in :meth:`ClientPool.open`.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import resource
import time
from array import array
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

#: Connections each client process opens at once, by default: more only overflows listen backlogs.
OPENING = 64

# What a stream's ``seen[seq]`` holds.
WANTED, SEEN, NOT_FOR_IT = 0, 1, 2


def raise_fd_limit(wanted: int) -> None:
    """Raise this process's soft RLIMIT_NOFILE to *wanted* (at most the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


class Tally:
    """What one worker's streams received in the current phase."""

    def __init__(self, expect: int = 0) -> None:
        self.expect = expect
        self.latencies = array("d")
        self.wanted = 0  # (stream, seq) pairs to receive, counted at reset
        self.received = 0  # distinct wanted (stream, seq) pairs received
        self.duplicates = 0
        self.unexpected = 0  # seqs outside range(expect), or meant for another stream
        self.other = 0  # data objects without a seq: not the bench's events (presence.join, say)
        self.cpu_start = time.process_time()


class Stream(asyncio.Protocol):
    """One SSE connection: send a GET, then count the events that arrive."""

    @staticmethod
    def prepare(host: str, port: int, path: str) -> Any:
        """Return what every stream to *path* shares, passed to ``__init__`` (for SSE: the request)."""
        return (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n"
            "Cache-Control: no-cache\r\n\r\n"
        ).encode()

    def __init__(self, worker: Worker, request: bytes, index: int | None = None) -> None:
        self.worker = worker
        self.request = request
        self.index = index  # the {i} of its path, if any
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.head = b""
        self.in_body = False
        self.chunked = False
        self.raw = b""  # chunked bytes not yet decoded
        self.text = b""
        self.seen = bytearray(worker.tally.expect)
        self.lost_connection = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost_connection = True
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"closed before the stream opened: {exc}"))

    def take_head(self, data: bytes, statuses: tuple[bytes, ...], failure: str) -> tuple[bytes, bytes] | None:
        """Gather the response head; once whole, return it (lower case) and the bytes after it.

        None while it is not whole, or if its status line starts with none
        of *statuses*: then the stream fails to open (*failure* and the
        status line) and the connection closes.
        """
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            return None
        head, rest = self.head[:end].lower(), self.head[end + 4 :]
        self.head = b""
        if not head.startswith(statuses):
            status = head.split(b"\r\n", 1)[0].decode(errors="replace")
            self.opened.set_exception(ConnectionError(f"{failure} {status}"))
            self.transport.close()
            return None
        self.in_body = True
        return head, rest

    def data_received(self, data: bytes) -> None:
        now = time.time()
        if not self.in_body:
            taken = self.take_head(data, (b"http/1.1 200", b"http/1.0 200"), "status")
            if taken is None:
                return
            head, data = taken
            self.chunked = b"transfer-encoding: chunked" in head
            if not data:
                return
        if not self.opened.done():
            self.opened.set_result(None)
        self.text += self._dechunk(data) if self.chunked else data
        last = self.text.rfind(b"\n")
        if last < 0:
            return
        lines, self.text = self.text[:last].split(b"\n"), self.text[last + 1 :]
        for line in lines:
            if line.startswith(b"data: {"):
                self._count(json.loads(line[6:]), now)

    def _count(self, payload: dict[str, Any], now: float) -> None:
        seq = payload.get("seq")
        if seq is None:
            self.worker.tally.other += 1
            return
        if seq < 0:
            return
        tally = self.worker.tally
        mark = self.seen[seq] if seq < tally.expect else NOT_FOR_IT
        if mark == WANTED:
            self.seen[seq] = SEEN
            tally.received += 1
            tally.latencies.append(now - payload["t"])
        elif mark == SEEN:
            tally.duplicates += 1
        else:
            tally.unexpected += 1

    def _dechunk(self, data: bytes) -> bytes:
        """Return the payload of the complete chunks received so far; keep the rest."""
        raw = self.raw + data if self.raw else data
        out, pos = [], 0
        while True:
            end = raw.find(b"\r\n", pos)
            if end < 0:
                break
            stop = end + 2 + int(raw[pos:end].split(b";", 1)[0], 16)
            if stop + 2 > len(raw):
                break
            out.append(raw[end + 2 : stop])
            pos = stop + 2
        self.raw = raw[pos:]
        return b"".join(out)


class Worker:
    """One client process: its streams, its tally and its command loop."""

    def __init__(self, conn: multiprocessing.connection.Connection) -> None:
        self.conn = conn
        self.streams: list[Stream] = []
        self.tally = Tally()
        self.done = asyncio.get_running_loop().create_future()

    async def open(
        self,
        host: str,
        port: int,
        path: str,
        count: int,
        concurrency: int,
        kind: type[Stream] = Stream,
        first: int = 0,
    ) -> dict[str, Any]:
        """Open *count* streams to *path*; with ``{i}`` in it, stream k's is ``path.format(i=first + k)``."""
        loop = asyncio.get_running_loop()
        own = "{i}" in path
        shared = None if own else kind.prepare(host, port, path)
        gate = asyncio.Semaphore(concurrency)
        errors: list[str] = []

        async def one(index: int) -> None:
            prepared = kind.prepare(host, port, path.format(i=index)) if own else shared
            async with gate:
                try:
                    _, stream = await asyncio.wait_for(
                        loop.create_connection(lambda: kind(self, prepared, index if own else None), host, port), 30
                    )
                    await asyncio.wait_for(stream.opened, 30)
                except (OSError, TimeoutError, ConnectionError) as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    return
                self.streams.append(stream)

        started = time.monotonic()
        await asyncio.gather(*(one(first + k) for k in range(count)))
        return {
            "opened": count - len(errors),
            "errors": errors[:5],
            "failed": len(errors),
            "seconds": time.monotonic() - started,
        }

    def close_all(self) -> dict[str, Any]:
        for stream in self.streams:
            if stream.transport is not None:
                stream.transport.close()
        closed, self.streams = len(self.streams), []
        return {"closed": closed}

    def reset(self, expect: int, owners: Sequence[int] | None = None) -> dict[str, Any]:
        """Expect seqs ``range(expect)``: each on every stream, or seq n only on the stream of index ``owners[n]``."""
        self.tally = Tally(expect)
        if owners is None:
            for stream in self.streams:
                stream.seen = bytearray(expect)
        else:
            seqs = defaultdict(list)
            for seq, index in enumerate(owners):
                seqs[index].append(seq)
            for stream in self.streams:
                stream.seen = bytearray([NOT_FOR_IT]) * expect
                for seq in seqs.get(stream.index, ()):
                    stream.seen[seq] = WANTED
        self.tally.wanted = sum(stream.seen.count(WANTED) for stream in self.streams)
        return {"streams": len(self.streams)}

    def status(self) -> dict[str, Any]:
        live = sum(not stream.lost_connection for stream in self.streams)
        return {
            "received": self.tally.received,
            "expected": self.tally.wanted,
            "live": live,
            "streams": len(self.streams),
            "other": self.tally.other,
        }

    def results(self) -> dict[str, Any]:
        tally = self.tally
        short = [stream.seen.count(WANTED) for stream in self.streams]
        return {
            "latencies": tally.latencies.tobytes(),
            "received": tally.received,
            "expected": tally.wanted,
            "duplicates": tally.duplicates,
            "unexpected": tally.unexpected,
            "other": tally.other,
            "streams_with_loss": sum(1 for n in short if n),
            "dropped_connections": sum(stream.lost_connection for stream in self.streams),
            "client_cpu_seconds": time.process_time() - tally.cpu_start,
        }

    async def handle(self, command: str, args: tuple) -> None:
        if command == "open":
            reply = await self.open(*args)
        elif command == "stop":
            self.close_all()
            self.done.set_result(None)
            reply = {}
        else:
            reply = getattr(self, command)(*args)
        self.conn.send(reply)

    def on_readable(self) -> None:
        command, *args = self.conn.recv()
        asyncio.get_running_loop().create_task(self.handle(command, tuple(args)))


async def _serve(conn: multiprocessing.connection.Connection) -> None:
    worker = Worker(conn)
    loop = asyncio.get_running_loop()
    loop.add_reader(conn.fileno(), worker.on_readable)
    conn.send({"ready": True})
    await worker.done


def worker_main(conn: multiprocessing.connection.Connection, fd_limit: int) -> None:
    """Entry point of a client process."""
    raise_fd_limit(fd_limit)
    asyncio.run(_serve(conn))


class ProcessPool:
    """Client processes driven over pipes: each answers a command with one reply (``_all``)."""

    #: Seconds a process may take to exit once told to stop.
    stop_timeout = 5.0

    def __init__(self, processes: int, target: Any, args: tuple[Any, ...], name: str) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conns: list[Any] = []
        self.procs: list[Any] = []
        for i in range(processes):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=target, args=(child, *args), name=f"{name}-{i}", daemon=True)
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)
        self._gather(timeout=30)

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

    def _all(self, command: str, *args: Any, timeout: float = 30) -> list[dict[str, Any]]:
        for conn in self.conns:
            conn.send((command, *args))
        return self._gather(timeout)

    def stop(self) -> None:
        """Tell every process to stop; kill (and reap) one that has not exited within ``stop_timeout``."""
        for conn in self.conns:
            try:
                conn.send(("stop",))
            except OSError:
                pass
        for proc in self.procs:
            proc.join(self.stop_timeout)
            if proc.is_alive():
                proc.kill()
                proc.join()


class ClientPool(ProcessPool):
    """The runner's handle on the client processes; streams are spread evenly over them."""

    def __init__(self, processes: int, max_streams: int) -> None:
        super().__init__(processes, worker_main, (max_streams // processes + 100,), "sse-clients")

    def open(
        self,
        host: str,
        port: int,
        path: str,
        count: int,
        concurrency: int = OPENING,
        timeout: float = 120,
        kind: type[Stream] = Stream,
    ) -> dict[str, Any]:
        """Open *count* streams of class *kind* (SSE by default; it must be importable by the workers).

        With ``{i}`` in *path*, the streams get paths ``path.format(i=0)`` to
        ``path.format(i=count - 1)``, each process a contiguous range of them.
        """
        shares = [count // len(self.conns) + (i < count % len(self.conns)) for i in range(len(self.conns))]
        first = 0
        for conn, share in zip(self.conns, shares, strict=True):
            conn.send(("open", host, port, path, share, concurrency, kind, first))
            first += share
        replies = self._gather(timeout)
        return {
            "opened": sum(r["opened"] for r in replies),
            "failed": sum(r["failed"] for r in replies),
            "errors": [e for r in replies for e in r["errors"]][:5],
            "seconds": max(r["seconds"] for r in replies),
        }

    def close_all(self) -> int:
        return sum(r["closed"] for r in self._all("close_all"))

    def reset(self, expect: int, owners: Sequence[int] | None = None) -> int:
        """Expect seqs ``range(expect)`` on every stream, or seq n only on stream ``owners[n]`` (see ``open``)."""
        return sum(r["streams"] for r in self._all("reset", expect, owners))

    def status(self) -> dict[str, int]:
        replies = self._all("status")
        return {key: sum(r[key] for r in replies) for key in ("received", "expected", "live", "streams", "other")}

    def results(self) -> dict[str, Any]:
        replies = self._all("results")
        latencies = array("d")
        for reply in replies:
            latencies.frombytes(reply.pop("latencies"))
        merged = {key: sum(r[key] for r in replies) for key in replies[0]}
        merged["latencies"] = latencies
        return merged
