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
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from httpx_sse import aconnect_sse

from tests.support.processes import ScriptProcess
from tests.support.servers import ROOT, Server

#: What a deployment puts in gunicorn.conf.py (docs/deployment.md).
GUNICORN_CONF = "from django_realtime.gunicorn_server import post_worker_init  # noqa: F401\n"
#: The reconnection delay EventSource starts with, before a server sends one (Chromium: 3 s).
DEFAULT_RETRY_MS = 3000


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
        params = {"channel": self.channel}
        headers = {}
        if self.last_id is None:
            params["lastEventId"] = "0"
        else:
            headers["Last-Event-ID"] = self.last_id
        async with aconnect_sse(client, "GET", self.url, params=params, headers=headers) as source:
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


@dataclass
class Outcome:
    """What every subscriber received of the *published* seqs."""

    subscribers: list[Subscriber]
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
) -> Outcome:
    """Open *subscribers* streams, start *publisher*, send the deploy's signals *signal_after* seconds in.

    Once the publisher is done, wait up to *settle* seconds for every
    subscriber to have every event, then stop them.
    """
    stop = asyncio.Event()
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
