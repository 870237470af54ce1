"""Helpers of tests/test_scale_out.py: servers, publishers, subscribers and the delivery check.

Servers are the demo project under gunicorn (gevent) and daphne, started
side by side (tests/support/servers.py ``running_servers``).  Publishers are processes of their own
(tests/scale_out_publisher.py), each in a session of its own so that
teardown can kill its whole group.  Subscribers, SSE (httpx-sse) and
WebSocket (``websockets``) alike, are asyncio tasks on one event loop that
runs on a thread of its own: the test thread orchestrates and looks at what
they received, and every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import json
import queue
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import aconnect_sse
from websockets.asyncio.client import connect

from django_realtime.backends.postgres import LISTENER_NAME
from django_realtime.cursor import Cursor
from tests.support.processes import ScriptProcess
from tests.support.redis_server import RedisServer
from tests.support.servers import ROOT, Server
from tests.support.subscribers import delivery_problems, has_all

#: Seconds a publisher may take to set Django up, and to finish publishing.
PUBLISHER_START_TIMEOUT = 30.0
PUBLISHER_RUN_TIMEOUT = 40.0
#: Seconds a subscriber may take to connect (reading has no timeout: the test's deadlines bound it).
CONNECT_TIMEOUT = 10.0

# Publishers -----------------------------------------------------------------


class PublisherProcess(ScriptProcess):
    """A tests/scale_out_publisher.py process; its JSON lines are read on a thread as they come."""

    def __init__(
        self, env: dict[str, str], name: str, seed: int, count: int, channels: Sequence[str], directory: Path
    ) -> None:
        self.name = name
        args = [name, str(seed), str(count), *channels]
        super().__init__("tests.scale_out_publisher", args, env, directory / f"{name}.stderr", ROOT)
        #: The transactions it reported, in the order they ended.
        self.transactions: list[dict[str, Any]] = []
        self.ready = threading.Event()
        self.done = threading.Event()
        self.ended = threading.Event()
        self._lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name=f"publisher {name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        try:
            for line in self.process.stdout:
                message = json.loads(line)
                if "outcome" in message:
                    self.transactions.append(message)
                elif message.get("ready"):
                    self.ready.set()
                elif message.get("done"):
                    self.done.set()
        finally:
            self.ended.set()

    def _wait(self, flag: threading.Event, deadline: float, what: str) -> None:
        while not flag.wait(0.05):
            if self.ended.is_set() or time.monotonic() > deadline:
                self.process.poll()
                raise AssertionError(
                    f"publisher {self.name} did not {what} (exit status {self.process.returncode}):\n{self.stderr()}"
                )

    def wait_ready(self, deadline: float) -> None:
        self._wait(self.ready, deadline, "start")

    def finish(self, deadline: float) -> None:
        """Wait until it has published everything and exited cleanly."""
        self._wait(self.done, deadline, "finish publishing")
        try:
            self.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise AssertionError(f"publisher {self.name} did not exit:\n{self.stderr()}") from None
        if self.process.returncode != 0:
            raise AssertionError(
                f"publisher {self.name} exited with status {self.process.returncode}:\n{self.stderr()}"
            )

    def _reaped(self) -> None:
        self._reader.join(5)


@dataclass
class Outcome:
    """What the publishers did: every event they published, by id, as (channel, data)."""

    committed: dict[int, tuple[str, Any]]
    rolled_back: dict[int, tuple[str, Any]]
    #: When each event's transaction ended (time.time()): for latencies, and the diagnosis of a failure.
    ended_at: dict[int, float]

    @classmethod
    def of(cls, publishers: Sequence[PublisherProcess]) -> Outcome:
        committed, rolled_back, ended_at = {}, {}, {}
        for publisher in publishers:
            for transaction in publisher.transactions:
                into = committed if transaction["outcome"] == "commit" else rolled_back
                for event_id, channel, data in transaction["events"]:
                    into[event_id] = (channel, data)
                    ended_at[event_id] = transaction["t"]
        return cls(committed, rolled_back, ended_at)

    def committed_ids(self, channel: str) -> list[int]:
        return sorted(i for i, (name, _) in self.committed.items() if name == channel)


# Services -------------------------------------------------------------------


def terminate_listeners(admin: Any, database: str) -> int:
    """Terminate the postgres backend's listening connections to *database*; return how many.

    *database* must be one the test created (see the ``database`` fixture of
    tests/test_scale_out.py): then every connection to it is the test's own.
    """
    query = (
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = %s AND application_name = %s AND pid <> pg_backend_pid()"
    )
    return admin.execute(query, [database, LISTENER_NAME]).fetchone()[0]


def listening_connections(admin: Any, database: str) -> int:
    """Return how many of the postgres backend's listening connections reach *database*."""
    query = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name = %s"
    return admin.execute(query, [database, LISTENER_NAME]).fetchone()[0]


def redis_subscribers(redis: RedisServer, channel: str) -> int:
    """Return how many redis backend listeners the test's own *redis* has: each subscribes to a name of its
    own under *channel* (backends/redis.py)."""
    with redis.client() as client:
        return len(client.pubsub_channels(f"{channel}:listener:*"))


# Subscribers ----------------------------------------------------------------


@dataclass
class Connection:
    """One connection of a subscriber: where it resumed from, what it got, and how it ended."""

    #: The cursor(s) it resumed from, as sent (``Last-Event-ID``, or each channel's ``last_id``).
    resumed: str
    opened: float = field(default_factory=time.time)
    events: int = 0
    #: When the subscriber began to leave it (to reconnect), and when it was closed (time.time()).
    leaving: float | None = None
    closed: float | None = None
    #: The close code of a WebSocket's closing handshake: 1006 where it did not complete.
    close_code: int | None = None

    def __str__(self) -> str:
        text = f"from {self.resumed} at {self.opened:.3f}: {self.events} events"
        if self.leaving is not None and self.closed is not None:
            text += f", closed {self.closed - self.leaving:.1f}s after leaving"
        return text if self.close_code is None else f"{text} (close code {self.close_code})"


@dataclass(eq=False)
class Subscriber:
    """One client's subscription to *channels* from *cursor*, and everything it received."""

    transport: str  # "sse" or "ws"
    server: Server
    channels: tuple[str, ...]
    cursor: int
    #: Whether it connected while the publishers ran, rather than before.
    late: bool = False
    #: Reconnect (with the cursor of the last event, as a client does) after this many events; 0: never.
    reconnect_every: int = 0
    #: Reconnections made so far.
    reconnected: int = 0
    #: Events as (id, channel or None when the transport does not say, event name, data, time.time()).
    received: list[tuple[int, str | None, str, Any, float]] = field(default_factory=list)
    #: The cursor each event came with (its SSE id, its WebSocket message's id).
    cursors: list[str] = field(default_factory=list)
    #: Anything else the server sent, and how the connection ended if it did.
    anomalies: list[str] = field(default_factory=list)
    #: Its connections, the current one last: to tell a slow subscriber from a lost event.
    connections: list[Connection] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)

    def __str__(self) -> str:
        when = "late " if self.late else ""
        return f"{when}{self.transport} on {self.server.kind} ({self.server.url}) to {'+'.join(self.channels)}"

    async def run(self) -> None:
        try:
            await (self._sse() if self.transport == "sse" else self._ws())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.anomalies.append(f"failed: {exc!r}")
        finally:
            self.ended.set()

    async def _sse(self) -> None:
        last: str | None = None
        while await self._sse_once(last):
            self.reconnected += 1
            last = self.cursors[-1]

    async def _sse_once(self, last: str | None) -> bool:
        """Stream from the initial cursor, or with ``Last-Event-ID`` *last*; return whether to reconnect."""
        params = [("channel", name) for name in self.channels]
        if last is None:
            params.append(("lastEventId", str(self.cursor)))
        headers = {} if last is None else {"Last-Event-ID": last}
        timeout = httpx.Timeout(CONNECT_TIMEOUT, read=None)
        connection = Connection(str(self.cursor) if last is None else last)
        self.connections.append(connection)
        async with httpx.AsyncClient(timeout=timeout, verify=False, trust_env=False) as client:
            async with aconnect_sse(client, "GET", self.server.events_url(), params=params, headers=headers) as source:
                response = source.response
                if response.status_code != 200:
                    body = await response.aread()
                    self.anomalies.append(f"status {response.status_code}: {body[:200]!r}")
                    return False
                async for sse in source.aiter_sse():
                    if not sse.data:
                        # EventSource dispatches no event without data: the
                        # retry: prelude (the stream is open), or a keepalive
                        # that httpx-sse turns into an event with the last id.
                        if sse.retry is not None:
                            self.ready.set()
                        continue
                    self.cursors.append(sse.id)
                    self.received.append((Cursor.event_id(sse.id), None, sse.event, json.loads(sse.data), time.time()))
                    connection.events += 1
                    if self.reconnect_every and connection.events >= self.reconnect_every:
                        connection.leaving = time.time()
                        break
                else:
                    self.anomalies.append("the stream ended")
        connection.closed = time.time()
        return connection.leaving is not None

    async def _ws(self) -> None:
        last: dict[str, str] = {}
        while await self._ws_once(last):
            self.reconnected += 1

    async def _ws_once(self, last: dict[str, str]) -> bool:
        """Subscribe from the initial cursor, or each channel from the last cursor it got; return whether to
        reconnect."""
        url = self.server.url.replace("http://", "ws://", 1) + "/ws/"
        cursors = {name: last.get(name, str(self.cursor)) for name in self.channels}
        connection = Connection(" ".join(cursors.values()))
        self.connections.append(connection)
        # max_queue=None: queue every message received, as a browser's WebSocket does. With
        # websockets' default (16) the client stops reading once 16 wait unread, so a subscriber
        # that leaves behind a backlog never reads the server's close frame and waits out
        # close_timeout (10 s) on every reconnection (python-websockets/websockets#1555).
        async with connect(url, origin=self.server.url, proxy=None, open_timeout=CONNECT_TIMEOUT, max_queue=None) as ws:
            for name, cursor in cursors.items():
                await ws.send(json.dumps({"type": "subscribe", "channel": name, "last_id": cursor}))
            pending = set(self.channels)
            async for text in ws:
                message = json.loads(text)
                if message["type"] == "event":
                    self.cursors.append(message["id"])
                    last[message["channel"]] = message["id"]
                    fields = (Cursor.event_id(message["id"]), message["channel"], message["event"], message["data"])
                    self.received.append((*fields, time.time()))
                    connection.events += 1
                    if self.reconnect_every and connection.events >= self.reconnect_every:
                        connection.leaving = time.time()
                        break
                elif message["type"] == "subscribed" and message["channel"] in pending:
                    pending.discard(message["channel"])
                    if not pending:
                        self.ready.set()
                else:
                    self.anomalies.append(f"message {text[:300]}")
            else:
                self.anomalies.append(f"closed by the server: {ws.close_code} {ws.close_reason!r}")
        # Leaving the block closed the connection (the closing handshake, as a browser's close() does).
        connection.closed = time.time()
        connection.close_code = ws.close_code
        return connection.leaving is not None

    def is_ready(self) -> bool:
        return self.ready.is_set()

    def gave_up(self) -> bool:
        return self.ended.is_set()

    def state(self) -> str:
        return str(self.anomalies)

    def stop(self) -> None:
        """Nothing to do: it reconnects only as planned (``reconnect_every``), and is cancelled."""

    def has_all(self, expected: dict[str, list[int]]) -> bool:
        return has_all(list(self.received), self.channels, expected)

    def latencies(self, outcome: Outcome) -> list[float]:
        """Return, for each committed event received, the seconds from its commit to its arrival."""
        return [at - outcome.ended_at[i] for i, *_, at in list(self.received) if i in outcome.committed]

    def problems(self, outcome: Outcome) -> list[str]:
        """Return what is wrong with what it received: an empty list when every event came once, in commit order
        (tests/support/subscribers.py ``delivery_problems``)."""
        problems = [f"{self}: {anomaly}" for anomaly in self.anomalies]
        received, cursors = list(self.received), list(self.cursors)
        problems += delivery_problems(str(self), self.transport, self.channels, received, cursors, outcome)
        expected = {name: outcome.committed_ids(name) for name in self.channels}
        if self.reconnected and not has_all(received, self.channels, expected):
            # Lost, or late? A lost event leaves a hole; a slow subscriber, the tail of each channel.
            recent = "; ".join(str(connection) for connection in self.connections[-6:])
            problems.append(f"{self}: {len(self.connections)} connections, the last ones {recent}")
        return problems
