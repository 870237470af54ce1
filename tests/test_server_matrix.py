"""The server matrix: each server Django teams deploy on serves the SSE end-to-end case, and the ASGI ones WebSockets.

gunicorn (gevent), daphne, uvicorn, gunicorn with ``uvicorn_worker.UvicornWorker``,
hypercorn, granian, and ``runserver`` with daphne (ASGI) and without it
(WSGI, a thread per request), each on a SQLite database of its own: the
stream's headers, payloads that try to break the framing, replay with
``Last-Event-ID``, a departed client noticed within about one ``KEEPALIVE``
(its seat given back), and under ASGI no OS thread per idle stream.  The
longer end-to-end suite, tests/test_servers.py, runs on gunicorn, daphne and
runserver; docs/deployment.md gives each server's command.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import EventStream, Server, manage, project_env, publish_lines, running_server
from tests.support.websocket import receive, request, subscribe

pytestmark = [pytest.mark.server, pytest.mark.matrix]

#: (server, whether it serves ASGI, extra environment)
SERVERS = {
    "gunicorn-gevent": (False, {}),
    "gunicorn-realtime": (False, {}),
    "daphne": (True, {}),
    "uvicorn": (True, {}),
    "gunicorn-uvicorn": (True, {}),
    "hypercorn": (True, {}),
    "granian": (True, {}),
    "runserver": (True, {}),
    "runserver-wsgi": (False, {"DEMO_WITHOUT_DAPHNE": "1"}),
}
#: The servers that speak ASGI, for the tests that only they can pass.
ASGI = [kind for kind, (asgi, _) in SERVERS.items() if asgi]
KEEPALIVE = 1.0
#: Idle streams for the thread count, and the most threads they may add under ASGI (thread pools of fixed size).
IDLE_STREAMS = 60
MAX_EXTRA_THREADS = 12
#: Streams of the demo's @event_stream clock view, whose generators sleep: a thread each.
CLOCK_STREAMS = 30
PAYLOADS = [
    "line\nfeed",
    "carriage\rreturn",
    "crlf\r\nend",
    "line\u2028separator",
    "emoji 🎉",
    "data: forged\n\nid: 666\nevent: reset\nretry: 1\n",
    " leading space",
    "",
    "x" * 65536,
    {"nested": {"\n": "\u2028"}, "list": [None, True, 1.5]},
]


@pytest.fixture(scope="module", params=list(SERVERS))
def server(request, tmp_path_factory) -> Iterator[Server]:
    kind = request.param
    _asgi, extra = SERVERS[kind]
    directory = tmp_path_factory.mktemp(kind)
    env = {**project_env(f"sqlite:///{directory / 'db.sqlite3'}"), "REALTIME_KEEPALIVE": str(KEEPALIVE), **extra}
    manage(env, "migrate", "--verbosity", "0")
    command = "runserver" if kind == "runserver-wsgi" else kind
    with running_server(command, env, directory / "server.log") as running:
        try:
            yield running
        finally:
            print(f"--- {kind} output ---\n{running.log()[-5000:]}")


def streams(server: Server) -> int:
    import httpx

    return httpx.get(f"{server.url}/events/health/", timeout=5).json()["streams"]


def threads(server: Server) -> int:
    """Return the OS threads of the server's processes (gunicorn's arbiter and worker, or the one process)."""
    pid = server.process.pid
    pids = [pid, *map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]
    total = 0
    for each in pids:
        for line in Path(f"/proc/{each}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                total += int(line.split()[1])
    return total


def open_raw_stream(server: Server, channel: str) -> socket.socket:
    port = int(server.url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"GET /events/?channel={channel} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    return sock


def wait_for(condition, timeout: float) -> float | None:
    """Return the seconds *condition* took to hold, or None if it did not within *timeout*."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if condition():
            return time.monotonic() - start
        time.sleep(0.05)
    return None


def test_sse_headers_payloads_and_replay(server):
    channel = f"chat:{uuid.uuid4().hex}"
    with EventStream(server.events_url(), params=[("channel", channel)]) as events:
        headers = events.response.headers
        assert headers["content-type"] == "text/event-stream; charset=utf-8"
        assert headers["cache-control"] == "no-cache"
        assert headers["x-accel-buffering"] == "no"
        ids = publish_lines(server.env, channel, PAYLOADS, event="tricky")
        received = events.take(len(PAYLOADS), timeout=10)
    assert [sse.id for sse in received] == ids
    assert [json.loads(sse.data) for sse in received] == PAYLOADS
    resumed = EventStream(server.events_url(), params=[("channel", channel)], headers={"Last-Event-ID": ids[4]})
    with resumed:
        assert [sse.id for sse in resumed.take(len(ids) - 5, timeout=10)] == ids[5:]


def test_a_departed_client_is_noticed_within_about_one_keepalive(server):
    assert wait_for(lambda: streams(server) == 0, 10) is not None, "streams of earlier tests still open"
    sock = open_raw_stream(server, f"chat:{uuid.uuid4().hex}")
    assert wait_for(lambda: streams(server) == 1, 5) is not None
    sock.close()
    took = wait_for(lambda: streams(server) == 0, 10 * KEEPALIVE)
    assert took is not None, "the departed client's stream is still open"
    # One keepalive period, and a margin for a busy machine.
    print(f"{server.kind}: the departed client noticed after {took:.2f}s")
    assert took < KEEPALIVE + 1.0, f"noticed after {took:.1f}s"


@pytest.mark.parametrize("server", ASGI, indirect=True)
def test_idle_streams_hold_no_thread_each_under_asgi(server):
    before = threads(server)
    socks = [open_raw_stream(server, "chat:idle") for _ in range(IDLE_STREAMS)]
    try:
        assert wait_for(lambda: streams(server) >= IDLE_STREAMS, 10) is not None
        time.sleep(1)
        added = threads(server) - before
    finally:
        for sock in socks:
            sock.close()
    assert added <= MAX_EXTRA_THREADS, f"{IDLE_STREAMS} idle streams added {added} OS threads"


@pytest.mark.parametrize("server", ASGI, indirect=True)
def test_an_event_stream_view_holds_one_thread_its_generators_under_asgi(server):
    before = threads(server)
    port = int(server.url.rsplit(":", 1)[1])
    socks = []
    try:
        for _ in range(CLOCK_STREAMS):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(b"GET /clock/stream/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
            socks.append(sock)
        time.sleep(1)
        added = threads(server) - before
    finally:
        for sock in socks:
            sock.close()
    # The generator may block, so it has a thread; the request itself keeps none.
    assert added <= CLOCK_STREAMS + MAX_EXTRA_THREADS, f"{CLOCK_STREAMS} @event_stream streams added {added} threads"


@pytest.mark.parametrize("server", ASGI, indirect=True)
def test_websocket_subscribe_and_receive_under_asgi(server):
    from websockets.sync.client import connect

    port = int(server.url.rsplit(":", 1)[1])
    channel = f"chat:{uuid.uuid4().hex}"
    with connect(f"ws://127.0.0.1:{port}/ws/", origin=f"http://127.0.0.1:{port}", open_timeout=10) as ws:
        subscribe(ws, channel)
        ids = publish_lines(server.env, channel, ["one", "two"])
        messages = [receive(ws) for _ in range(2)]
        assert [(m["id"], m["data"]) for m in messages] == list(zip(ids, ["one", "two"], strict=True))
        assert request(ws, {"type": "ping"}) == {"type": "pong"}
