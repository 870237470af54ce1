"""A rolling restart under traffic: subscribers that resume as EventSource does, a paced publisher, gunicorn's signals.

Shared by tests/test_rolling_restart.py (the correctness guard) and
bench/rolling_restart.py (the figures).  The demo project runs under
gunicorn with gevent workers and the drain hook
(``django_realtime.gunicorn_server.post_worker_init``, in a config file
written for the run, as a deployment writes it).  Each subscriber is an
asyncio task on one event loop: it follows one channel from the start of the
log and, whenever its stream ends or breaks, waits the last ``retry:`` it was
sent and reconnects with ``Last-Event-ID``, as ``EventSource`` does, on an
HTTP client of its own that keeps its connection alive between requests, as a
browser does.  A publisher process (tests/paced_publisher.py) publishes
``{"seq": n, "t": ...}`` at a steady rate; the run sends the signals of a
deploy to gunicorn's master midway.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import websockets
from httpx_sse import aconnect_sse

from tests.support.processes import ScriptProcess
from tests.support.servers import ROOT, Server, start_server, stop_server

#: What a deployment puts in gunicorn.conf.py (docs/deployment.md).
GUNICORN_CONF = "from django_realtime.gunicorn_server import post_worker_init  # noqa: F401\n"
#: The reconnection delay EventSource starts with, before a server sends one (Chromium: 3 s).
DEFAULT_RETRY_MS = 3000
#: The close code of a WebSocket the server closes as it shuts down (docs/websocket.md, "Closing").
SHUTDOWN_CLOSE = 4004


def gunicorn_args(directory: Path, *, workers: int = 2, graceful_timeout: float = 30.0, hook: bool = True) -> list[str]:
    """Return the options that run SERVER_COMMANDS' gunicorn-gevent with *workers* workers, the drain hook if *hook*."""
    args = ["-w", str(workers), "--graceful-timeout", str(round(graceful_timeout))]
    if hook:
        conf = directory / "gunicorn.conf.py"
        conf.write_text(GUNICORN_CONF)
        args += ["-c", str(conf)]
    return args


@dataclass
class Break:
    """One time a subscriber's stream ended or broke, and when it was live again."""

    how: str  # "clean" (the response ended) or the error's class name
    at: float  # time.monotonic()
    retry_ms: int  # the retry: it then waited
    live_at: float | None = None  # when the next stream's first bytes came

    @property
    def down(self) -> float | None:
        """Return the seconds from the break to live again, or None if it never was."""
        return None if self.live_at is None else self.live_at - self.at


@dataclass(eq=False)
class Subscriber:
    """One EventSource-like client of *channel*, from the start of the log."""

    url: str
    channel: str
    #: The other instances behind the balancer: a connection the first refuses goes to the next, as nginx's does.
    others: list[str] = field(default_factory=list)
    retry_ms: int = DEFAULT_RETRY_MS
    last_id: str | None = None
    seqs: list[int] = field(default_factory=list)
    #: Seconds from each event's publish() to its arrival, in the order received.
    latencies: list[float] = field(default_factory=list)
    breaks: list[Break] = field(default_factory=list)
    anomalies: list[str] = field(default_factory=list)
    connections: int = 0
    #: Reconnects that opened no stream.
    failed_connects: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, stop: asyncio.Event) -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        timeout = httpx.Timeout(10.0, read=10.0)
        async with httpx.AsyncClient(timeout=timeout, limits=limits, trust_env=False) as client:
            while not stop.is_set():
                opened = self.connections
                try:
                    status = await self._once(client)
                    how = "clean"
                except httpx.HTTPError as exc:
                    status, how = None, type(exc).__name__
                if stop.is_set():
                    return
                if status not in (None, 200):  # EventSource gives up for good (NOTES.md)
                    self.anomalies.append(f"status {status}")
                    return
                if self.connections == opened:
                    # No stream was opened (a connection refused, or one kept alive that the server had
                    # closed meanwhile): EventSource tries again after its delay; the last break lasts on.
                    self.failed_connects += 1
                else:
                    self.breaks.append(Break(how, time.monotonic(), self.retry_ms))
                try:
                    await asyncio.wait_for(stop.wait(), self.retry_ms / 1000)
                except TimeoutError:
                    pass

    async def _once(self, client: httpx.AsyncClient) -> int:
        urls = [self.url, *self.others]
        for url in urls:
            try:
                return await self._stream(client, url)
            except httpx.ConnectError:
                if url == urls[-1]:
                    raise
        raise AssertionError("unreachable")

    async def _stream(self, client: httpx.AsyncClient, url: str) -> int:
        params = {"channel": self.channel}
        headers = {}
        if self.last_id is None:
            params["lastEventId"] = "0"
        else:
            headers["Last-Event-ID"] = self.last_id
        async with aconnect_sse(client, "GET", url, params=params, headers=headers) as source:
            if source.response.status_code != 200:
                return source.response.status_code
            self.connections += 1
            first = True
            async for sse in source.aiter_sse():
                if first:
                    first = False
                    self.ready.set()
                    if self.breaks and self.breaks[-1].live_at is None:
                        self.breaks[-1].live_at = time.monotonic()
                if sse.retry is not None:
                    self.retry_ms = sse.retry
                if not sse.data:  # the retry: prelude or parting, a keepalive: EventSource dispatches nothing
                    continue
                data = json.loads(sse.data)
                self.seqs.append(data["seq"])
                self.latencies.append(time.time() - data["t"])
                self.last_id = sse.id
        return 200


@dataclass(eq=False)
class WebSocketSubscriber:
    """One client of *channel* over the WebSocket protocol (docs/websocket.md), resuming as realtime.js does.

    It subscribes from the start of the log; when its connection closes with
    4004 (the server shuts down) it waits the delay of the close reason
    (``retry=<ms>``), after any other close realtime.js's first backoff, and subscribes
    again from the id of the last event it got, on the first instance that
    accepts the connection.  A close other than 4004 is a break of another
    kind (``how``: its code and reason).
    """

    url: str
    channel: str
    others: list[str] = field(default_factory=list)
    last_id: str = "0"
    seqs: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    breaks: list[Break] = field(default_factory=list)
    anomalies: list[str] = field(default_factory=list)
    connections: int = 0
    failed_connects: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            opened = self.connections
            try:
                how, retry_ms = await self._once()
            except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
                how, retry_ms = type(exc).__name__, DEFAULT_RETRY_MS
            except Exception as exc:  # the task would end silently, and the subscriber miss all that follows
                self.anomalies.append(f"{type(exc).__name__}: {exc}")
                raise
            if stop.is_set():
                return
            if self.connections == opened:
                self.failed_connects += 1
            else:
                self.breaks.append(Break(how, time.monotonic(), retry_ms))
            try:
                await asyncio.wait_for(stop.wait(), retry_ms / 1000)
            except TimeoutError:
                pass

    async def _connect(self) -> websockets.ClientConnection:
        urls = [self.url, *self.others]
        for url in urls:
            host = url.split("://", 1)[1].split("/", 1)[0]
            try:
                return await websockets.connect(url, origin=f"http://{host}", open_timeout=10)
            except ConnectionRefusedError:
                if url == urls[-1]:
                    raise
        raise AssertionError("unreachable")

    async def _once(self) -> tuple[str, int]:
        socket = await self._connect()
        async with socket:
            self.connections += 1
            try:
                await socket.send(json.dumps({"type": "subscribe", "channel": self.channel, "last_id": self.last_id}))
                async for text in socket:
                    message = json.loads(text)
                    if message["type"] == "subscribed":
                        self.ready.set()
                        if self.breaks and self.breaks[-1].live_at is None:
                            self.breaks[-1].live_at = time.monotonic()
                    elif message["type"] == "event":
                        self.seqs.append(message["data"]["seq"])
                        self.latencies.append(time.time() - message["data"]["t"])
                        self.last_id = message["id"]
                    else:
                        self.anomalies.append(f"unexpected message {text[:200]}")
            except websockets.ConnectionClosed:
                pass
        code, reason = socket.close_code, socket.close_reason or ""
        retry = re.fullmatch(r"retry=(\d{1,6})", reason)
        if code == SHUTDOWN_CLOSE and retry is not None:
            return "clean", int(retry[1])
        # realtime.js's first backoff after another close: minDelay (500 ms), half of it jitter.
        return f"closed {code} {reason}".strip(), round(random.uniform(250, 500))


@dataclass
class Outcome:
    """What every subscriber received of the *published* seqs."""

    subscribers: Sequence[Subscriber | WebSocketSubscriber]
    published: int
    #: Seconds from the first signal to each signal sent, and what it was.
    signals: list[tuple[float, str]]
    #: Monotonic time of the first signal.
    signalled_at: float

    def lost(self) -> int:
        return sum(len(set(range(self.published)) - set(s.seqs)) for s in self.subscribers)

    def duplicated(self) -> int:
        return sum(sum(n - 1 for n in Counter(s.seqs).values() if n > 1) for s in self.subscribers)

    def out_of_order(self) -> int:
        return sum(sum(1 for a, b in zip(s.seqs, s.seqs[1:], strict=False) if b <= a) for s in self.subscribers)

    def problems(self) -> list[str]:
        """Return what went wrong: an empty list when each subscriber got each event once, in order."""
        problems = [f"subscriber {i}: {a}" for i, s in enumerate(self.subscribers) for a in s.anomalies]
        for i, subscriber in enumerate(self.subscribers):
            counts = Counter(subscriber.seqs)
            missing = sorted(set(range(self.published)) - set(counts))
            if missing:
                problems.append(f"subscriber {i}: {len(missing)} of {self.published} events missing: {missing[:10]}")
            if twice := sorted(seq for seq, n in counts.items() if n > 1):
                problems.append(f"subscriber {i}: events received more than once: {twice[:10]}")
            if unknown := sorted(seq for seq in counts if not 0 <= seq < self.published):
                problems.append(f"subscriber {i}: events no one published: {unknown[:10]}")
        return problems

    def breaks(self) -> list[Break]:
        """Return the breaks after the first signal."""
        return [b for s in self.subscribers for b in s.breaks if b.at >= self.signalled_at]


class PacedPublisher(ScriptProcess):
    """A tests/paced_publisher.py process."""

    def __init__(self, env: dict[str, str], channel: str, rate: float, count: int, stderr: Path) -> None:
        super().__init__("tests.paced_publisher", [channel, str(rate), str(count)], env, stderr, ROOT)
        self.published = 0

    def _line(self) -> dict:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            raise AssertionError(f"the publisher exited with status {self.process.returncode}:\n{self.stderr()}")
        return json.loads(line)

    def wait_ready(self) -> None:
        if not self._line().get("ready"):
            raise AssertionError("the publisher did not say it was ready")

    def finish(self) -> int:
        """Read its lines until it is done (blocking); return how many events it published."""
        while "done" not in (line := self._line()):
            self.published = line["seq"] + 1
        self.process.wait(10)
        return self.published


def hup(server: Server) -> list[tuple[float, str]]:
    """Send gunicorn's master a HUP: new workers, then the old ones told to stop. Return what was sent when."""
    os.kill(server.process.pid, signal.SIGHUP)
    return [(0.0, "HUP")]


async def run_restart(
    server: Server,
    publisher: PacedPublisher,
    *,
    channel: str,
    subscribers: int,
    signal_after: float,
    send_signals: Callable[[Server], list[tuple[float, str]]] = hup,
    settle: float = 10.0,
    pool: Sequence[Subscriber | WebSocketSubscriber] | None = None,
) -> Outcome:
    """Open *subscribers* streams, start *publisher*, send the deploy's signals *signal_after* seconds in.

    *pool*, if given, are the subscribers instead (SSE and WebSocket ones, on several instances).

    Once the publisher is done, wait up to *settle* seconds for every
    subscriber to have every event, then stop them.
    """
    stop = asyncio.Event()
    if pool is None:
        pool = [Subscriber(server.events_url(), channel) for _ in range(subscribers)]
    tasks = [asyncio.create_task(s.run(stop)) for s in pool]
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(asyncio.gather(*(s.ready.wait() for s in pool)), 30)
        await loop.run_in_executor(None, publisher.wait_ready)
        publisher.go()
        finished = loop.run_in_executor(None, publisher.finish)
        await asyncio.sleep(signal_after)
        signalled_at = time.monotonic()
        signals = await loop.run_in_executor(None, send_signals, server)
        published = await finished
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline and any(len(set(s.seqs)) < published for s in pool):
            await asyncio.sleep(0.1)
        return Outcome(pool, published, signals, signalled_at)
    finally:
        stop.set()
        for task in tasks:  # a stream that reads waits for its next event: no need to wait for it
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class DaphnePair:
    """Two daphne instances of the demo on one database, behind a balancer, restarted in turn.

    The balancer is the subscribers' own list of upstreams (``others``): a
    connection the first instance refuses goes to the second, as nginx's
    ``proxy_next_upstream`` does.  ``restart_in_turn`` is a deploy: TERM to
    the first, which exits; a new one on its port, once it answers; then
    the same for the second.
    """

    def __init__(self, env: dict[str, str], directory: Path, cwd: Path = ROOT) -> None:
        self.env = env
        self.directory = directory
        #: The source tree the instances run (bench/rolling_restart.py --source: another commit's).
        self.cwd = cwd
        self.servers = {name: self._start(name, f"daphne-{name}.log") for name in "ab"}
        self.old: list[Server] = []
        #: Each stopped instance: its name, seconds from the first TERM to its exit, its exit status.
        self.exits: list[tuple[str, float, int | None]] = []

    def sse_subscriber(self, channel: str) -> Subscriber:
        a, b = self.servers["a"], self.servers["b"]
        return Subscriber(a.events_url(), channel, others=[b.events_url()])

    def websocket_subscriber(self, channel: str) -> WebSocketSubscriber:
        a, b = (self.servers[name].url.replace("http://", "ws://") + "/ws/" for name in "ab")
        return WebSocketSubscriber(a, channel, others=[b])

    def restart_in_turn(self, _server: Server | None = None, *, exit_timeout: float = 30.0) -> list[tuple[float, str]]:
        """TERM each instance in turn, wait for it to exit, start a new one on its port; return what was done when."""
        start = time.monotonic()
        done = []
        for name in "ab":
            old = self.servers[name]
            port = old.port
            assert old.process is not None
            old.process.send_signal(signal.SIGTERM)
            done.append((time.monotonic() - start, f"TERM to {name}"))
            try:
                status: int | None = old.process.wait(exit_timeout)
            except subprocess.TimeoutExpired:
                status = None
            self.exits.append((name, time.monotonic() - start, status))
            self.old.append(old)
            self.servers[name] = self._start(name, f"daphne-{name}-new.log", port)
            done.append((time.monotonic() - start, f"{name} answers again"))
        return done

    def _start(self, name: str, log: str, port: int | None = None) -> Server:
        return start_server("daphne", self.env, self.directory / log, cwd=self.cwd, port=port)

    def log(self) -> str:
        return "\n".join(f"--- {server.log_path.name}\n{server.log()[-3000:]}" for server in self.all())

    def all(self) -> list[Server]:
        return [*self.old, *self.servers.values()]

    def stop(self) -> None:
        for server in self.all():
            # An exited one's group may be another's by now.
            if server.process is not None and server.process.poll() is None:
                stop_server(server)
