"""Database connections are a bounded resource: idle streams hold none, ATOMIC_REQUESTS or not."""

from __future__ import annotations

import json
from contextlib import ExitStack

import pytest

from tests.postgres_database import scratch_database
from tests.servers import EventStream, manage, project_env, publish_event, running_server
from tests.services import POSTGRES

pytestmark = [pytest.mark.server, pytest.mark.postgres]

STREAMS = 30


def connections_to(admin, database: str) -> int:
    query = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
    return admin.execute(query, [database]).fetchone()[0]


@pytest.mark.parametrize("kind", ["gunicorn-gevent", "daphne"])
def test_idle_streams_hold_no_connection_with_atomic_requests_on(kind, tmp_path):
    with scratch_database("realtime_conns") as (name, admin):
        env = project_env(f"postgres://postgres@{POSTGRES[0]}:{POSTGRES[1]}/{name}")
        env["DJANGO_ATOMIC_REQUESTS"] = "1"
        env["REALTIME_JSON"] = json.dumps({"PRUNE_INTERVAL": None})
        manage(env, "migrate", "--verbosity", "0")
        with running_server(kind, env, tmp_path / "server.log") as server, ExitStack() as stack:
            try:
                streams = [
                    stack.enter_context(EventStream(server.events_url(), params=[("channel", "demo:conns")]))
                    for _ in range(STREAMS)
                ]
                published = publish_event(env, "demo:conns", "to all")
                for events in streams:
                    assert events.next(timeout=10).id == published
                held = connections_to(admin, name)
            finally:
                print(f"--- {kind} output ---\n{server.log()}")
    # The hub's reader, and a moment's overlap of a closing one; never one per stream.
    assert held <= 3, f"{held} connections for {STREAMS} idle streams"
