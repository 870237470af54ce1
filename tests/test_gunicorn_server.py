"""gunicorn's worker classes that give each stream an OS thread: told apart, and warned about once per worker.

The server tests run the demo under real gunicorn workers: ``-k sync``
(gunicorn's default), ``-k gthread`` and ``-k gevent``.  The warning is
logged by the first stream a worker serves (django_realtime.W003), since
``manage.py check --deploy`` cannot see gunicorn's command line.
"""

from __future__ import annotations

import json
from contextlib import ExitStack

import httpx
import pytest

from django_realtime.gunicorn_server import configured_worker, configured_worker_connections, threaded_worker
from tests.support.servers import EventStream, manage, project_env, running_server

W003 = "django_realtime.W003"


@pytest.mark.parametrize(
    ("cmd_args", "worker"),
    [
        ("-k sync", "sync"),
        ("--worker-class=sync -w 4", "sync"),
        ("-k gthread", "gthread"),
        ("--threads 8", "gthread"),  # gunicorn turns sync into gthread past one thread
        ("-k gevent -w 4 --worker-connections 1200", None),
        ("-k gevent --threads 8", None),
        ("-k uvicorn_worker.UvicornWorker", None),
        # No worker class given there: the command line chooses it, and a check cannot see it.
        ("", None),
        ("-w 4 --timeout 60", None),
        ("--no-such-option -k sync", "sync"),
        ("-k 'sync", None),  # an open quote: gunicorn would refuse it too
        ("--threads many", None),
    ],
)
def test_the_worker_class_gunicorn_cmd_args_chooses(cmd_args, worker):
    assert configured_worker(cmd_args) == worker


@pytest.mark.parametrize(
    ("cmd_args", "connections"),
    [
        ("-k gevent --worker-connections 1200", 1200),
        ("--worker-connections=500", 500),  # the class is the command line's: gevent, if it is to matter
        ("-k gevent", None),  # gunicorn's default of 1000, unless the command line gives another
        ("-k sync --worker-connections 500", None),  # threaded workers ignore it
        ("--worker-connections lots", None),
    ],
)
def test_the_worker_connections_gunicorn_cmd_args_gives(cmd_args, connections):
    assert configured_worker_connections(cmd_args) == connections


def test_a_request_served_by_gunicorn_without_gevent_is_on_a_thread():
    gunicorn = {"SERVER_SOFTWARE": "gunicorn/27.0.1", "wsgi.multithread": False}

    assert threaded_worker(gunicorn) == "sync"
    assert threaded_worker({**gunicorn, "wsgi.multithread": True}) == "gthread"
    # Django's runserver and test client, and every other server: not gunicorn's business.
    assert threaded_worker({"SERVER_SOFTWARE": "WSGIServer/0.2 CPython/3.11", "wsgi.multithread": True}) is None
    assert threaded_worker({}) is None


# Real gunicorn workers -----------------------------------------------------------


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    env = project_env(f"sqlite:///{tmp_path_factory.mktemp('gunicorn') / 'db.sqlite3'}")
    manage(env, "migrate", "--verbosity", "0")
    return env


def stream_once(server) -> None:
    with EventStream(server.events_url(), params=[("channel", "demo:worker")]):
        pass


@pytest.mark.server
def test_a_sync_worker_warns_once_and_really_serves_nothing_else_meanwhile(env, tmp_path):
    # The last -k wins: these come after SERVER_COMMANDS' "-k gevent".
    with running_server("gunicorn-gevent", env, tmp_path / "server.log", ("-k", "sync")) as server:
        with EventStream(server.events_url(), params=[("channel", "demo:worker")]):
            # What the warning is about: while one stream is open, the worker answers no one else.
            with pytest.raises(httpx.ReadTimeout):
                httpx.get(server.events_url(), timeout=1.0)
        stream_once(server)
        log = server.log()

    assert log.count(W003) == 1, log
    assert "gunicorn's sync worker serves one request at a time" in log


@pytest.mark.server
def test_a_gthread_worker_warns(env, tmp_path):
    extra = ("-k", "gthread", "--threads", "4")
    with running_server("gunicorn-gevent", env, tmp_path / "server.log", extra) as server:
        # First an @event_stream view's stream (the demo's clock), then the SSE endpoint's.
        with EventStream(f"{server.url}/clock/stream/"):
            pass
        assert W003 in server.log()
        stream_once(server)
        log = server.log()

    assert log.count(W003) == 1, log
    assert "gunicorn's gthread worker serves each event stream on one of its --threads" in log


@pytest.mark.server
def test_a_gevent_worker_does_not_warn(env, tmp_path):
    with running_server("gunicorn-gevent", env, tmp_path / "server.log") as server:
        stream_once(server)
        log = server.log()

    assert "Booting worker" in log  # the log is gunicorn's
    assert W003 not in log


WORKER_CONNECTIONS = 3


@pytest.mark.server
@pytest.mark.parametrize("max_streams", [WORKER_CONNECTIONS, WORKER_CONNECTIONS - 1])
def test_a_gevent_worker_full_of_streams_serves_pages_only_with_max_streams_below_its_connections(
    env, tmp_path, max_streams
):
    """What django_realtime.W006 warns about: a gevent worker at --worker-connections accepts no connection at all."""
    env = {**env, "REALTIME_JSON": json.dumps({"MAX_STREAMS": max_streams})}
    extra = ("--worker-connections", str(WORKER_CONNECTIONS))
    with running_server("gunicorn-gevent", env, tmp_path / "server.log", extra) as server, ExitStack() as streams:
        for _ in range(max_streams):
            streams.enter_context(EventStream(server.events_url(), params=[("channel", "demo:full")]))
        page = f"{server.url}/clock/"
        if max_streams < WORKER_CONNECTIONS:
            # One stream more is refused in words a client honours; its connection closed, pages are served.
            with httpx.Client(timeout=2.0) as client:
                refused = client.get(server.events_url(), params={"channel": "demo:full"})
            assert (refused.status_code, "Retry-After" in refused.headers) == (503, True)
            assert httpx.get(page, timeout=2.0).status_code == 200
        else:
            # Every connection is a stream's: the page's is never accepted.
            with pytest.raises(httpx.ReadTimeout):
                httpx.get(page, timeout=1.0)
