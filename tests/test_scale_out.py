"""Scale-out end to end: concurrent publisher processes, two servers, both transports, every backend.

On a fresh PostgreSQL database, gunicorn (gevent, one worker) and daphne
serve the demo project side by side.  52 subscribers listen on two channels
(or both): 18 SSE streams on gunicorn (WSGI serves no WebSockets), 17 SSE
streams and 17 WebSockets on daphne, each from the log's newest id.  Then 4
publisher processes publish 40 events each at once, in transactions that
commit at once, stay open for up to a second before they commit (so ids
commit out of order), or roll back.  Six more subscribers join from the same
id while they run, and every fourth subscriber reconnects every few events
with the cursor of the last one (``Last-Event-ID``, ``last_id``).  Every
subscriber must receive exactly the committed events of its channels: each
once, in commit order, none rolled back, each with a cursor that covers it
and what came before.  The same
runs with the notification engine disrupted mid-run: the PostgreSQL
listeners' connections terminated, Redis restarted.  Everything is the
test's own: the database, and for the redis cases a redis-server of its own
(tests/support/redis_server.py), which it may stop without harm to anyone else.  See
tests/support/scale_out.py and tests/scale_out_publisher.py.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from contextlib import ExitStack, closing
from dataclasses import dataclass
from typing import Any

import pytest

from django_realtime.backends.redis import CHANNEL as REDIS_CHANNEL
from tests.support.mariadb_database import scratch_mariadb
from tests.support.postgres_database import SERVER, scratch_database
from tests.support.redis_server import RedisServer
from tests.support.scale_out import (
    PUBLISHER_RUN_TIMEOUT,
    PUBLISHER_START_TIMEOUT,
    Outcome,
    PublisherProcess,
    Subscriber,
    listening_connections,
    redis_subscribers,
    terminate_listeners,
)
from tests.support.servers import Server, manage, project_env, publish_lines, running_servers
from tests.support.services import MARIADB, POSTGRES, require_mariadb
from tests.support.subscribers import SubscriberPool

pytestmark = [pytest.mark.server, pytest.mark.postgres]

CHANNELS = ("chat:scale-a", "chat:scale-b")
#: Subscribers per server and transport, connected before publishing starts; gunicorn serves SSE only.
SUBSCRIBERS = {("gunicorn-gevent", "sse"): 18, ("daphne", "sse"): 17, ("daphne", "ws"): 17}
#: ...and connected while the publishers run, from the same id.
LATE_SUBSCRIBERS = {("gunicorn-gevent", "sse"): 2, ("daphne", "sse"): 2, ("daphne", "ws"): 2}
#: Events after which a reconnecting subscriber reconnects (with the cursor of the last one).
RECONNECT_EVERY = 11
PUBLISHERS = 4
EVENTS_PER_PUBLISHER = 40
#: Transactions the publishers have ended, together, when late subscribers join and the engine is disrupted.
MIDWAY = 12
#: Seconds every subscriber has, once the publishers are done, to hold every committed event.
DELIVERY_TIMEOUT = 30.0
#: Seconds to go on listening after that, for a late duplicate or a rolled-back event.
GRACE = 0.5
#: Seconds the servers have, after delivery, to be listening again (the backends' backoff tops out at 5 s).
RELISTEN_TIMEOUT = 10.0
#: Seconds the test's Redis stays down.
REDIS_DOWNTIME = 1.5
#: The publishers' seeds (publisher i gets seed + i): a different, reproducible mix in each scenario.
SEEDS = {None: 100, "terminate-listener": 300, "restart-redis": 400}


@dataclass
class Database:
    name: str
    url: str
    admin: Any  # autocommit psycopg connection to the server's "test" database (PostgreSQL only)
    log: Any  # autocommit DB-API connection to this database

    def newest_id(self) -> int:
        cursor = self.log.cursor()
        cursor.execute("SELECT coalesce(max(id), 0) FROM django_realtime_event")
        return cursor.fetchone()[0]


def migrated(url: str) -> None:
    """Migrate the database at *url*, and give it events on CHANNELS that nobody may receive."""
    env = project_env(url)
    manage(env, "migrate", "--verbosity", "0")
    # Below every subscriber's cursor: delivering one of them is a bug.
    seed = "from django_realtime import publish\nfor n in range(3):\n"
    seed += "".join(f"    publish({channel!r}, {{'seed': n}}, event='scale')\n" for channel in CHANNELS)
    manage(env, "shell", "--command", seed)


@pytest.fixture(scope="module")
def database() -> Iterator[Database]:
    """A fresh PostgreSQL database, migrated and seeded; dropped afterwards."""
    import psycopg

    with scratch_database("realtime_scale") as (name, admin):
        url = f"postgres://postgres@{POSTGRES[0]}:{POSTGRES[1]}/{name}"
        migrated(url)
        with closing(psycopg.connect(f"{SERVER}/{name}", autocommit=True, connect_timeout=5)) as log:
            yield Database(name, url, admin, log)


@pytest.fixture(scope="module")
def mariadb_database() -> Iterator[Database]:
    """A fresh MariaDB database, migrated and seeded; dropped afterwards."""
    require_mariadb()
    import MySQLdb

    with scratch_mariadb("realtime_scale") as url:
        name = url.rsplit("/", 1)[1]
        migrated(url)
        log = MySQLdb.connect(host=MARIADB[0], port=MARIADB[1], user="root", database=name, connect_timeout=5)
        log.autocommit(True)
        with closing(log):
            yield Database(name, url, None, log)


def subscribers(spread: dict[tuple[str, str], int], servers: dict[str, Server], cursor: int, **kwargs):
    """Return the subscribers *spread* asks for, on channel a, b or both in turn; every fourth reconnects
    with the cursor of its last event every RECONNECT_EVERY events, as a client whose connection drops."""
    choices = [CHANNELS[:1], CHANNELS[1:], CHANNELS]
    return [
        Subscriber(
            transport,
            servers[kind],
            choices[index % len(choices)],
            cursor,
            reconnect_every=RECONNECT_EVERY if index % 4 == 3 else 0,
            **kwargs,
        )
        for (kind, transport), count in spread.items()
        for index in range(count)
    ]


def wait_for_transactions(publishers: list[PublisherProcess], count: int) -> None:
    deadline = time.monotonic() + PUBLISHER_RUN_TIMEOUT
    while sum(len(p.transactions) for p in publishers) < count:
        if time.monotonic() > deadline or all(p.ended.is_set() for p in publishers):
            raise AssertionError(f"the publishers ended fewer than {count} transactions")
        time.sleep(0.01)


def wait_for_listeners(database: Database, redis: RedisServer | None, count: int) -> int:
    """Wait until *count* processes listen for wake-ups, on *redis* if given; return how many do."""
    deadline = time.monotonic() + RELISTEN_TIMEOUT
    while True:
        if redis is None:
            listening = listening_connections(database.admin, database.name)
        else:
            listening = redis_subscribers(redis, REDIS_CHANNEL)
        if listening >= count or time.monotonic() > deadline:
            return listening
        time.sleep(0.1)


def disrupt(kind: str | None, database: Database, redis: RedisServer | None, publishers: list[PublisherProcess]) -> str:
    """Disrupt the notification engine (the test's own database or Redis) while the publishers run; say what."""
    if kind is None:
        return "nothing"
    if kind == "terminate-listener":
        terminated = terminate_listeners(database.admin, database.name)
        assert terminated >= 1, "no LISTEN connection to terminate"
        done = f"terminated {terminated} LISTEN connections"
    else:
        assert redis is not None, f"{kind} needs the test's own Redis"
        redis.restart(REDIS_DOWNTIME)
        done = f"restarted the test's Redis on port {redis.port}, down for {REDIS_DOWNTIME}s"
    still_running = sum(not p.done.is_set() for p in publishers)
    assert still_running, f"{done}, but only after every publisher had finished"
    return f"{done} while {still_running} publishers ran"


SCENARIOS = [
    pytest.param("database", "postgres", None, id="postgres"),
    pytest.param("database", "postgres", "terminate-listener", id="postgres-listener-terminated"),
    # Redis without a disruption is the first part of this run, before the restart.
    pytest.param("database", "redis", "restart-redis", id="redis-restarted"),
    # MySQL and MariaDB: InnoDB's commit-order rule, polled (Redis wake-ups on MariaDB: bench/mariadb.py).
    pytest.param("mariadb_database", "polling", None, id="mariadb-polling"),
]


@pytest.mark.parametrize(("on", "backend", "disruption"), SCENARIOS)
def test_every_subscriber_receives_every_committed_event_once_in_order(request, on, tmp_path, backend, disruption):
    database = request.getfixturevalue(on)
    cursor = database.newest_id()
    marks = {"start": time.monotonic()}
    with ExitStack() as stack:
        # Its own Redis, stopped last: the servers and publishers reach no other, and
        # the listeners it counts are theirs alone.
        redis = stack.enter_context(RedisServer(tmp_path)) if backend == "redis" else None
        env = {
            **project_env(database.url),
            "REALTIME_BACKEND": backend,
            # Keepalives far apart: nothing but the backend's wake-ups (and its
            # fallback polling) may make a hub read the log during the test.
            "REALTIME_KEEPALIVE": "120",
        }
        if redis is not None:
            env["REDIS_URL"] = redis.url
        servers = stack.enter_context(running_servers(["gunicorn-gevent", "daphne"], env, tmp_path))
        pool = stack.enter_context(SubscriberPool())
        publishers = []
        for index in range(PUBLISHERS):
            seed = SEEDS[disruption] + (100 if backend == "redis" else 0) + (1000 if on != "database" else 0) + index
            publisher = PublisherProcess(env, f"p{index}", seed, EVENTS_PER_PUBLISHER, CHANNELS, tmp_path)
            stack.callback(publisher.kill)
            publishers.append(publisher)
        marks["servers up"] = time.monotonic()
        pool.start(subscribers(SUBSCRIBERS, servers, cursor))
        pool.wait_ready()
        marks["subscribed"] = time.monotonic()
        deadline = time.monotonic() + PUBLISHER_START_TIMEOUT
        for publisher in publishers:
            publisher.wait_ready(deadline)
        for publisher in publishers:
            publisher.go()
        wait_for_transactions(publishers, MIDWAY)
        pool.start(subscribers(LATE_SUBSCRIBERS, servers, cursor, late=True))
        done = disrupt(disruption, database, redis, publishers)
        deadline = time.monotonic() + PUBLISHER_RUN_TIMEOUT
        for publisher in publishers:
            publisher.finish(deadline)
        marks["published"] = time.monotonic()
        outcome = Outcome.of(publishers)
        pool.wait_until(outcome, DELIVERY_TIMEOUT)
        marks["delivered"] = time.monotonic()
        time.sleep(GRACE)
        problems = [problem for subscriber in pool.subscribers for problem in subscriber.problems(outcome)]
        # Polling the log would deliver everything too: the listeners must be back.
        listening = len(servers) if backend == "polling" else wait_for_listeners(database, redis, len(servers))
        if listening < len(servers):
            problems.append(f"{listening} of {len(servers)} servers listen for wake-ups {RELISTEN_TIMEOUT}s later")
        for server in servers.values():
            server.check_alive()
    marks["stopped"] = time.monotonic()

    latencies = sorted(t for subscriber in pool.subscribers for t in subscriber.latencies(outcome))
    summary = (
        f"{backend}, disruption: {done}; {len(outcome.committed)} events committed "
        f"({len(outcome.committed_ids(CHANNELS[0]))} on {CHANNELS[0]}), {len(outcome.rolled_back)} rolled back; "
        f"{len(pool.subscribers)} subscribers from id {cursor}; commit to arrival: "
        f"p50 {statistics.median(latencies or [0]):.3f}s, max {max(latencies or [0]):.3f}s; seconds: "
        + ", ".join(f"{b} {marks[b] - marks[a]:.1f}" for a, b in zip(marks, list(marks)[1:], strict=False))
    )
    print(summary)
    if problems:
        for server in servers.values():
            print(f"--- {server.kind} output ---\n{server.log()[-6000:]}")
        for publisher in publishers:
            print(f"--- publisher {publisher.name} ---\n{publisher.transactions}\n{publisher.stderr()[-3000:]}")
    assert not problems, f"{summary}\n" + "\n".join(problems[:40])
    assert outcome.rolled_back, "no transaction rolled back: the test proves less than it says"
    assert sum(subscriber.reconnected for subscriber in pool.subscribers) >= 10, "too few reconnects to prove them"


#: Events waiting for the reconnecting subscriber below: more than it reads per connection (RECONNECT_EVERY)
#: and the 16 messages the ``websockets`` client queues by default, together.
BACKLOG = 40


def test_a_reconnecting_websocket_subscriber_closes_each_connection_cleanly_behind_a_backlog(database, tmp_path):
    """A subscriber that leaves with unread events queued must still complete the closing handshake.

    Otherwise it waits out the client's close timeout (10 s) on each
    reconnection, and under load falls ever further behind: a slow test
    client that the scale-out test would report as events missing.
    """
    channel = "chat:scale-backlog"
    env = project_env(database.url)
    cursor = database.newest_id()
    docs = [{"publisher": "p0", "n": n} for n in range(BACKLOG)]
    ids = [int(i) for i in publish_lines(env, channel, docs, event="scale")]
    outcome = Outcome(dict(zip(ids, [(channel, doc) for doc in docs], strict=True)), {}, dict.fromkeys(ids, 0.0))
    with running_servers(["daphne"], env, tmp_path) as servers, SubscriberPool() as pool:
        subscriber = Subscriber("ws", servers["daphne"], (channel,), cursor, reconnect_every=RECONNECT_EVERY)
        pool.start([subscriber])
        delivered = pool.wait_until(outcome, DELIVERY_TIMEOUT * 2)
    left = [connection for connection in subscriber.connections if connection.leaving is not None]
    assert delivered, subscriber.problems(outcome)
    assert not subscriber.problems(outcome)
    assert len(left) == BACKLOG // RECONNECT_EVERY
    assert [str(c) for c in left if c.close_code != 1000] == []
