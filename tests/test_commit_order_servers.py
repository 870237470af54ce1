"""No event waits for another transaction: real servers on PostgreSQL and MariaDB, over SSE and WebSockets.

A busy site always has a publishing transaction open: a request that
published early under ``ATOMIC_REQUESTS`` and then sends an e-mail.  Here a
process of the test's own (tests/held_publisher.py) holds such
transactions open on command, one after the other and overlapping, while
another publishes in autocommit, on the held channel and on another.  Every
event that has committed must reach the streams of gunicorn (gevent) and
daphne at once, whatever is still open; a held one when it commits, after
the ones that committed before it (commit order), each once; and a client
that reconnects with the cursor it got (``Last-Event-ID``, ``last_id``) gets
exactly what it lacks, on either server.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager

import pytest
from websockets.sync.client import connect

from django_realtime.cursor import Cursor
from tests.postgres_database import scratch_database
from tests.servers import ROOT, EventStream, manage, project_env, start_server, stop_server
from tests.services import MARIADB, POSTGRES, require_mariadb

pytestmark = [pytest.mark.server, pytest.mark.postgres]

#: Seconds within which a committed event must arrive: far longer than delivery takes, far shorter than
#: the transactions held open here (they stay open until the test ends them).
ARRIVAL = 10.0


@contextmanager
def postgres_url() -> Iterator[str]:
    with scratch_database("realtime_order") as (name, _admin):
        yield f"postgres://postgres@{POSTGRES[0]}:{POSTGRES[1]}/{name}"


@contextmanager
def mariadb_url() -> Iterator[str]:
    require_mariadb()
    import MySQLdb

    name = f"realtime_order_{uuid.uuid4().hex[:12]}"
    admin = MySQLdb.connect(host=MARIADB[0], port=MARIADB[1], user="root", connect_timeout=5)
    admin.autocommit(True)
    with closing(admin):
        admin.cursor().execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
        try:
            yield f"mysql://root@{MARIADB[0]}:{MARIADB[1]}/{name}"
        finally:
            admin.cursor().execute(f"DROP DATABASE IF EXISTS {name}")


#: (database, wake-up backend): PostgreSQL's own LISTEN/NOTIFY; MariaDB polled.
SETUPS = {"postgres": (postgres_url, "postgres"), "mariadb": (mariadb_url, "polling")}


@pytest.fixture(scope="module", params=list(SETUPS))
def site(request, tmp_path_factory):
    """The demo under gunicorn (gevent) and daphne on a fresh database; yields (env, {kind: server})."""
    make_url, backend = SETUPS[request.param]
    directory = tmp_path_factory.mktemp(f"order-{request.param}")
    with ExitStack() as stack:
        url = stack.enter_context(make_url())
        env = {**project_env(url), "REALTIME_BACKEND": backend}
        manage(env, "migrate", "--verbosity", "0")
        servers = {}
        for kind in ("gunicorn-gevent", "daphne"):
            servers[kind] = start_server(kind, env, directory / f"{kind}.log")
            stack.callback(stop_server, servers[kind])
        yield env, servers


class HeldPublisher:
    """tests/held_publisher.py in a process of its own, driven line by line."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.held_publisher"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        assert self.answer("ready") == "ready"

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.strip())
        self.lines.put("")

    def answer(self, prefix: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            if not line:
                raise AssertionError(f"the held publisher exited:\n{self.process.stderr.read()}")  # type: ignore[union-attr]
            if line.startswith(prefix):
                return line

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def begin(self, name: str, channel: str) -> int:
        self.send(f"begin {name} {channel}")
        return int(self.answer(f"begun {name} ").split()[2])

    def end(self, name: str, *, commit: bool = True) -> None:
        self.send(f"{'commit' if commit else 'rollback'} {name}")
        self.answer(f"{'committed' if commit else 'rolled back'} {name}")

    def publish(self, channel: str) -> int:
        self.send(f"publish {channel}")
        return int(self.answer("published ").split()[1])

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


class Socket:
    """A WebSocket subscribed to channels, read on a thread of its own: (event id, channel, cursor text)."""

    def __init__(self, server, channels: list[str], last_ids: dict[str, str] | None = None) -> None:
        self.context = connect(server.url.replace("http", "ws") + "/ws/", origin=server.url, open_timeout=10)
        self.ws = self.context.__enter__()
        self.events: queue.Queue[tuple[int, str, str]] = queue.Queue()
        for channel in channels:
            message = {"type": "subscribe", "channel": channel}
            if last_ids and channel in last_ids:
                message["last_id"] = last_ids[channel]
            self.ws.send(json.dumps(message))
        subscribed = set()
        while subscribed != set(channels):
            reply = json.loads(self.ws.recv(timeout=10))
            assert reply["type"] == "subscribed", reply
            subscribed.add(reply["channel"])
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for text in self.ws:
                message = json.loads(text)
                if message["type"] == "event":
                    self.events.put((Cursor.event_id(message["id"]), message["channel"], message["id"]))
        except Exception:  # closed by the test
            pass

    def next(self, timeout: float = ARRIVAL) -> tuple[int, str, str]:
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no WebSocket event within {timeout}s") from None

    def close(self) -> None:
        self.context.__exit__(None, None, None)


def sse_next(stream: EventStream) -> tuple[int, str, str]:
    event = stream.next(timeout=ARRIVAL)
    return Cursor.event_id(event.id), event.event, event.id


@pytest.fixture
def publisher(site):
    env, _ = site
    held = HeldPublisher(env)
    yield held
    held.close()


def test_a_held_transaction_delays_no_other_event_and_arrives_once_when_it_commits(site, publisher):
    _, servers = site
    slow, fast = f"chat:slow-{uuid.uuid4().hex[:6]}", f"chat:fast-{uuid.uuid4().hex[:6]}"
    channels = [slow, fast]
    streams = [
        EventStream(server.events_url(), params=[*(("channel", c) for c in channels)]) for server in servers.values()
    ]
    for stream in streams:
        stream.open()
    socket = Socket(servers["daphne"], channels)
    try:
        held = publisher.begin("a", slow)
        # Committed after the held one drew its id: on the other channel, and on the held one's own.
        others = [publisher.publish(fast), publisher.publish(slow), publisher.publish(fast)]
        for stream in streams:
            got = [sse_next(stream) for _ in others]
            assert [event_id for event_id, _, _ in got] == others, f"{stream}: waited for the held transaction"
            assert all(not Cursor.parse(text).covers(held) for _, _, text in got), "a cursor covered the held id"
        # A WebSocket's subscriptions are each in commit order; across them, in no promised order.
        assert sorted(socket.next()[0] for _ in others) == sorted(others)
        publisher.end("a")
        for stream in streams:
            event_id, _, text = sse_next(stream)
            assert event_id == held and text.startswith(f"{held}@"), "the held event, once it committed, named"
            assert Cursor.parse(text).dominates(Cursor(others[-1])), "its cursor covers everything before it"
        assert socket.next()[0] == held
        after = publisher.publish(fast)
        for stream in streams:
            assert sse_next(stream)[0] == after, "nothing twice, nothing else"
        assert socket.next()[0] == after
    finally:
        socket.close()
        for stream in streams:
            stream.close()


def test_back_to_back_held_transactions_never_stop_delivery(site, publisher):
    """The busy site: some publishing transaction is always open, yet every committed event arrives."""
    _, servers = site
    slow, fast = f"chat:slow-{uuid.uuid4().hex[:6]}", f"chat:fast-{uuid.uuid4().hex[:6]}"
    streams = {
        kind: EventStream(server.events_url(), params=[("channel", slow), ("channel", fast)])
        for kind, server in servers.items()
    }
    for stream in streams.values():
        stream.open()
    try:
        held = {"t0": publisher.begin("t0", slow)}
        order = []
        for n in range(1, 6):
            # Open the next before ending the last: the log always has one in flight.
            held[f"t{n}"] = publisher.begin(f"t{n}", slow)
            fast_id = publisher.publish(fast)
            for stream in streams.values():
                assert sse_next(stream)[0] == fast_id, f"{stream}: delivery stopped while transactions overlap"
            publisher.end(f"t{n - 1}")
            order += [fast_id, held[f"t{n - 1}"]]
            for stream in streams.values():
                assert sse_next(stream)[0] == held[f"t{n - 1}"]
        publisher.end("t5")
        for stream in streams.values():
            assert sse_next(stream)[0] == held["t5"]
    finally:
        for stream in streams.values():
            stream.close()


@pytest.mark.parametrize("transport", ["sse", "ws"])
def test_a_client_resumes_from_its_cursor_on_the_other_server_and_gets_exactly_what_it_lacks(
    site, publisher, transport
):
    _, servers = site
    channel = f"chat:resume-{uuid.uuid4().hex[:6]}"
    first, second = servers["gunicorn-gevent"], servers["daphne"]
    if transport == "ws":
        first, second = second, first  # gunicorn serves no WebSockets: resume over SSE on it instead
    held = publisher.begin("r", channel)
    before_id = publisher.publish(channel)
    if transport == "sse":
        with EventStream(first.events_url(), params=[("channel", channel), ("lastEventId", str(before_id - 2))]) as s:
            event_id, _, cursor = sse_next(s)
    else:
        socket = Socket(first, [channel], {channel: str(before_id - 2)})
        event_id, _, cursor = socket.next()
        socket.close()
    assert event_id == before_id and not Cursor.parse(cursor).covers(held)
    # Gone: the held transaction commits, and another event follows; the client comes back elsewhere.
    publisher.end("r")
    later = publisher.publish(channel)
    with EventStream(second.events_url(), params=[("channel", channel)], headers={"Last-Event-ID": cursor}) as s:
        assert [sse_next(s)[0] for _ in range(2)] == [held, later], "what it lacked, the held one first"
        with pytest.raises(AssertionError):
            s.next(timeout=1.0)  # and nothing more
    socket = Socket(second if transport == "sse" else first, [channel], {channel: cursor})
    try:
        assert [socket.next()[0] for _ in range(2)] == [held, later]
        with pytest.raises(AssertionError):
            socket.next(timeout=1.0)
    finally:
        socket.close()
