"""The package's gunicorn worker: a waiting stream gives its request's greenlet back, and still ends cleanly.

The end-to-end, slow-client, fault, metrics and rolling-restart suites run
under this worker too (``gunicorn-realtime`` in tests/servers.py); these
tests guard what only it does.
"""

from __future__ import annotations

import json
import socket

import httpx
import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.test import RequestFactory

from django_realtime.gunicorn_worker import Connection, HandedOff, HandOff
from tests.support.servers import manage, project_env, publish_event, running_server

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
        [(_write, chunks, handed, given, chunked)] = worker.streams.spawned
        assert handed is response and given is connection and chunked
        assert connection.sock is not server, "the stream writes to the socket gevent's server closes"
        connection.close()  # gunicorn's handler, as it ends
        assert connection.sock.fileno() != -1, "gunicorn's close closed the stream's connection"
        assert len(response.headers) == 0, f"a stream handed off keeps its headers: {dict(response.headers)}"
    finally:
        response.close()
        connection.sock.close()
        server.close()
        peer.close()
