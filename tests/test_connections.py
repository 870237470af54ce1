"""Database connections are a bounded resource: idle streams hold none, ATOMIC_REQUESTS or not."""

from __future__ import annotations

import json
from contextlib import ExitStack

import pytest

from tests.support.postgres_database import scratch_database
from tests.support.servers import EventStream, manage, project_env, publish_event, publish_lines, running_server
from tests.support.services import POSTGRES

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


# Fewer than the shared PostgreSQL's max_connections (100), even if the bound under test broke.
CLIENTS = 60
CATCH_UP_CONNECTIONS = 2


async def resume(port: int, cursor: str, want: bytes, timeout: float) -> bool:
    """Open an SSE stream resuming after *cursor*; return whether *want* (an id line) arrives in time."""
    import asyncio

    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    try:
        writer.write(
            f"GET /events/?channel=demo:storm HTTP/1.1\r\nHost: 127.0.0.1\r\nLast-Event-ID: {cursor}\r\n\r\n".encode()
        )
        received = b""
        async with asyncio.timeout(timeout):
            while want not in received:
                chunk = await reader.read(65536)
                if not chunk:
                    return False
                received += chunk
        return True
    finally:
        writer.close()


@pytest.mark.parametrize("kind", ["gunicorn-gevent", "daphne"])
def test_a_reconnect_storm_reads_the_log_on_at_most_catch_up_connections(kind, tmp_path):
    import asyncio
    import threading
    import time

    with scratch_database("realtime_storm") as (name, admin):
        env = project_env(f"postgres://postgres@{POSTGRES[0]}:{POSTGRES[1]}/{name}")
        env["REALTIME_JSON"] = json.dumps({"PRUNE_INTERVAL": None, "CATCH_UP_CONNECTIONS": CATCH_UP_CONNECTIONS})
        manage(env, "migrate", "--verbosity", "0")
        # Stored before the server starts: below its hub's floor, so every resume reads the log.
        first, *_, last = publish_lines(env, "demo:storm", list(range(20)))
        with running_server(kind, env, tmp_path / "server.log", _worker_connections(kind)) as server:
            try:
                port = int(server.url.rsplit(":", 1)[1])
                most = 0
                done = threading.Event()

                def sample():
                    nonlocal most
                    while not done.is_set():
                        most = max(most, connections_to(admin, name))
                        time.sleep(0.01)

                sampler = threading.Thread(target=sample)
                sampler.start()

                async def storm():
                    want = f"id: {last}\n".encode()
                    return await asyncio.gather(*(resume(port, first, want, 60) for _ in range(CLIENTS)))

                try:
                    results = asyncio.run(storm())
                finally:
                    done.set()
                    sampler.join()
            finally:
                print(f"--- {kind} output ---\n{server.log()}")
    assert all(results), f"{results.count(False)} of {CLIENTS} clients did not get their replay"
    # The hub's reader, the catch-up turns, and a moment's overlap of a closing connection.
    assert most <= 1 + CATCH_UP_CONNECTIONS + 1, f"{most} connections at once for {CLIENTS} resuming clients"


def _worker_connections(kind: str) -> list[str]:
    return ["--worker-connections", "1000"] if kind == "gunicorn-gevent" else []
