"""The package's gunicorn worker: a waiting stream gives its request's greenlet back, and still ends cleanly.

The end-to-end, slow-client, fault, metrics and rolling-restart suites run
under this worker too (``gunicorn-realtime`` in tests/servers.py); these
tests guard what only it does.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import time
from collections import Counter

import httpx
import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.test import RequestFactory

from django_realtime.gunicorn_worker import Connection, HandedOff, HandOff
from tests.support.census import census_args, wait_for_census
from tests.support.servers import Publisher, manage, project_env, publish_event, running_server

pytestmark = pytest.mark.server

CHANNEL = "demo:worker"


def open_stream(url: str, query: str = f"channel={CHANNEL}") -> socket.socket:
    """Open an SSE stream on a raw socket and read its head and prelude; return the socket."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    try:
        sock.sendall(f"GET /events/?{query} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n".encode())
        head = b""
        while b"retry:" not in head:
            data = sock.recv(4096)
            assert data, f"the stream ended before its prelude: {head!r}"
            head += data
        assert head.startswith(b"HTTP/1.1 200"), head
    except BaseException:
        sock.close()
        raise
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    body = b""
    while True:
        data = sock.recv(65536)
        if not data:
            return body
        body += data


@pytest.fixture
def env(tmp_path):
    env = project_env(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    manage(env, "migrate", "--verbosity", "0")
    return env


def test_waiting_streams_hold_none_of_the_workers_connections(env, tmp_path):
    """With --worker-connections 1, streams beyond one are served, and pages too: each request's greenlet ended.

    Under ``-k gevent`` the first stream would hold the worker's only
    connection for as long as it lasts, and nothing else would be answered.
    """
    with running_server("gunicorn-realtime", env, tmp_path / "server.log", ["--worker-connections", "1"]) as server:
        streams: list[socket.socket] = []
        try:
            for _ in range(3):
                streams.append(open_stream(server.url))
            assert httpx.get(server.url + "/events/health/", timeout=10).status_code == 200
            event_id = publish_event(env, CHANNEL, {"n": 1})
            for sock in streams:
                got = b""
                while b'data: {"n":1}' not in got:
                    data = sock.recv(4096)
                    assert data, "a stream ended instead of delivering"
                    got += data
                assert f"id: {event_id}".encode() in got
        finally:
            for sock in streams:
                sock.close()


def test_a_stream_that_reaches_its_lifetime_ends_its_response_then_its_connection(env, tmp_path):
    """Its chunked body is complete (the terminator), after every event it had: not a connection cut mid-response."""
    env["REALTIME_JSON"] = json.dumps({"SSE_MAX_LIFETIME": 8})  # time enough for manage.py to publish
    with running_server("gunicorn-realtime", env, tmp_path / "server.log") as server:
        sock = open_stream(server.url)
        try:
            publish_event(env, CHANNEL, {"n": 2})
            sock.settimeout(20)
            body = read_until_closed(sock)
        finally:
            sock.close()
    assert b'data: {"n":2}' in body
    assert body.endswith(b"\r\n0\r\n\r\n"), f"the response did not end cleanly: ...{body[-80:]!r}"


class ServerResponse:
    """What the hand-off reads of gunicorn's Response."""

    headers_sent = False
    chunked = True


class Streams:
    """The worker's group of streams, recording what it is given to run instead of running it."""

    def __init__(self):
        self.spawned = []

    def spawn(self, *args):
        self.spawned.append(args)


class Worker:
    def __init__(self):
        self.streams = Streams()


@pytest.mark.django_db(transaction=True)
def test_a_stream_handed_off_goes_on_with_its_own_socket_and_none_of_its_headers():
    """After the head and the first chunk, the stream is handed over; gunicorn's close leaves its connection alone."""
    server, peer = socket.socketpair()
    connection = Connection(server)
    environ = RequestFactory().get("/events/", {"channel": CHANNEL}).environ
    environ["gunicorn.socket"] = connection
    response = WSGIHandler()(environ, lambda status, headers: None)
    worker, head = Worker(), ServerResponse()
    hand_off = HandOff(worker, response, head, connection)
    try:
        assert next(hand_off).startswith(b"retry:")
        head.headers_sent = True
        with pytest.raises(HandedOff):
            next(hand_off)
        [(_run, stream)] = worker.streams.spawned
        assert stream.response is response and stream.connection is connection and stream.chunked
        assert stream.parking.enabled, "the package's stream, handed off, may not wait parked"
        assert connection.sock is not server, "the stream writes to the socket gevent's server closes"
        connection.close()  # gunicorn's handler, as it ends
        assert connection.sock.fileno() != -1, "gunicorn's close closed the stream's connection"
        assert len(response.headers) == 0, f"a stream handed off keeps its headers: {dict(response.headers)}"
    finally:
        response.close()
        connection.sock.close()
        server.close()
        peer.close()


# Parked streams: a caught-up stream waits with no greenlet, the hub writes to its socket ----------------


def events_in(body: bytes, pad: int = 0) -> list[int]:
    """Return the ``n`` of every whole event in a raw SSE body, in order (padded with *pad* x's)."""
    tail = rb',"pad":"' + b"x" * pad + rb'"' if pad else b""
    return [int(n) for n in re.findall(rb'data: \{"n":(\d+)' + re.escape(tail) + rb"\}\n", body)]


def delivery(got: list[int], count: int) -> str:
    """Describe what is wrong with the events *got* of ``range(count)``."""
    seen = Counter(got)
    missing = [n for n in range(count) if n not in seen]
    twice = [n for n, times in seen.items() if times > 1]
    disorder = [(a, b) for a, b in zip(got, got[1:], strict=False) if b <= a]
    return f"{len(got)} got; missing {missing[:20]}, repeated {twice[:20]}, out of order at {disorder[:10]}"


def read_until(sock: socket.socket, done, timeout: float = 30.0) -> bytes:
    """Read *sock* until ``done(body)``; return the body (failing if the stream ends first or time runs out)."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    body = b""
    while not done(body):
        assert time.monotonic() < deadline, f"not within {timeout} s: ...{body[-200:]!r}"
        data = sock.recv(65536)
        assert data, f"the stream ended: ...{body[-200:]!r}"
        body += data
    return body


def parked(count: int):
    return lambda census: census["parked"] == count and census["streams"] == 0


def test_idle_streams_wait_parked_with_no_greenlet_of_their_own(env, tmp_path):
    """200 caught-up streams are parked with the hub: no greenlet per stream in the worker, and each delivers."""
    with running_server("gunicorn-realtime", env, tmp_path / "server.log", census_args(tmp_path)) as server:
        streams = []
        try:
            for _ in range(200):
                streams.append(open_stream(server.url))
            census = wait_for_census(tmp_path, parked(200), "200 idle streams parked")
            assert census["greenlets"] < 50, f"the worker keeps a greenlet per waiting stream: {census}"
            publish_event(env, CHANNEL, {"n": 7})
            for sock in streams:
                assert events_in(read_until(sock, lambda body: b'"n":7' in body)) == [7]
        finally:
            for sock in streams:
                sock.close()


def test_parked_streams_deliver_a_burst_once_each_in_order(env, tmp_path):
    """Many events published fast reach each of 30 parked streams once, in order, whole."""
    count = 300
    with running_server("gunicorn-realtime", env, tmp_path / "server.log", census_args(tmp_path)) as server:
        streams = []
        try:
            for _ in range(30):
                streams.append(open_stream(server.url))
            wait_for_census(tmp_path, parked(30), "30 idle streams parked")
            with Publisher(env, CHANNEL) as publisher:
                for n in range(count):
                    publisher.send({"n": n})
            for sock in streams:
                body = read_until(sock, lambda body: b'"n":%d}' % (count - 1) in body)
                got = events_in(body)
                assert got == list(range(count)), delivery(got, count)
            wait_for_census(tmp_path, parked(30), "the streams parked again once caught up")
        finally:
            for sock in streams:
                sock.close()


def test_a_parked_stream_whose_client_stops_reading_is_handed_back_and_catches_up_once(env, tmp_path):
    """Its socket full, a parked stream gets a greenlet that writes the rest of the chunk; read again, it has every
    event once, whole, in order, and it parks again."""
    # One event a wake-up (a read of the log every 10 ms, an event every 20), free of the budget (budget.FREE):
    # the hub writes each until the socket, which the kernel lets grow to 4 MB here (tcp_wmem), is full.
    env["REALTIME_JSON"] = json.dumps({"SSE_SEND_TIMEOUT": 120, "PRUNE_INTERVAL": None, "POLL_INTERVAL": 0.01})
    count, pad = 500, 15_000
    with running_server("gunicorn-realtime", env, tmp_path / "server.log", census_args(tmp_path)) as server:
        host, port = server.url.removeprefix("http://").split(":")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            sock.connect((host, int(port)))
            sock.sendall(f"GET /events/?channel={CHANNEL} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            body = read_until(sock, lambda body: b"retry:" in body)
            wait_for_census(tmp_path, parked(1), "the idle stream parked")
            with Publisher(env, CHANNEL) as publisher:
                for n in range(count):
                    publisher.send({"n": n, "pad": "x" * pad})
                    time.sleep(0.02)
            wait_for_census(tmp_path, lambda c: c["parked"] == 0 and c["streams"] == 1, "handed back a greenlet")
            last = b'"n":%d,' % (count - 1)
            body = read_until(sock, lambda body: last in body and body.find(b"}\n", body.find(last)) >= 0, 60)
            got = events_in(body, pad)
            assert got == list(range(count)), delivery(got, count)
            wait_for_census(tmp_path, parked(1), "parked again once caught up")
        finally:
            sock.close()


def test_a_parked_stream_sends_keepalives_and_ends_when_its_client_leaves(env, tmp_path):
    """A parked stream's keepalives come from the hub's ticks; one that fails ends it: its seat is given back."""
    env["REALTIME_JSON"] = json.dumps({"KEEPALIVE": 1})
    with running_server("gunicorn-realtime", env, tmp_path / "server.log", census_args(tmp_path)) as server:
        sock = open_stream(server.url)
        try:
            wait_for_census(tmp_path, parked(1), "the idle stream parked")
            read_until(sock, lambda body: body.count(b": keepalive\n") >= 2, timeout=10)
        finally:
            sock.close()
        wait_for_census(tmp_path, lambda c: c["parked"] == 0 and c["streams"] == 0, "the stream ended", timeout=10)
        deadline = time.monotonic() + 10
        while (taken := httpx.get(server.url + "/events/health/", timeout=5).json()["streams"]) != 0:
            assert time.monotonic() < deadline, f"{taken} seats still taken after the client left"
            time.sleep(0.1)


def test_a_worker_told_to_stop_ends_its_parked_streams_each_with_a_parting_retry(env, tmp_path):
    """At a TERM the drain gives each parked stream its loop back: it sends its retry:, then ends the response."""
    # Time for the drain hook, which waits until the worker stops accepting (docs/deployment.md).
    args = [*census_args(tmp_path), "--graceful-timeout", "10"]
    with running_server("gunicorn-realtime", env, tmp_path / "server.log", args) as server:
        streams = [open_stream(server.url) for _ in range(3)]
        try:
            wait_for_census(tmp_path, parked(3), "3 idle streams parked")
            os.kill(server.process.pid, signal.SIGTERM)
            assert_each_ends_with_a_parting_retry(streams)
        finally:
            for sock in streams:
                sock.close()


def assert_each_ends_with_a_parting_retry(streams: list[socket.socket]) -> None:
    """Read each stream to its end: its last event is a parting ``retry:``, then the chunked body's end."""
    for sock in streams:
        sock.settimeout(20)
        body = read_until_closed(sock)
        assert re.search(rb"retry: \d+\n\n\r\n0\r\n\r\n$", body), f"no parting retry: ...{body[-80:]!r}"


def test_the_worker_reads_the_wake_ups_answers_as_the_core_gives_them():
    """The worker names Parking.wake()'s answers without importing Django at import: the same numbers."""
    from django_realtime import gunicorn_worker, streams

    assert (gunicorn_worker.STAY, gunicorn_worker.WRITE, gunicorn_worker.RESUME) == (
        streams.STAY,
        streams.WRITE,
        streams.RESUME,
    )
