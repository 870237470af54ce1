"""Helpers of tests/test_chaos.py and bench/chaos.py: a cluster that faults are done to, and clients that resume.

A :class:`Cluster` runs servers of the demo project (tests/support/servers.py) on
one PostgreSQL database and can kill (SIGKILL to the whole process group),
gracefully stop (SIGTERM) and replace them.  A :class:`Subscriber` is an SSE
or WebSocket client that, whenever its connection ends, reconnects to a
random live server of the cluster with the last id it parsed, as
``EventSource`` (and realtime.js over WebSockets) does; it records every
event, every connection and every ``reset``.  :class:`PublisherLanes` keeps
tests/scale_out_publisher.py processes publishing (about 25 % of their
transactions roll back) round after round until told to stop.  A
:class:`Chaos` run ties them together with random faults of the database
(through a tests/support/tcp_proxy.py proxy the run owns) and of the servers; its
seed makes the choices, not the timing, reproducible.  Everything started is
in a process group of its own and ended by pid.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import aconnect_sse
from websockets.asyncio.client import connect

from django_realtime.cursor import Cursor
from tests.support.scale_out import PUBLISHER_START_TIMEOUT, Outcome, PublisherProcess
from tests.support.servers import Server, start_server, stop_servers
from tests.support.subscribers import SubscriberPool, delivery_problems, has_all, percentile
from tests.support.tcp_proxy import TCPProxy

#: Which server kinds serve which transport (WSGI serves no WebSockets).
TRANSPORTS = {"gunicorn-gevent": ("sse",), "daphne": ("sse", "ws")}
#: Seconds a client may take to connect; reading has no timeout but STALL.
CONNECT_TIMEOUT = 5.0
#: Seconds without a byte after which an SSE client gives up on a connection: with
#: KEEPALIVE 1 s, a stalled stream (a bug, reported) rather than a quiet one.
STALL = 10.0
#: Seconds a client waits before it reconnects, at least and at most (RETRY is 500 ms).
BACKOFF = (0.1, 0.6)
#: The settings of every server of a chaos run (REALTIME_JSON): a hub gives up on a
#: query after 2 s, polls again quickly after an outage, and opens few connections.
SERVER_SETTINGS = {"READ_TIMEOUT": 2.0, "POLL_INTERVAL": 0.25, "RETRY": 500, "CATCH_UP_CONNECTIONS": 2}
#: Events each publisher process publishes before the next one takes over its lane.
ROUND_EVENTS = 60
#: Faults, and how often each is chosen: the database refused or black-holed, a server killed or stopped.
FAULT_WEIGHTS = {"pg-refuse": 2, "pg-blackhole": 2, "kill": 3, "term": 2}


def now() -> float:
    return time.time()


# Servers --------------------------------------------------------------------


class Cluster:
    """Servers of the demo project, live or gone; every one ever started is kept for its log."""

    def __init__(self, env: dict[str, str], directory: Path) -> None:
        self.env = env
        self.directory = directory
        self.live: list[Server] = []
        self.started: list[Server] = []
        self._lock = threading.Lock()
        self._count = Counter[str]()

    def start(self, kind: str) -> Server:
        """Start a server of *kind* and add it to the live ones once it answers."""
        with self._lock:
            self._count[kind] += 1
            log_path = self.directory / f"{kind}-{self._count[kind]}.log"
        server = start_server(kind, self.env, log_path)
        with self._lock:
            self.started.append(server)
            self.live.append(server)
        return server

    def servers(self) -> list[Server]:
        """Return the live servers, as they are now."""
        with self._lock:
            return list(self.live)

    def choose(self, transport: str, rng: random.Random) -> Server | None:
        """Return a random live server that serves *transport*, or None while there is none."""
        with self._lock:
            servers = [s for s in self.live if transport in TRANSPORTS[s.kind]]
        return rng.choice(servers) if servers else None

    def withdraw(self, server: Server) -> None:
        with self._lock:
            if server in self.live:
                self.live.remove(server)

    def kill(self, server: Server) -> None:
        """SIGKILL the server's whole process group (master and workers), as the OOM killer or a crash does."""
        self.withdraw(server)
        server.kill()

    def terminate(self, server: Server) -> None:
        """Stop the server gracefully (SIGTERM, SIGKILL after STOP_TIMEOUT), as a deploy does."""
        self.withdraw(server)
        server.stop()

    def stop_all(self) -> None:
        """Stop every server ever started that still runs, side by side."""
        with self._lock:
            self.live.clear()
        stop_servers(self.started)


# Subscribers ------------------------------------------------------------------


@dataclass
class Connection:
    """One connection of a subscriber: to which server, when, and how it ended."""

    server: str
    opened: float
    #: When the stream was open (SSE: the retry: prelude came; WebSocket: every channel subscribed).
    ready: float | None = None
    ended: float | None = None
    how: str = ""


@dataclass(eq=False)
class Subscriber:
    """A client of *channels* over *transport* that reconnects with its last id whenever its connection ends."""

    name: str
    transport: str  # "sse" or "ws"
    channels: tuple[str, ...]
    choose: Callable[[str, random.Random], Server | None]
    rng: random.Random
    #: The cursor it starts from: it is to receive every committed event after this id.
    after: int = 0
    #: Events as (id, channel or None where SSE does not say, event name, data, time.time() of arrival).
    received: list[tuple[int, str | None, str, Any, float]] = field(default_factory=list)
    #: The cursor each received event came with (its SSE id, its WebSocket message's id).
    received_cursors: list[str] = field(default_factory=list)
    #: Every reset the server sent, as (server url, the reset's fields, time.time()).
    resets: list[tuple[str, dict[str, Any], float]] = field(default_factory=list)
    #: Messages of any other kind, and stalled streams: each one a problem.
    anomalies: list[str] = field(default_factory=list)
    connections: list[Connection] = field(default_factory=list)
    stopping: bool = False

    def __post_init__(self) -> None:
        #: SSE: the last cursor received (one stream merges its channels); WebSocket: one per channel.
        self.cursor = str(self.after)
        self.cursors = dict.fromkeys(self.channels, str(self.after))

    def __str__(self) -> str:
        return f"{self.name} ({self.transport} to {'+'.join(self.channels)})"

    async def run(self) -> None:
        while not self.stopping:
            server = self.choose(self.transport, self.rng)
            if server is not None:
                connection = Connection(server.url, now())
                self.connections.append(connection)
                try:
                    if self.transport == "sse":
                        await self._sse(server, connection)
                    else:
                        await self._ws(server, connection)
                except asyncio.CancelledError:
                    connection.how = connection.how or "cancelled"
                    raise
                except Exception as exc:
                    connection.how = connection.how or f"{type(exc).__name__}: {exc}"[:200]
                    if "keepalive ping timeout" in str(exc):  # a server that stopped answering pings
                        self.anomalies.append(f"{server.url}: WebSocket stalled at {now():.3f}: {exc}")
                finally:
                    connection.ended = now()
            await asyncio.sleep(self.rng.uniform(*BACKOFF))

    async def _sse(self, server: Server, connection: Connection) -> None:
        params = [("channel", name) for name in self.channels]
        headers = {"Last-Event-ID": self.cursor}
        timeout = httpx.Timeout(CONNECT_TIMEOUT, read=STALL)
        async with httpx.AsyncClient(timeout=timeout, verify=False, trust_env=False) as client:
            async with aconnect_sse(client, "GET", server.events_url(), params=params, headers=headers) as source:
                response = source.response
                if response.status_code != 200:
                    connection.how = f"status {response.status_code}: {(await response.aread())[:120]!r}"
                    return
                try:
                    async for sse in source.aiter_sse():
                        if not sse.data:
                            if sse.retry is not None and connection.ready is None:
                                connection.ready = now()
                            continue  # EventSource dispatches nothing without data
                        if sse.event == "reset":
                            self.resets.append((server.url, json.loads(sse.data), now()))
                            self.cursor = sse.id
                            continue
                        if not sse.id:
                            self.anomalies.append(f"{server.url}: an event without an id: {sse.event} {sse.data!r}")
                            continue
                        event_id = Cursor.event_id(sse.id)
                        self.received.append((event_id, None, sse.event, json.loads(sse.data), now()))
                        self.received_cursors.append(sse.id)
                        self.cursor = sse.id
                except httpx.ReadTimeout:
                    self.anomalies.append(f"{server.url}: stream stalled: no byte in {STALL}s at {now():.3f}")
                    connection.how = "stalled"
                    return
                connection.how = "ended by the server"

    async def _ws(self, server: Server, connection: Connection) -> None:
        url = server.url.replace("http://", "ws://", 1) + "/ws/"
        async with connect(
            url, origin=server.url, proxy=None, open_timeout=CONNECT_TIMEOUT, ping_interval=2, ping_timeout=STALL
        ) as ws:
            for name in self.channels:
                await ws.send(json.dumps({"type": "subscribe", "channel": name, "last_id": self.cursors[name]}))
            pending = set(self.channels)
            async for text in ws:
                message = json.loads(text)
                kind = message.get("type")
                if kind == "event" and message.get("channel") in self.cursors:
                    event_id = Cursor.event_id(message["id"])
                    fields = (event_id, message["channel"], message["event"], message["data"], now())
                    self.received.append(fields)
                    self.received_cursors.append(message["id"])
                    self.cursors[message["channel"]] = message["id"]
                elif kind == "subscribed" and message.get("channel") in pending:
                    pending.discard(message["channel"])
                    if not pending:
                        connection.ready = now()
                elif kind == "reset" and message.get("channel") in self.cursors:
                    self.resets.append((server.url, message, now()))
                    self.cursors[message["channel"]] = str(message["resume_id"])
                elif kind == "error" and message.get("code") == "unavailable":
                    # The log could not be read to subscribe (an outage): come back later, elsewhere.
                    connection.how = "subscribe refused: unavailable"
                    return
                else:
                    self.anomalies.append(f"{server.url}: unexpected message {text[:300]}")
            connection.how = f"closed by the server: {ws.close_code} {ws.close_reason!r}"

    def reconnects(self) -> int:
        return max(0, len(self.connections) - 1)

    def is_ready(self) -> bool:
        return any(c.ready for c in self.connections)

    def gave_up(self) -> bool:
        return False  # it reconnects until stopped

    def state(self) -> str:
        return describe(self.connections[-1]) if self.connections else "never connected"

    def stop(self) -> None:
        self.stopping = True

    def has_all(self, expected: dict[str, list[int]]) -> bool:
        """Return whether it received every id of *expected* (channel: committed ids) of its channels."""
        return has_all(list(self.received), self.channels, expected, self.after)

    def latencies(self, outcome: Outcome, ids: set[int] | None = None) -> list[float]:
        """Return the seconds from commit to arrival of each committed event received (of *ids*, if given)."""
        ended = outcome.ended_at
        wanted = outcome.committed if ids is None else ids
        return [at - ended[i] for i, *_, at in list(self.received) if i in wanted]

    def problems(self, outcome: Outcome, event: str = "scale") -> list[str]:
        """Return what is wrong with what it received: an empty list when every event came once, in order
        (tests/support/subscribers.py ``delivery_problems``); any reset is one too."""
        problems = [f"{self}: {anomaly}" for anomaly in self.anomalies]
        problems += [f"{self}: reset from {url} at {at:.3f}: {fields}" for url, fields, at in self.resets]
        received, cursors = list(self.received), list(self.received_cursors)
        problems += delivery_problems(
            str(self), self.transport, self.channels, received, cursors, outcome, after=self.after, event=event
        )
        if problems:
            problems.append(f"{self}: its connections: " + "; ".join(describe(c) for c in self.connections[-8:]))
        return problems


def describe(connection: Connection) -> str:
    ready = f"ready +{connection.ready - connection.opened:.2f}s" if connection.ready else "never ready"
    ended = f"ended {connection.ended:.3f}" if connection.ended else "open"
    return f"{connection.server} opened {connection.opened:.3f} {ready} {ended} {connection.how}"


# Publishers -------------------------------------------------------------------


class PublisherLanes:
    """Keep *lanes* publisher processes running, a new one (a new seed) as each finishes, until stop()."""

    def __init__(self, env: dict[str, str], lanes: int, seed: int, channels: Sequence[str], directory: Path) -> None:
        self.env = env
        self.seed = seed
        self.channels = tuple(channels)
        self.directory = directory
        self.publishers: list[PublisherProcess] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._lane, args=(n,), name=f"lane {n}") for n in range(lanes)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def _lane(self, lane: int) -> None:
        round_ = 0
        while not self._stop.is_set():
            name = f"p{lane}.{round_}"
            with self._lock:
                if self._stop.is_set():
                    return
                publisher = PublisherProcess(
                    self.env, name, self.seed * 1000 + lane * 100 + round_, ROUND_EVENTS, self.channels, self.directory
                )
                self.publishers.append(publisher)
            try:
                publisher.wait_ready(time.monotonic() + PUBLISHER_START_TIMEOUT)
                publisher.go()
                # A round publishes ROUND_EVENTS in about 15 s; a minute means it hangs.
                publisher.finish(time.monotonic() + 60)
            except AssertionError as exc:
                self.errors.append(f"publisher {name}: {exc}")
                publisher.kill()
                return
            round_ += 1

    def stop(self, timeout: float = 90.0) -> None:
        """Let the running rounds finish (no new one starts); then every publisher has ended."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            if thread.is_alive():
                thread.join(max(0.1, deadline - time.monotonic()))
        if any(thread.is_alive() for thread in self._threads):
            self.errors.append("a publisher round did not end in time")

    def kill(self) -> None:
        self._stop.set()
        with self._lock:
            publishers = list(self.publishers)
        for publisher in publishers:
            publisher.kill()

    def outcome(self) -> Outcome:
        return Outcome.of(self.publishers)

    def transactions(self) -> int:
        return sum(len(p.transactions) for p in list(self.publishers))


# Faults -----------------------------------------------------------------------


@dataclass
class Fault:
    """One fault injected: what, to what, and when it began and ended (time.time())."""

    kind: str
    target: str
    began: float
    ended: float | None = None


@dataclass
class Chaos:
    """Random faults of the database (through *proxy*) and of the *cluster*'s servers, until stop()."""

    cluster: Cluster
    proxy: TCPProxy
    kinds: Sequence[str]
    rng: random.Random
    #: Seconds between two faults, at least and at most.
    interval: tuple[float, float] = (2.0, 6.0)
    faults: list[Fault] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos", daemon=True)
        self._restarts: list[threading.Thread] = []

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop injecting; heal the database; wait for the servers being replaced."""
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(30)
        self.proxy.forward()
        for thread in self._restarts:
            thread.join(60)

    def _run(self) -> None:
        weights = {kind: FAULT_WEIGHTS[kind] for kind in self.kinds}
        # Every kind once first, in a random order, so that no seed leaves one out
        # (twelve weighted draws miss "kill" about once in 130 runs); then by weight.
        first = self.rng.sample(list(self.kinds), len(self.kinds))
        while not self._stop.wait(self.rng.uniform(*self.interval)):
            kind = first[0] if first else self.rng.choices(list(weights), weights=list(weights.values()))[0]
            try:
                if kind.startswith("pg-"):
                    self._database(kind, self.rng.uniform(0.5, 3.0))
                    done = True
                else:
                    done = self._server(kind)
            except Exception as exc:  # reported at the end, not lost on this thread
                self.errors.append(f"{kind}: {exc!r}")
                done = True
            if done and first:
                first.pop(0)

    def _database(self, kind: str, seconds: float) -> None:
        fault = Fault(kind, f"PostgreSQL for {seconds:.1f}s", now())
        self.faults.append(fault)
        self.proxy.refuse() if kind == "pg-refuse" else self.proxy.blackhole()
        self._stop.wait(seconds)
        self.proxy.forward()
        fault.ended = now()

    def _server(self, kind: str) -> bool:
        """Kill or stop a random live server and start its replacement; False when none may go now."""
        live = self.cluster.servers()
        if len(live) < 2:
            return False  # a replacement is still starting: keep one server up
        victim = self.rng.choice(live)
        fault = Fault(kind, f"{victim.kind} {victim.url}", now())
        self.faults.append(fault)

        def replace() -> None:
            try:
                if kind == "kill":
                    self.cluster.kill(victim)
                else:
                    self.cluster.terminate(victim)
                replacement = self.cluster.start(victim.kind)
                fault.target += f" -> {replacement.url}"
            except Exception as exc:
                self.errors.append(f"replacing {victim.kind} {victim.url}: {exc!r}")
            finally:
                fault.ended = now()

        thread = threading.Thread(target=replace, name=f"replace {victim.url}")
        self._restarts.append(thread)
        thread.start()
        return True

    def counts(self) -> Counter[str]:
        return Counter(fault.kind for fault in self.faults)

    def during_fault(self, at: float, before: float = 0.5, after: float = 3.0) -> bool:
        """Return whether *at* falls in a fault, widened by *before* and *after* seconds."""
        return any(f.began - before <= at <= (f.ended or now()) + after for f in self.faults)

    def timeline(self, origin: float) -> str:
        return "\n".join(
            f"  +{f.began - origin:7.2f}s .. +{(f.ended or now()) - origin:7.2f}s  {f.kind:13} {f.target}"
            for f in self.faults
        )


def percentiles(values: Sequence[float]) -> str:
    """Return p50/p99/max of *values* in milliseconds."""
    if not values:
        return "no samples"
    ordered = sorted(values)
    p99 = percentile(ordered, 0.99)
    median, top = statistics.median(ordered), ordered[-1]
    return f"p50 {median * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {top * 1000:.0f} ms ({len(ordered):,} deliveries)"


# A whole run ------------------------------------------------------------------

#: Channels of a run, and what a subscriber subscribes to (in turn): one, the other, or both.
CHANNELS = ("chat:chaos-a", "chat:chaos-b")
CHOICES = (CHANNELS[:1], CHANNELS[1:], CHANNELS)
#: The servers a run keeps up: two of each kind, so that a fault leaves one of each.
SLOTS = ("gunicorn-gevent", "daphne", "gunicorn-gevent", "daphne")
FAULT_KINDS = ("pg-refuse", "pg-blackhole", "kill", "term")
#: Seconds every subscriber has, once the faults and publishers stopped, to hold every committed event.
SETTLE_TIMEOUT = 20.0
#: Seconds to go on listening after that, for a late duplicate.
GRACE = 1.0


@dataclass
class SoakResult:
    seed: int
    seconds: float
    problems: list[str]
    summary: str
    #: What to show when it failed: the fault timeline, the servers' and publishers' output.
    details: str
    figures: dict[str, Any]


def run_soak(
    directory: Path,
    *,
    seconds: float,
    seed: int,
    sse: int = 150,
    ws: int = 50,
    lanes: int = 2,
    interval: tuple[float, float] = (2.0, 6.0),
    say: Callable[[str], None] = print,
) -> SoakResult:
    """Run the chaos soak for *seconds* of faults on a scratch PostgreSQL database; return what happened."""
    from tests.support.postgres_database import scratch_database
    from tests.support.servers import manage, project_env
    from tests.support.services import POSTGRES

    rng = random.Random(seed)
    marks = {"start": time.monotonic()}
    with scratch_database("realtime_chaos") as (name, _admin):
        direct = {
            **project_env(f"postgres://postgres@{POSTGRES[0]}:{POSTGRES[1]}/{name}"),
            "REALTIME_BACKEND": "postgres",
        }
        manage(direct, "migrate", "--verbosity", "0")
        proxy = TCPProxy(POSTGRES)
        env = {
            **project_env(f"postgres://postgres@127.0.0.1:{proxy.port}/{name}"),
            "REALTIME_BACKEND": "postgres",
            "REALTIME_KEEPALIVE": "1",
            "REALTIME_JSON": json.dumps(SERVER_SETTINGS),
        }
        cluster = Cluster(env, directory)
        publishers = PublisherLanes(direct, lanes, seed, CHANNELS, directory)
        chaos = Chaos(cluster, proxy, FAULT_KINDS, random.Random(rng.random()), interval)
        pool = SubscriberPool()
        origin = now()
        try:
            starters = [threading.Thread(target=cluster.start, args=(kind,)) for kind in SLOTS]
            for thread in starters:
                thread.start()
            for thread in starters:
                thread.join(60)
            if len(cluster.live) != len(SLOTS):
                raise AssertionError(f"{len(cluster.live)} of {len(SLOTS)} servers started")
            marks["servers up"] = time.monotonic()
            spread = [("sse", n) for n in range(sse)] + [("ws", n) for n in range(ws)]
            pool.start(
                [
                    Subscriber(
                        f"{transport}{n}", transport, CHOICES[n % 3], cluster.choose, random.Random(rng.random())
                    )
                    for transport, n in spread
                ]
            )
            pool.wait_ready(60)
            marks["subscribed"] = time.monotonic()
            say(
                f"chaos: seed {seed}, {len(SLOTS)} servers, {sse} SSE + {ws} WebSocket subscribers, "
                f"{seconds:g}s of faults"
            )
            publishers.start()
            chaos.start()
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and not publishers.errors:
                time.sleep(min(10.0, max(0.0, deadline - time.monotonic())))
                say(
                    f"chaos: +{now() - origin:.0f}s {publishers.transactions()} transactions, "
                    f"faults {dict(chaos.counts())}, {len(cluster.live)} servers live"
                )
            chaos.stop()
            marks["faults"] = time.monotonic()
            publishers.stop()
            marks["published"] = time.monotonic()
            outcome = publishers.outcome()
            settled = pool.wait_until(outcome, SETTLE_TIMEOUT)
            marks["settled"] = time.monotonic()
            time.sleep(GRACE)
            problems = list(publishers.errors) + [f"fault injection: {e}" for e in chaos.errors]
            if not settled:
                problems.append(f"not every subscriber had every event {SETTLE_TIMEOUT}s after the faults stopped")
            found = {subscriber: subscriber.problems(outcome) for subscriber in pool.subscribers}
            problems += [p for subscriber_problems in found.values() for p in subscriber_problems]
            problems += check_log(f"postgresql://postgres@{POSTGRES[0]}:{POSTGRES[1]}/{name}", outcome)
            live = list(cluster.live)
            if len(live) != len(SLOTS):
                problems.append(f"{len(live)} of {len(SLOTS)} servers live after the faults")
            for server in live:
                if server.process.poll() is not None:
                    problems.append(f"{server.kind} {server.url} exited with status {server.process.returncode}")
        finally:
            pool.close()
            publishers.kill()
            chaos.stop()
            cluster.stop_all()
            proxy.close()
    marks["stopped"] = time.monotonic()

    subscribers = pool.subscribers
    calm = {i for i, at in outcome.ended_at.items() if i in outcome.committed and not chaos.during_fault(at)}
    quiet = [t for s in subscribers for t in s.latencies(outcome, calm)]
    every = [t for s in subscribers for t in s.latencies(outcome)]
    reconnects = sum(s.reconnects() for s in subscribers)
    figures = {
        "seed": seed,
        "seconds of faults": seconds,
        "transactions": sum(len(p.transactions) for p in publishers.publishers),
        "publisher processes": len(publishers.publishers),
        "events committed": len(outcome.committed),
        "events rolled back": len(outcome.rolled_back),
        "faults": dict(chaos.counts()),
        "servers started": len(cluster.started),
        "subscribers": len(subscribers),
        "subscribers verified": sum(not found[s] for s in subscribers),
        "reconnects": reconnects,
        "events delivered": sum(len(s.received) for s in subscribers),
        "latency outside faults": percentiles(quiet),
        "latency overall": percentiles(every),
        "resets": sum(len(s.resets) for s in subscribers),
        "connection ends": dict(Counter(ending(c.how) for s in subscribers for c in s.connections).most_common(8)),
        "wall seconds": round(marks["stopped"] - marks["start"], 1),
        "phases": ", ".join(f"{b} {marks[b] - marks[a]:.1f}s" for a, b in zip(marks, list(marks)[1:], strict=False)),
    }
    summary = "chaos soak: " + "; ".join(f"{key} {value}" for key, value in figures.items())
    details = [f"fault timeline (seed {seed}):\n{chaos.timeline(origin)}"]
    for server in cluster.started:
        details.append(f"--- {server.kind} {server.url} ({server.log_path.name}), tail ---\n{server.log()[-2500:]}")
    for publisher in publishers.publishers:
        if stderr := publisher.stderr().strip():
            details.append(f"--- publisher {publisher.name} stderr ---\n{stderr[-1500:]}")
    return SoakResult(seed, seconds, problems, summary, "\n".join(details), figures)


def ending(how: str) -> str:
    """Return the gist of how a connection ended, without the addresses and ids that vary."""
    return re.sub(r"\d+", "N", how.partition("\n")[0])[:60]


def check_log(url: str, outcome: Outcome) -> list[str]:
    """Return how the event log disagrees with what the publishers reported."""
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=5) as log:
        rows = dict(log.execute("SELECT id, channel FROM django_realtime_event").fetchall())
    problems = []
    if lost := sorted(set(outcome.committed) - set(rows)):
        problems.append(f"the log lacks committed events {lost[:20]}")
    if kept := sorted(set(outcome.rolled_back) & set(rows)):
        problems.append(f"the log holds rolled-back events {kept[:20]}")
    if unknown := sorted(set(rows) - set(outcome.committed)):
        problems.append(f"the log holds events no publisher reported committed: {unknown[:20]}")
    return problems
