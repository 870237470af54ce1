"""End to end: the demo project under gunicorn (gevent), daphne and runserver.

Each server kind starts once per module and serves every test, so each test
uses channels of its own.  gunicorn (gevent) runs twice: on SQLite and, when
the service answers, on PostgreSQL.  Events are published by ``manage.py``
commands in processes of their own and read with httpx-sse; see
tests/support/servers.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest

from django_realtime.cursor import Cursor
from tests.support.postgres_database import scratch_database
from tests.support.servers import (
    CommandProcess,
    EventStream,
    Publisher,
    Server,
    copy_sqlite,
    manage,
    project_env,
    publish_event,
    publish_lines,
    running_server,
)
from tests.support.services import POSTGRES

pytestmark = [pytest.mark.server, pytest.mark.handlers]

POSTGRES_KIND = "gunicorn-gevent-postgres"
SERVER_KINDS = [
    "gunicorn-gevent",
    "gunicorn-realtime",
    "daphne",
    "runserver",
    pytest.param(POSTGRES_KIND, marks=pytest.mark.postgres),
]

#: Five events, the oldest four pruned, all before any server started.
PRUNED_CHANNEL = "chat:pruned"
#: One event, stored before any server started.
STORED_CHANNEL = "chat:stored"


def new_channel() -> str:
    return f"chat:{uuid.uuid4().hex}"


def data_of(events) -> list:
    return [json.loads(sse.data) for sse in events]


def ids_of(events) -> list[str]:
    """Return the event ids of *events*: their SSE ids are cursors, which may name ids in flight too."""
    return [str(Cursor.event_id(sse.id)) for sse in events]


# Fixtures ----------------------------------------------------------------


@dataclass
class Deployment:
    """A running server, and the events its database held before it started."""

    server: Server
    #: PRUNED_CHANNEL's ids; all but the last were pruned.
    pruned_ids: list[str]
    #: STORED_CHANNEL's id.
    stored_id: str


def prepare_database(env: dict[str, str]) -> tuple[list[str], str]:
    """Migrate a fresh database and store the events tests expect before the server starts.

    A hub serves resumes from memory down to its floor, the log's high-water
    mark when the hub started; below it, it reads the log, where a PruneMark
    tells an expired cursor from a quiet channel.  Events stored (and pruned)
    before the server starts are below every hub's floor, whatever order the
    tests run in.  (A hub that had buffered them would still replay them from
    memory.)
    """
    manage(env, "migrate", "--verbosity", "0")
    pruned_ids = publish_lines(env, PRUNED_CHANNEL, [1, 2, 3, 4, 5])
    manage(env, "prune_events", "--keep", "1", "--channel", PRUNED_CHANNEL, "--grace", "0")
    return pruned_ids, publish_event(env, STORED_CHANNEL, "stored")


@pytest.fixture(scope="module")
def sqlite_template(tmp_path_factory):
    """A prepared SQLite database, for every SQLite server to start from a copy."""
    path = tmp_path_factory.mktemp("template") / "db.sqlite3"
    return path, prepare_database(project_env(f"sqlite:///{path}"))


@dataclass
class PostgresDeployment(Deployment):
    admin: Any  # a psycopg connection to another database of the server
    database: str

    def connection_count(self) -> int:
        """Return how many connections the database has, not counting ours."""
        query = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
        return self.admin.execute(query, [self.database]).fetchone()[0]


@pytest.fixture(scope="module")
def postgres(tmp_path_factory) -> Iterator[PostgresDeployment]:
    """gunicorn (gevent) on a PostgreSQL database of its own, dropped afterwards."""
    with scratch_database("realtime_e2e") as (name, admin):
        env = project_env(f"postgres://postgres@{POSTGRES[0]}:{POSTGRES[1]}/{name}")
        seeded = prepare_database(env)
        log = tmp_path_factory.mktemp("postgres") / "server.log"
        with running_server("gunicorn-gevent", env, log, ["--worker-connections", "1000"]) as server:
            yield PostgresDeployment(server, *seeded, admin=admin, database=name)


@pytest.fixture(scope="module", params=SERVER_KINDS)
def deployment(request, tmp_path_factory) -> Iterator[Deployment]:
    """One server of each kind per module; the SQLite ones each on a copy of the template."""
    if request.param == POSTGRES_KIND:
        yield request.getfixturevalue("postgres")
        return
    template, seeded = request.getfixturevalue("sqlite_template")
    directory = tmp_path_factory.mktemp(request.param)
    copy_sqlite(template, directory / "db.sqlite3")
    env = project_env(f"sqlite:///{directory / 'db.sqlite3'}")
    with running_server(request.param, env, directory / "server.log") as server:
        yield Deployment(server, *seeded)


@contextmanager
def showing_output(server: Server) -> Iterator[Server]:
    """Yield *server*; print what it logged meanwhile, which pytest shows if the test fails."""
    server.check_alive()
    start = server.log_size()
    yield server
    print(f"--- {server.kind} output during the test ---\n{server.log(start)}")


@pytest.fixture
def server(deployment: Deployment) -> Iterator[Server]:
    with showing_output(deployment.server) as server:
        yield server


@pytest.fixture
def postgres_server(postgres: PostgresDeployment) -> Iterator[PostgresDeployment]:
    with showing_output(postgres.server):
        yield postgres


def stream(server: Server, *channels: str, last_event_id: str | None = None, query_id: str | None = None):
    """Return an EventStream of *channels*, resuming as a reconnecting EventSource would."""
    params = [("channel", name) for name in channels]
    if query_id is not None:
        params.append(("lastEventId", query_id))
    headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
    return EventStream(server.events_url(), params=params, headers=headers)


# Delivery ---------------------------------------------------------------

TRICKY_PAYLOADS = [
    "line\nfeed",
    "carriage\rreturn",
    "crlf\r\nend",
    "\n\r\n\r",
    "line\u2028separator",
    "next\u0085line",
    "vertical\x0btab and \x1cfile separator",
    "emoji 🎉 and a family 👩\u200d👩\u200d👧",
    "nul\x00char",
    "a surrogate pair written as one character: \U0001f600",
    "data: forged\n\nid: 666\nevent: reset\nretry: 1\n",
    " leading space",
    ":colon first",
    "",
    "x" * 65536,
    "é" * 32768,
    {"text": "a\r\nb", "list": [None, True, 1.5, -0.0, 2**64], "nested": {"\n": "\u2028"}},
    ["a", "b\n", 3],
    0,
    -12.5,
    None,
    True,
]


def test_tricky_payloads_arrive_intact(server):
    channel = new_channel()
    with stream(server, channel) as events:
        ids = publish_lines(server.env, channel, TRICKY_PAYLOADS, event="tricky")
        named = publish_event(server.env, channel, {"multi": "line\none"}, event="custom.name-1:x")
        received = events.take(len(TRICKY_PAYLOADS) + 1, timeout=10)

    assert ids_of(received) == [*ids, named]
    assert [sse.event for sse in received] == ["tricky"] * len(TRICKY_PAYLOADS) + ["custom.name-1:x"]
    assert data_of(received) == [*TRICKY_PAYLOADS, {"multi": "line\none"}]


def test_event_stream_view_ticks_every_second(server):
    with EventStream(f"{server.url}/clock/stream/") as clock:
        ticks = clock.take(2, timeout=4)

    assert [sse.event for sse in ticks] == ["tick", "tick"]
    for sse in ticks:
        datetime.fromisoformat(json.loads(sse.data)["now"])


def test_message_posted_to_the_server_reaches_streams(server):
    room = uuid.uuid4().hex
    with httpx.Client(base_url=server.url, timeout=10) as client, stream(server, f"chat:{room}") as events:
        client.get(f"/room/{room}/").raise_for_status()
        response = client.post(
            f"/room/{room}/send/",
            data={"nick": "ann", "text": "hi\nthere"},
            headers={"X-CSRFToken": client.cookies["csrftoken"]},
        )
        response.raise_for_status()
        received = events.next()

    assert received.id == response.json()["id"]
    assert json.loads(received.data) == {"nick": "ann", "text": "hi\nthere"}


def test_events_from_another_process_arrive_within_a_second(server):
    channel = new_channel()
    latencies = []
    with stream(server, channel) as events, Publisher(server.env, channel) as publisher:
        # The best of three, so that one scheduling hiccup does not fail it.
        for attempt in range(3):
            event_id, printed = publisher.send({"attempt": attempt})
            received, arrived = events.next_timed()
            assert received.id == event_id
            latencies.append(arrived - printed)

    assert min(latencies) < 1.0, f"publish_event printed → stream received: {latencies}"


def test_rolled_back_publish_is_never_delivered(server):
    channel = new_channel()
    script = f"""
from django.db import transaction
from django_realtime import publish

class Abort(Exception):
    pass

try:
    with transaction.atomic():
        publish({channel!r}, "A", event="rolled-back")
        raise Abort
except Abort:
    pass
print("published", publish({channel!r}, "B").id)
"""
    with stream(server, channel) as events:
        output = manage(server.env, "shell", "--command", script)
        b_id = next(line.split()[1] for line in output.splitlines() if line.startswith("published "))
        received = events.until_id(b_id)
        received += events.during(1.0)

    assert [(sse.event, json.loads(sse.data)) for sse in received] == [("message", "B")]


def test_one_stream_carries_several_channels_in_id_order(server):
    first, second, other = new_channel(), new_channel(), new_channel()
    with ExitStack() as stack:
        publishers = {name: stack.enter_context(Publisher(server.env, name)) for name in (first, second, other)}
        live = stack.enter_context(stream(server, first, second))
        published = []
        for number, name in enumerate([first, other, second, second, other, first]):
            event_id, _ = publishers[name].send({"channel": name, "n": number})
            published.append((event_id, name, number))
        wanted = [(event_id, number) for event_id, name, number in published if name != other]

        received = live.take(len(wanted))
        assert [(sse.id, json.loads(sse.data)["n"]) for sse in received] == wanted

        # The same merge when resuming.
        with stream(server, second, first, query_id=str(int(published[0][0]) - 1)) as replay:
            assert [(sse.id, json.loads(sse.data)["n"]) for sse in replay.take(len(wanted))] == wanted


# Resuming ---------------------------------------------------------------


def test_replay_resumes_after_last_event_id(server):
    channel = new_channel()
    with Publisher(server.env, channel) as publisher:
        with stream(server, channel) as first:
            before = [publisher.send(n)[0] for n in (1, 2)]
            assert ids_of(first.take(2)) == before
        # Disconnected: these must wait in the log.
        missed = [publisher.send(n)[0] for n in (3, 4, 5)]

        with stream(server, channel, last_event_id=before[-1]) as again:
            replayed = again.take(len(missed))
            live = publisher.send(6)[0]
            received = replayed + again.until_id(live)

    assert ids_of(received) == [*missed, live]
    assert data_of(received) == [3, 4, 5, 6]


def test_last_event_id_query_parameter_resumes_and_the_header_wins(server):
    channel = new_channel()
    ids = publish_lines(server.env, channel, ["a", "b", "c", "d"])

    with stream(server, channel, query_id=ids[0]) as by_query:
        assert ids_of(by_query.take(3)) == ids[1:]
    with stream(server, channel, query_id=ids[0], last_event_id=ids[2]) as by_header:
        assert ids_of(by_header.take(1)) == ids[3:]
        assert by_header.during(0.5) == []


def test_cursor_from_the_future_gets_a_reset_then_live_events(server):
    channel = new_channel()
    with stream(server, channel, last_event_id=str(10**15)) as events:
        reset = events.next()
        live = publish_event(server.env, channel, "after the reset")
        received = events.next()

    assert reset.event == "reset"
    info = json.loads(reset.data)
    assert info["reason"] == "unknown"
    assert info["last_event_id"] == str(10**15)
    assert info["channels"] == [channel]
    assert reset.id == info["resume_id"]
    assert (received.id, json.loads(received.data)) == (live, "after the reset")
    assert int(received.id) > int(reset.id)


def test_expired_cursor_gets_a_reset_then_the_stored_and_live_events(server, deployment):
    ids = deployment.pruned_ids  # all but the last were pruned: see prepare_database()
    cursor = str(int(ids[0]) - 1)
    with stream(server, PRUNED_CHANNEL, last_event_id=cursor) as events:
        reset, kept = events.take(2)
        live = publish_event(server.env, PRUNED_CHANNEL, "after the reset")
        received = events.next()

    assert reset.event == "reset"
    info = json.loads(reset.data)
    assert (info["reason"], info["last_event_id"], info["channels"]) == ("expired", cursor, [PRUNED_CHANNEL])
    assert reset.id == info["resume_id"]
    assert (kept.event, kept.id, json.loads(kept.data)) == ("message", ids[4], 5)
    assert (received.id, json.loads(received.data)) == (live, "after the reset")


def test_cursor_at_the_newest_pruned_event_resumes_without_a_reset(server, deployment):
    ids = deployment.pruned_ids
    with stream(server, PRUNED_CHANNEL, last_event_id=ids[3]) as events:
        kept = events.next()

    assert (kept.event, kept.id, json.loads(kept.data)) == ("message", ids[4], 5)


# Refusals and headers ---------------------------------------------------

BAD_REQUESTS = [
    pytest.param([("channel", "chat:x")], {"Last-Event-ID": "abc"}, 400, "Invalid Last-Event-ID", id="header-abc"),
    pytest.param([("channel", "chat:x")], {"Last-Event-ID": "-1"}, 400, "Invalid Last-Event-ID", id="header-negative"),
    pytest.param(
        [("channel", "chat:x")], {"Last-Event-ID": "9" * 23}, 400, "Invalid Last-Event-ID", id="header-too-big"
    ),
    pytest.param([("channel", "chat:x"), ("lastEventId", "abc")], {}, 400, "Invalid Last-Event-ID", id="query-abc"),
    pytest.param([("channel", "chat:x"), ("lastEventId", "-1")], {}, 400, "Invalid Last-Event-ID", id="query-negative"),
    pytest.param(
        [("channel", "chat:x"), ("lastEventId", "9" * 23)], {}, 400, "Invalid Last-Event-ID", id="query-too-big"
    ),
    pytest.param(
        [("channel", "chat:x"), ("lastEventId", "1\r\n")],
        {},
        400,
        "Invalid Last-Event-ID",
        id="query-crlf",
    ),
    pytest.param([("channel", "chat:x"), ("lastEventId", " 1")], {}, 400, "Invalid Last-Event-ID", id="query-space"),
    pytest.param([("channel", "a b")], {}, 400, "Invalid channel", id="channel-space"),
    pytest.param([("channel", "x\ny")], {}, 400, "Invalid channel", id="channel-newline"),
    pytest.param([("channel", "")], {}, 400, "Invalid channel", id="channel-empty"),
    pytest.param([("channel", f"chat:{n}") for n in range(17)], {}, 400, "Too many channels", id="too-many"),
    pytest.param([], {}, 400, "Give at least one channel", id="no-channel"),
    pytest.param([("channel", "secret")], {}, 403, "not allowed to subscribe to secret", id="not-public"),
    pytest.param(
        [("channel", "chat:x"), ("channel", "secret")], {}, 403, "not allowed to subscribe to secret", id="one-private"
    ),
]


@pytest.mark.parametrize(("params", "headers", "status", "message"), BAD_REQUESTS)
def test_bad_request_gets_a_plain_text_error_not_a_stream(server, params, headers, status, message):
    with httpx.Client(timeout=10) as client:
        with client.stream("GET", server.events_url(), params=params, headers=headers) as response:
            content_type = response.headers.get("content-type", "")
            # Never read a stream that should not be one: it would not end.
            assert not content_type.startswith("text/event-stream"), f"got a stream ({response.status_code})"
            body = response.read().decode()

    assert (response.status_code, content_type) == (status, "text/plain; charset=utf-8")
    assert message in body


def test_stream_refuses_post(server):
    with httpx.Client(base_url=server.url, timeout=10) as client:
        client.get("/room/lobby/").raise_for_status()  # for the CSRF cookie, checked first
        response = client.post(
            "/events/", params={"channel": "chat:x"}, headers={"X-CSRFToken": client.cookies["csrftoken"]}
        )

    assert response.status_code == 405


def test_stream_headers_turn_off_caching_buffering_and_compression(server):
    with EventStream(
        server.events_url(), params=[("channel", "chat:x")], headers={"Accept-Encoding": "gzip"}
    ) as events:
        headers = events.response.headers
        assert events.retry == 3000

    assert events.response.status_code == 200
    assert headers["content-type"] == "text/event-stream; charset=utf-8"
    assert headers["cache-control"] == "no-cache"
    assert headers["x-accel-buffering"] == "no"
    assert "content-encoding" not in headers


# PostgreSQL, gunicorn (gevent) only -------------------------------------

STREAMS = 100


@pytest.mark.postgres
def test_idle_streams_hold_no_database_connections(postgres_server):
    server = postgres_server.server
    with ExitStack() as stack:
        streams = []
        for _ in range(STREAMS):
            # Resuming from 0, below the hub's floor, each stream reads the log
            # itself before it goes idle.
            events = stack.enter_context(stream(server, STORED_CHANNEL, last_event_id="0"))
            assert events.next(timeout=10).id == postgres_server.stored_id
            streams.append(events)

        idle = postgres_server.connection_count()
        live = publish_event(server.env, STORED_CHANNEL, "to all")
        received = [events.next(timeout=10) for events in streams]
        after = postgres_server.connection_count()

    assert idle <= 5, f"{idle} connections to the database with {STREAMS} idle streams"
    assert after <= 5, f"{after} connections to the database after delivering to {STREAMS} streams"
    assert {(sse.id, sse.data) for sse in received} == {(live, '"to all"')}


@pytest.mark.postgres
def test_an_event_committed_after_a_later_id_comes_when_it_commits_and_the_later_one_at_once(postgres_server):
    # The commit-order trap: an id drawn first but committed last (docs/architecture.md#commit-order).
    server = postgres_server.server
    channel = new_channel()
    script = f"""
import sys
from django.db import transaction
from django_realtime import publish

with transaction.atomic():
    print("published", publish({channel!r}, "slow").id, flush=True)
    sys.stdin.readline()
print("committed", flush=True)
"""
    with stream(server, channel) as events, CommandProcess(server.env, "shell", "--command", script) as slow:
        slow_id = slow.read_line(prefix="published ")[0].split()[1]
        fast_id = publish_event(server.env, channel, "fast")
        # The later id is delivered while the earlier one is still in flight; its cursor names that one.
        fast = events.until_id(fast_id)
        slow.write_line("commit")
        slow.read_line(prefix="committed")
        late = events.until_id(slow_id)

    assert int(fast_id) > int(slow_id)
    assert ids_of(fast + late) == [fast_id, slow_id]
    assert not Cursor.parse(fast[-1].id).covers(int(slow_id)), "a resume from the later one replays the earlier"
    assert Cursor.parse(late[-1].id).covers(int(slow_id)) and Cursor.parse(late[-1].id).covers(int(fast_id))
