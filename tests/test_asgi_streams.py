"""SSE streams under daphne and uvicorn that wait parked on the event loop (streams.OnLoop, daphne_server.sse_writer,
uvicorn_server).

Real server processes serving the demo, raw sockets as clients: what each
client reads is checked event by event, and the health check's ``parked``
tells whether the streams wait parked.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import time

import httpx
import pytest

from tests.support.servers import Publisher, manage, project_env, publish_event, running_server
from tests.test_gunicorn_worker import (
    assert_each_ends_with_a_parting_retry,
    delivery,
    events_in,
    open_stream,
    read_until,
)

#: The servers whose connections a parked stream writes to: daphne, and uvicorn with each of its HTTP protocols.
SERVERS = {
    "daphne": ("daphne", ()),
    "uvicorn-h11": ("uvicorn", ()),
    "uvicorn-httptools": ("uvicorn", ("--http", "httptools")),
}

pytestmark = [pytest.mark.server, pytest.mark.parametrize("server_kind", list(SERVERS))]


def serve(server_kind, env, tmp_path):
    kind, args = SERVERS[server_kind]
    return running_server(kind, env, tmp_path / "server.log", args)


CHANNEL = "demo:worker"


@pytest.fixture
def env(tmp_path):
    env = project_env(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    manage(env, "migrate", "--verbosity", "0")
    return env


def dechunk(raw: bytes) -> bytes:
    """Return the body of an HTTP/1.1 response in chunks (*raw*, its head included), up to its last whole chunk."""
    body, at = [], raw.index(b"\r\n\r\n") + 4
    while (line_end := raw.find(b"\r\n", at)) >= 0:
        size = int(raw[at:line_end], 16)
        end = line_end + 2 + size
        if size == 0 or len(raw) < end + 2:
            break
        assert raw[end : end + 2] == b"\r\n", f"a chunk of {size} bytes does not end with CRLF"
        body.append(raw[line_end + 2 : end])
        at = end + 2
    return b"".join(body)


def health(url: str) -> dict:
    return httpx.get(url + "/events/health/", timeout=5).json()


def wait_for_health(url: str, check, what: str, timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = health(url)
        if check(status):
            return status
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s: {status}"
        time.sleep(0.05)


def parked(count: int):
    return lambda status: status["parked"] == count and status["streams"] == count


def test_caught_up_streams_wait_parked_and_each_gets_a_burst_once_in_order(server_kind, env, tmp_path):
    """30 idle streams are parked; 300 events published fast reach each once, in order, whole; they park again."""
    count = 300
    with serve(server_kind, env, tmp_path) as server:
        streams = []
        try:
            for _ in range(30):
                streams.append(open_stream(server.url))
            wait_for_health(server.url, parked(30), "30 idle streams parked")
            publish_event(env, CHANNEL, {"n": 1000})
            for sock in streams:
                assert events_in(read_until(sock, lambda body: b'"n":1000}' in body)) == [1000]
            with Publisher(env, CHANNEL) as publisher:
                for n in range(count):
                    publisher.send({"n": n})
            for sock in streams:
                body = read_until(sock, lambda body: b'"n":%d}' % (count - 1) in body)
                got = events_in(body)
                assert got == list(range(count)), delivery(got, count)
            wait_for_health(server.url, parked(30), "the streams parked again once caught up")
        finally:
            for sock in streams:
                sock.close()


def test_a_parked_stream_whose_client_stops_reading_is_handed_back_and_catches_up_once(server_kind, env, tmp_path):
    """Its buffer full, a parked stream goes back to its coroutine, which waits for room (daphne: the write gate;
    uvicorn: its send()); read again, the client
    has every event once, whole, in order, and the stream parks again."""
    env["REALTIME_JSON"] = json.dumps({"SSE_SEND_TIMEOUT": 120, "PRUNE_INTERVAL": None, "POLL_INTERVAL": 0.01})
    count, pad = 300, 15_000
    with serve(server_kind, env, tmp_path) as server:
        host, port = server.url.removeprefix("http://").split(":")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            sock.connect((host, int(port)))
            sock.sendall(f"GET /events/?channel={CHANNEL} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            head = read_until(sock, lambda body: b"retry:" in body)
            wait_for_health(server.url, parked(1), "the idle stream parked")
            with Publisher(env, CHANNEL) as publisher:
                for n in range(count):
                    publisher.send({"n": n, "pad": "x" * pad})
                    time.sleep(0.01)
            # Several MB written to a client that reads nothing: the socket and Twisted's buffer fill up.
            wait_for_health(server.url, lambda s: s["parked"] == 0 and s["streams"] == 1, "handed back")
            last = b'"n":%d,' % (count - 1)
            body = read_until(sock, lambda body: last in body and body.find(b"}\n", body.find(last)) >= 0, 60)
            # Django cuts a chunk of several events into pieces of 64 KiB: read the body whole.
            got = events_in(dechunk(head + body), pad)
            assert got == list(range(count)), delivery(got, count)
            wait_for_health(server.url, parked(1), "parked again once caught up")
        finally:
            sock.close()


def test_a_parked_stream_sends_keepalives_and_ends_when_its_client_leaves(server_kind, env, tmp_path):
    """A parked stream's keepalives come from the hub's ticks; its client gone, the server ends it: the seat is free."""
    env["REALTIME_JSON"] = json.dumps({"KEEPALIVE": 1})
    with serve(server_kind, env, tmp_path) as server:
        sock = open_stream(server.url)
        try:
            wait_for_health(server.url, parked(1), "the idle stream parked")
            body = read_until(sock, lambda body: body.count(b": keepalive\n") >= 2, timeout=10)
            assert re.search(rb"\r\n: keepalive\n\n\r\n", body), f"not one whole chunk each: {body[-80:]!r}"
        finally:
            sock.close()
        wait_for_health(server.url, lambda s: s["streams"] == 0 and s["parked"] == 0, "the stream ended")


def test_a_server_told_to_stop_ends_its_parked_streams_each_with_a_parting_retry(server_kind, env, tmp_path):
    """At a TERM the drain gives each parked stream back to its coroutine: it sends its retry:, then ends cleanly."""
    with serve(server_kind, env, tmp_path) as server:
        streams = [open_stream(server.url) for _ in range(3)]
        try:
            wait_for_health(server.url, parked(3), "3 idle streams parked")
            os.kill(server.process.pid, signal.SIGTERM)
            assert_each_ends_with_a_parting_retry(streams)
        finally:
            for sock in streams:
                sock.close()
