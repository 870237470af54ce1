"""What an open SSE stream costs in memory: only its own state while it waits, and no pile-up on the way in.

A waiting stream needs its socket, its cursor and its channels: nothing of
Django's request cycle (the request, its META, session, user, resolver
match, messages) may stay reachable from it.  And opening one must not give
way to other greenlets under gevent: under a burst of connections each switch
lets the next requests in, which then wait with Django's whole request on
their greenlet's stack, copied to the heap, and the worker's RSS keeps that
high-water mark (issue 26: 36 KB instead of 22 KB per stream for 1,000
streams opened at once).
"""

from __future__ import annotations

import gc
import inspect
import json
import socket
import subprocess
import sys
import threading
import time
import weakref

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.db import connections
from django.test import RequestFactory, override_settings
from django.urls import path

from django_realtime import publish
from django_realtime.hub import get_hub
from django_realtime.sse.views import events
from django_realtime.streams import follow
from testproject.urls import urlpatterns as demo_urlpatterns
from tests.support.servers import ROOT, manage, project_env

pytestmark = pytest.mark.django_db(transaction=True)

CHANNEL = "demo:memory"


class Marker:
    """Something weakly referenceable to hang on a request, or put in its environ."""


#: Weak references to what the last request through ``recorded`` held.
seen: dict[str, weakref.ref] = {}


def recorded(request, **kwargs):
    """The package's SSE view, noting its request and the objects the demo's middleware hung on it."""
    request.payload = Marker()  # what a project's middleware may attach: it must go when the request goes
    seen.update(
        request=weakref.ref(request),
        payload=weakref.ref(request.payload),
        session=weakref.ref(request.session),
        messages=weakref.ref(request._messages),
    )
    return events(request, **kwargs)


urlpatterns = [path("events/", recorded), *demo_urlpatterns]


def wait_until(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.01)


def waiting_streams(hub):
    return sum(group.count for channels, group in hub._groups.items() if CHANNEL in channels)


@override_settings(ROOT_URLCONF=__name__)
def test_a_waiting_stream_keeps_nothing_of_its_request():
    """While a stream waits for events, its request, environ and what middleware attached are garbage."""
    environ = RequestFactory().get("/events/", {"channel": CHANNEL}).environ
    environ["test.marker"] = marker = Marker()
    # As gunicorn gives it: the stream watches its writes and may cut this socket.
    environ["gunicorn.socket"] = sock = socket.socket()
    environ_marker = weakref.ref(marker)
    del marker
    response = WSGIHandler()(environ, lambda status, headers: None)
    del environ
    assert response.status_code == 200
    chunks = iter(response)  # what the server does as it starts to stream
    assert next(chunks).startswith(b"retry:")
    got = []
    # The server's next pull: the stream joins the hub and waits there for an event.
    puller = threading.Thread(target=lambda: got.append(next(chunks)), daemon=True)
    puller.start()
    hub = get_hub()
    try:
        wait_until(lambda: waiting_streams(hub) == 1)
        time.sleep(0.1)  # into its wait
        assert not got, "the stream sent something other than the prelude before any event"
        gc.collect()
        alive = sorted(name for name, ref in {**seen, "environ": environ_marker}.items() if ref() is not None)
        assert not alive, f"a waiting stream keeps its request's {', '.join(alive)} alive"
        publish(CHANNEL, {"n": 1})
        puller.join(10)
        assert got and b'data: {"n":1}' in got[0], "the stream did not deliver after its wait"
    finally:
        response.close()
        sock.close()
    wait_until(lambda: waiting_streams(hub) == 0)


def open_wsgi_stream(query):
    """Open a stream through Django's WSGI handler as gunicorn does; return the response, its chunks, the socket."""
    environ = RequestFactory().get("/events/", query, HTTP_SEC_FETCH_SITE="same-origin").environ
    environ["gunicorn.socket"] = socket.socket()
    response = WSGIHandler()(environ, lambda status, headers: None)
    assert response.status_code == 200, response.content
    chunks = iter(response)
    assert next(chunks).startswith(b"retry:")
    return response, chunks, environ["gunicorn.socket"]


@pytest.mark.parametrize(
    "query",
    [{"channel": CHANNEL}, {"channel": "chat:memory", "presence": "chat:memory", "name": "ann"}],  # the chat room's
    ids=["dashboard", "chat-room"],
)
def test_a_wsgi_stream_is_pulled_from_follow_itself_and_ends_with_one_closer(query):
    """The server pulls follow()'s generator, and the response has one closer of the package's: no closure per need.

    Each generator or iterator between the server and the wait is one more
    level of C stack that gevent copies to the heap at every wait; each
    closure (the seat, the drain's shutdown, presence, the hub's cut) is a
    function, a cell and a list slot more per stream, for its whole life.
    """
    response, chunks, sock = open_wsgi_stream(query)
    try:
        assert inspect.isgenerator(chunks) and chunks.gi_code is follow.__code__, f"the server pulls {chunks!r}"
        closers = response._resource_closers
        made_here = [closer for closer in closers if getattr(closer, "__self__", None) is None]
        assert not made_here, f"a closure or partial per stream among the response's closers: {made_here}"
        ours = [closer for closer in closers if closer.__self__ is not chunks]
        assert len(ours) == 1, f"more than one closer per stream: {ours}"
    finally:
        response.close()
        sock.close()


def test_a_wsgi_stream_that_ends_while_the_hub_drains_shuts_its_connection():
    """Its one closer still parts at shutdown: the kept-alive connection ends, and the reconnect finds a new worker."""
    server, peer = socket.socketpair()
    environ = RequestFactory().get("/events/", {"channel": CHANNEL}).environ
    environ["gunicorn.socket"] = server
    response = WSGIHandler()(environ, lambda status, headers: None)
    hub = get_hub()
    try:
        chunks = iter(response)
        next(chunks)
        hub.draining = True
        assert b"retry:" in next(chunks)  # its parting, then the end of the stream
        with pytest.raises(StopIteration):
            next(chunks)
        seats = hub.seats.taken
        response.close()
        assert hub.seats.taken == seats - 1, "the stream's seat was not given back"
        peer.settimeout(5)
        assert peer.recv(1) == b"", "the connection is still open after the stream ended while the hub drains"
    finally:
        hub.draining = False
        response.close()
        server.close()
        peer.close()


def test_a_waiting_stream_that_joined_presence_keeps_no_database_wrapper():
    """The join used the database on the stream's thread (a greenlet under gevent): its closed wrapper goes too.

    Django keeps a ``DatabaseWrapper`` per thread, a few KB with DEBUG's query
    log, closed or not: kept, it would stay as long as the stream.
    """
    wrapper = []
    got = []

    def serve():
        response, chunks, sock = open_wsgi_stream({"channel": "chat:memory", "presence": "chat:memory", "name": "ann"})
        wrapper.append(weakref.ref(connections["default"]))  # made by the join, on this thread
        try:
            got.append(next(chunks))  # the stream's own presence.join
            got.append(next(chunks))  # then it waits here
        finally:
            response.close()
            sock.close()

    hub = get_hub()
    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        wait_until(lambda: len(got) == 1 and hub.seats.taken == 1)
        time.sleep(0.2)  # into its wait
        gc.collect()
        assert wrapper[0]() is None, "a waiting stream keeps its thread's database wrapper"
    finally:
        publish("chat:memory", {"n": 1})
        server.join(10)
    assert b'data: {"n":1}' in got[1]


def open_under_gevent(tmp_path):
    """Run tests/gevent_stream_open.py on a fresh database of the demo; return its report."""
    env = project_env(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    manage(env, "migrate", "--verbosity", "0")
    result = subprocess.run(
        [sys.executable, "-m", "tests.gevent_stream_open", "--streams", "20"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        encoding="utf-8",
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_opening_a_stream_under_gevent_gives_way_to_no_other_greenlet(tmp_path):
    """Once the hub runs, Django's handler returns a stream's response and first chunk without a switch."""
    report = open_under_gevent(tmp_path)
    where = "".join(report["stacks"][0]) if report["stacks"] else ""
    assert report["switches"] == 0, f"{report['switches']} switches while opening 20 streams; the first at:\n{where}"


def test_a_starting_hub_gives_way_to_no_other_greenlet_while_it_holds_its_lock(tmp_path):
    """The first stream starts the hub's threads out of its lock: a burst's other requests do not queue on it."""
    report = open_under_gevent(tmp_path)
    where = "".join(report["starting_stacks"][0]) if report["starting_stacks"] else ""
    count = report["starting_switches_holding_the_lock"]
    assert count == 0, f"{count} switches with the hub's lock held while the hub started; the first at:\n{where}"
