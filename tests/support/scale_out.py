"""Helpers of tests/test_scale_out.py: servers, publishers, subscribers and the delivery check.

Servers are the demo project under gunicorn (gevent) and daphne, started
side by side (tests/servers.py).  Publishers are processes of their own
(tests/scale_out_publisher.py), each in a session of its own so that
teardown can kill its whole group.  Subscribers, SSE (httpx-sse) and
WebSocket (``websockets``) alike, are asyncio tasks on one event loop that
runs on a thread of its own: the test thread orchestrates and looks at what
they received, and every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import aconnect_sse
from websockets.asyncio.client import connect

from django_realtime.backends.postgres import LISTENER_NAME
from django_realtime.cursor import Cursor
from tests.support.redis_server import RedisServer
from tests.support.servers import ROOT, SERVER_COMMANDS, Server, free_port, stop_server, wait_until_answering

#: Seconds a publisher may take to set Django up, and to finish publishing.
PUBLISHER_START_TIMEOUT = 30.0
PUBLISHER_RUN_TIMEOUT = 40.0
#: Seconds a subscriber may take to connect and subscribe.
SUBSCRIBE_TIMEOUT = 20.0
#: Seconds a subscriber may take to connect (reading has no timeout: the test's deadlines bound it).
CONNECT_TIMEOUT = 10.0

# Servers ------------------------------------------------------------------


@contextmanager
def running_servers(kinds: Sequence[str], env: dict[str, str], directory: Path) -> Iterator[dict[str, Server]]:
    """Start a server of each kind at once (each in a process group of its own); stop them all afterwards."""
    servers: dict[str, Server] = {}
    try:
        for kind in kinds:
            port = free_port()
            log_path = directory / f"{kind}.log"
            with log_path.open("wb") as log:
                process = subprocess.Popen(
                    [part.format(port=port) for part in SERVER_COMMANDS[kind]],
                    cwd=ROOT,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            servers[kind] = Server(kind, f"http://127.0.0.1:{port}", env, process, log_path)
        for server in servers.values():
            wait_until_answering(server)
        yield servers
    finally:
        # SIGTERM to every group first, so that they stop side by side.
        for server in servers.values():
            try:
                os.killpg(server.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for server in servers.values():
            stop_server(server)


# Publishers -----------------------------------------------------------------


class PublisherProcess:
    """A tests/scale_out_publisher.py process; its JSON lines are read on a thread as they come."""

    def __init__(
        self, env: dict[str, str], name: str, seed: int, count: int, channels: Sequence[str], directory: Path
    ) -> None:
        self.name = name
        self.stderr_path = directory / f"{name}.stderr"
        with self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.scale_out_publisher", name, str(seed), str(count), *channels],
                cwd=ROOT,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                encoding="utf-8",
                start_new_session=True,
            )
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

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def _wait(self, flag: threading.Event, deadline: float, what: str) -> None:
        while not flag.wait(0.05):
            if self.ended.is_set() or time.monotonic() > deadline:
                self.process.poll()
                raise AssertionError(
                    f"publisher {self.name} did not {what} (exit status {self.process.returncode}):\n{self.stderr()}"
                )

    def wait_ready(self, deadline: float) -> None:
        self._wait(self.ready, deadline, "start")

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

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

    def kill(self) -> None:
        """Kill its process group if it still runs, and release its pipes."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait()
        self._reader.join(5)
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                try:
                    pipe.close()
                except BrokenPipeError:
                    pass


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
        count = 0
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
                    count += 1
                    if self.reconnect_every and count >= self.reconnect_every:
                        return True
                self.anomalies.append("the stream ended")
        return False

    async def _ws(self) -> None:
        last: dict[str, str] = {}
        while await self._ws_once(last):
            self.reconnected += 1

    async def _ws_once(self, last: dict[str, str]) -> bool:
        """Subscribe from the initial cursor, or each channel from the last cursor it got; return whether to
        reconnect."""
        url = self.server.url.replace("http://", "ws://", 1) + "/ws/"
        count = 0
        async with connect(url, origin=self.server.url, proxy=None, open_timeout=CONNECT_TIMEOUT) as ws:
            for name in self.channels:
                cursor = last.get(name, str(self.cursor))
                await ws.send(json.dumps({"type": "subscribe", "channel": name, "last_id": cursor}))
            pending = set(self.channels)
            async for text in ws:
                message = json.loads(text)
                if message["type"] == "event":
                    self.cursors.append(message["id"])
                    last[message["channel"]] = message["id"]
                    fields = (Cursor.event_id(message["id"]), message["channel"], message["event"], message["data"])
                    self.received.append((*fields, time.time()))
                    count += 1
                    if self.reconnect_every and count >= self.reconnect_every:
                        return True
                elif message["type"] == "subscribed" and message["channel"] in pending:
                    pending.discard(message["channel"])
                    if not pending:
                        self.ready.set()
                else:
                    self.anomalies.append(f"message {text[:300]}")
            self.anomalies.append(f"closed by the server: {ws.close_code} {ws.close_reason!r}")
        return False

    def has_all(self, outcome: Outcome) -> bool:
        got = {item[0] for item in list(self.received)}
        return all(got.issuperset(outcome.committed_ids(name)) for name in self.channels)

    def latencies(self, outcome: Outcome) -> list[float]:
        """Return, for each committed event received, the seconds from its commit to its arrival."""
        return [at - outcome.ended_at[i] for i, *_, at in list(self.received) if i in outcome.committed]

    def problems(self, outcome: Outcome) -> list[str]:
        """Return what is wrong with what it received: an empty list when every event came once, in commit order.

        Commit order (docs/architecture.md): each publisher's transactions
        commit one after the other, so its events of a channel arrive in the
        order it published them; the cursor each event comes with covers it
        and every event received before it.
        """
        problems = [f"{self}: {anomaly}" for anomaly in self.anomalies]
        received = list(self.received)
        for event_id, channel, event, data, _ in received:
            published = outcome.committed.get(event_id) or outcome.rolled_back.get(event_id)
            if event_id in outcome.rolled_back:
                problems.append(f"{self}: got rolled-back event {event_id} of {published[0]}")
            elif published is None:
                problems.append(f"{self}: got event {event_id} ({event} {data!r}), which no publisher committed")
            elif published[0] not in self.channels:
                problems.append(f"{self}: got event {event_id} of {published[0]}, a channel it did not subscribe to")
            elif channel not in (None, published[0]) or event != "scale" or data != published[1]:
                problems.append(f"{self}: event {event_id} came as {channel} {event} {data!r}, not as published")
        for name in self.channels:
            expected = outcome.committed_ids(name)
            ids = [item[0] for item in received if outcome.committed.get(item[0], ("",))[0] == name]
            counts = Counter(ids)
            missing = [i for i in expected if i not in counts]
            if missing:
                late = ", ".join(f"{i} (ended {outcome.ended_at[i]:.3f})" for i in missing[:12])
                problems.append(f"{self}: {name}: {len(missing)} of {len(expected)} events missing: {late}")
            if duplicates := sorted(i for i, n in counts.items() if n > 1):
                problems.append(f"{self}: {name}: events received more than once: {duplicates}")
            problems += commit_order_problems(f"{self}: {name}", ids, outcome)
        return problems + cursor_problems(str(self), self.transport, received, list(self.cursors))


def commit_order_problems(label: str, ids: list[int], outcome: Outcome) -> list[str]:
    """Return where *ids* (one channel's, as received) break commit order: each publisher's in the order it
    committed them (docs/architecture.md)."""
    by_publisher: dict[str, list[int]] = {}
    for event_id in ids:
        by_publisher.setdefault(outcome.committed[event_id][1]["publisher"], []).append(event_id)
    return [
        f"{label}: {publisher}'s events out of commit order: {disorder[:10]}"
        for publisher, mine in by_publisher.items()
        if (disorder := [(a, b) for a, b in zip(mine, mine[1:], strict=False) if b <= a])
    ]


def cursor_problems(label: str, transport: str, received: list[tuple[Any, ...]], texts: list[str]) -> list[str]:
    """Return where the cursor an event came with fails to cover it and what came before it (per channel on a
    WebSocket, whose subscriptions have a cursor each), across reconnects too: each resumed from the last one."""
    seen: dict[str | None, list[int]] = {}
    for (event_id, channel, *_), text in zip(received, texts, strict=False):
        mine = seen.setdefault(channel if transport == "ws" else None, [])
        mine.append(event_id)
        if uncovered := [i for i in mine[-50:] if not Cursor.parse(text).covers(i)]:
            return [f"{label}: the cursor {text} of event {event_id} leaves out {uncovered[:5]}"]
    return []


class SubscriberPool:
    """Run subscribers as tasks of one asyncio loop on a thread of its own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="subscribers", daemon=True)
        self.thread.start()
        self.subscribers: list[Subscriber] = []
        self._tasks: list[asyncio.Task[None]] = []

    def __enter__(self) -> SubscriberPool:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close()

    def start(self, subscribers: Sequence[Subscriber]) -> None:
        async def spawn() -> None:
            self._tasks += [asyncio.create_task(subscriber.run()) for subscriber in subscribers]

        self.subscribers += subscribers
        asyncio.run_coroutine_threadsafe(spawn(), self.loop).result(5)

    def wait_ready(self, timeout: float = SUBSCRIBE_TIMEOUT) -> None:
        """Wait until every subscriber is connected and subscribed."""
        deadline = time.monotonic() + timeout
        for subscriber in list(self.subscribers):
            while not subscriber.ready.wait(0.05):
                if subscriber.ended.is_set() or time.monotonic() > deadline:
                    raise AssertionError(f"{subscriber} did not subscribe within {timeout}s: {subscriber.anomalies}")

    def wait_until(self, outcome: Outcome, timeout: float) -> bool:
        """Wait until every subscriber has every committed event of its channels; return whether they have."""
        deadline = time.monotonic() + timeout
        while not all(subscriber.has_all(outcome) for subscriber in self.subscribers):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def close(self) -> None:
        """Disconnect every subscriber, then stop and close the loop."""

        async def cancel() -> None:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(cancel(), self.loop).result(30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()
