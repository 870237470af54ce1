"""Faults of the database under real servers: streams keep their keepalives, lose nothing, and never hang.

Each test runs a server of the demo project on a PostgreSQL database of its
own, reached through a TCP proxy the test owns (``tests/tcp_proxy.py``); it
publishes straight to PostgreSQL, past the proxy, as another server would,
and breaks the proxy: refused (a database that is down) or black-holed (a
partition: connections accepted, nothing answered).  The shared PostgreSQL
server itself is never touched.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.support.postgres_database import scratch_database
from tests.support.servers import EventStream, Server, manage, project_env, publish_lines, running_server
from tests.support.services import POSTGRES
from tests.support.tcp_proxy import TCPProxy

pytestmark = [pytest.mark.server, pytest.mark.postgres]

#: Seconds a query of the hub may take before the hub gives up on it (READ_TIMEOUT).
READ_TIMEOUT = 1.0
#: Seconds the database stays broken.
OUTAGE = 4.0
#: Seconds, after the database's return, within which events must arrive: 1 s, plus the noise of a busy machine.
RESUME_WITHIN = 2.0
SERVERS = ["gunicorn-gevent", "gunicorn-realtime", "daphne"]


@dataclass
class Setup:
    server: Server
    proxy: TCPProxy
    #: The environment of commands that reach PostgreSQL directly, as another server would.
    direct: dict[str, str]

    def publish(self, channel: str, *values: object) -> list[str]:
        return publish_lines(self.direct, channel, list(values))

    def health(self) -> tuple[int, dict]:
        response = httpx.get(f"{self.server.url}/events/health/", timeout=5)
        return response.status_code, response.json()


@pytest.fixture(params=SERVERS)
def setup(request, tmp_path) -> Iterator[Setup]:
    with scratch_database("realtime_faults") as (name, _admin):
        direct = project_env(f"postgres://postgres@{POSTGRES[0]}:{POSTGRES[1]}/{name}")
        manage(direct, "migrate", "--verbosity", "0")
        with TCPProxy(POSTGRES) as proxy:
            env = project_env(f"postgres://postgres@127.0.0.1:{proxy.port}/{name}")
            env["REALTIME_JSON"] = json.dumps({"READ_TIMEOUT": READ_TIMEOUT, "POLL_INTERVAL": 0.1, "RETRY": 500})
            with running_server(request.param, env, tmp_path / "server.log") as server:
                try:
                    yield Setup(server, proxy, direct)
                finally:
                    print(f"--- {server.kind} output ---\n{server.log()}")


def open_stream(setup: Setup, channel: str, last_event_id: str | None = None) -> EventStream:
    """Return a stream of *channel*, which opens as a ``with`` block begins."""
    headers = {} if last_event_id is None else {"Last-Event-ID": last_event_id}
    return EventStream(setup.server.events_url(), params=[("channel", channel)], headers=headers)


@pytest.mark.parametrize("fault", ["blackhole", "refuse"])
def test_streams_keep_their_keepalives_through_an_outage_and_get_every_event_after_it(setup, fault):
    with open_stream(setup, "demo:faults") as events:
        (first,) = setup.publish("demo:faults", "before")
        assert events.next(timeout=10).id == first
        assert setup.health()[0] == 200

        getattr(setup.proxy, fault)()
        broken = time.monotonic()
        during = setup.publish("demo:faults", "during 1", "during 2")
        time.sleep(max(0.0, broken + OUTAGE - time.monotonic()))
        status, health = setup.health()
        setup.proxy.forward()
        back = time.monotonic()
        received = [events.next_timed(timeout=10) for _ in during]

    keepalives = [t for t in events.comments if broken < t < back]
    assert len(keepalives) >= OUTAGE - 1, f"{len(keepalives)} keepalives in a {OUTAGE:g} s outage (KEEPALIVE 1 s)"
    assert [sse.id for sse, _ in received] == during
    assert [json.loads(sse.data) for sse, _ in received] == ["during 1", "during 2"]
    late = received[-1][1] - back
    print(f"delivered {late:.3f} s after the database's return")
    assert late < RESUME_WITHIN
    assert status == 503, health
    assert health["status"] == "unavailable" and health["error"], health
    assert setup.health()[0] == 200


def test_a_stream_whose_set_up_cannot_read_the_log_ends_and_its_client_resumes(setup):
    with open_stream(setup, "demo:setup") as events:
        (known,) = setup.publish("demo:setup", "seen by the hub")
        assert events.next(timeout=10).id == known
    setup.proxy.refuse()
    # A client coming over from a server that is ahead: its cursor is newer than this server's hub.
    ahead, later = setup.publish("demo:setup", "only the other server saw it", "after the outage")

    resumed = open_stream(setup, "demo:setup", last_event_id=ahead)
    try:
        resumed.open()
        assert resumed.ended(timeout=5), "the stream neither ended nor recovered while the log could not be read"
    finally:
        resumed.close()
    setup.proxy.forward()
    with open_stream(setup, "demo:setup", last_event_id=ahead) as events:
        assert [sse.id for sse in events.take(1, timeout=10)] == [later]
