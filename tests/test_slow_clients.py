"""A client that stops reading is cut off after SSE_SEND_TIMEOUT, and the others go on.

Under gunicorn (gevent), under the ASGI servers whose send waits for the
client (uvicorn, granian), and under daphne, whose send never waits (the
stream watches Twisted's write buffer itself).
"""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from tests.support.servers import EventStream, manage, project_env, publish_lines, running_server

pytestmark = pytest.mark.server

SEND_TIMEOUT = 1.0
#: Enough data to fill the kernel's buffers on both ends many times over.
EVENTS = 40
SIZE = 150_000


def health(url: str) -> dict:
    return httpx.get(f"{url}/events/health/", timeout=5).json()


@pytest.mark.parametrize("kind", ["gunicorn-gevent", "gunicorn-realtime", "daphne", "uvicorn", "granian"])
def test_a_client_that_stops_reading_is_cut_off_and_resumes_with_nothing_lost(tmp_path, kind):
    env = project_env(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    env["REALTIME_JSON"] = json.dumps({"SSE_SEND_TIMEOUT": SEND_TIMEOUT, "PRUNE_INTERVAL": None})
    manage(env, "migrate", "--verbosity", "0")
    with running_server(kind, env, tmp_path / "server.log") as server:
        try:
            port = int(server.url.rsplit(":", 1)[1])
            stalled = socket.socket()
            stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stalled.connect(("127.0.0.1", port))
            stalled.sendall(b"GET /events/?channel=demo:slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert stalled.recv(100).startswith(b"HTTP/1.1 200")  # and then it never reads again
            with EventStream(server.events_url(), params=[("channel", "demo:slow")]) as reader:
                ids = publish_lines(env, "demo:slow", ["x" * SIZE] * EVENTS)
                # The client that reads gets everything, while the other's write is stuck.
                assert [sse.id for sse in reader.take(EVENTS, timeout=30)] == ids
                deadline = time.monotonic() + 10 * SEND_TIMEOUT
                while (status := health(server.url))["streams"] > 1 and time.monotonic() < deadline:
                    time.sleep(0.1)
            assert status["streams"] <= 1, status  # the stalled stream's seat is back
            assert status["slow_clients_closed"] == 1, status
            stalled.close()
            # The cut-off client reconnects with the last id it parsed, and misses nothing.
            resumed = EventStream(
                server.events_url(), params=[("channel", "demo:slow")], headers={"Last-Event-ID": "0"}
            )
            with resumed:
                assert [sse.id for sse in resumed.take(EVENTS, timeout=30)] == ids
        finally:
            print(f"--- server output ---\n{server.log()}")
