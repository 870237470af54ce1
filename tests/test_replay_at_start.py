"""Replay at a server's start: events published before the server ran reach streams opened at once, each once.

A stream that opens with ``?lastEventId=0`` as the first request of a new
worker starts the hub itself (``Hub.ensure_ready``): it must not take the
hub's cursor from before its first read (nothing, Cursor(0)) for "caught
up", and a short ``SSE_MAX_LIFETIME`` must not end it before it has sent
what it owes: a stream ends by its lifetime only once it has nothing more
to send (``follow``), so the first connection carries every event.
"""

from __future__ import annotations

import json
import threading

import pytest

from django_realtime.cursor import Cursor
from tests.support.servers import EventStream, manage, project_env, publish_lines, running_server

CHANNEL = "chat:replay-start"
#: Events published before the server starts.
EVENTS = 5
#: Streams opened at once, as the worker's first requests.
STREAMS = 3
#: Server starts per server kind: the race, if any, is at each start.
STARTS = 3

pytestmark = pytest.mark.server


@pytest.mark.parametrize("kind", ["gunicorn-gevent", "gunicorn-realtime", "daphne"])
def test_events_published_before_the_server_starts_reach_streams_opened_at_once_each_once(kind, tmp_path):
    """Each of a new worker's first streams from ``lastEventId=0`` sends every stored event once, then ends.

    Red when the view follows before the hub's first read (``Hub.ensure_ready``
    not waiting for it): under gevent the stream then takes the hub's cursor
    from before its start for caught up, waits, and its lifetime ends it empty.
    """
    env = project_env(f"sqlite:///{tmp_path / 'db.sqlite3'}", REALTIME_JSON=json.dumps({"SSE_MAX_LIFETIME": 2}))
    manage(env, "migrate", "--verbosity", "0")
    ids = publish_lines(env, CHANNEL, [{"n": n} for n in range(EVENTS)])
    for start in range(STARTS):
        with running_server(kind, env, tmp_path / f"{kind}-{start}.log") as server:
            streams = [
                EventStream(server.events_url(), params=[("channel", CHANNEL), ("lastEventId", "0")])
                for _ in range(STREAMS)
            ]
            # Opened together, before the hub has read the log: the first of them starts it.
            openers = [threading.Thread(target=stream.open) for stream in streams]
            for opener in openers:
                opener.start()
            for opener in openers:
                opener.join(30)
            try:
                for stream in streams:
                    stream.wait_ready()
                    # The first connection delivers everything: its lifetime ends it only once it has nothing
                    # more to send, so no reconnect is needed (or allowed to hide a skip).
                    got = [sse.id for sse in stream.take(EVENTS, timeout=20)]
                    assert [str(Cursor.event_id(cursor)) for cursor in got] == ids, f"start {start}:\n{server.log()}"
                    assert stream.ended(30), "the stream outlived SSE_MAX_LIFETIME"
                    assert stream.error is None
                    with pytest.raises(AssertionError, match="the stream ended"):  # and nothing after the five
                        stream.next(0)
            finally:
                for stream in streams:
                    stream.close()


def test_a_stream_that_its_lifetime_ends_before_any_event_loses_nothing_for_a_client_that_reconnects(tmp_path):
    """The reported "lost" event: published after the stream's lifetime ended it, empty; the reconnect gets it.

    A publisher slower than SSE_MAX_LIFETIME (``manage.py publish_event`` on a
    loaded machine took 0.9-2.0 s) finds the stream already ended, with no id
    sent: a client that does not reconnect sees nothing, one that does (as
    ``EventSource``, from the same ``lastEventId``) gets the event, once.
    The hub started on an empty log, so this replay comes from its buffer
    (``Hub.locate``), where the test above replays from the log.
    """
    env = project_env(f"sqlite:///{tmp_path / 'db.sqlite3'}", REALTIME_JSON=json.dumps({"SSE_MAX_LIFETIME": 1}))
    manage(env, "migrate", "--verbosity", "0")
    params = [("channel", CHANNEL), ("lastEventId", "0")]
    with running_server("gunicorn-gevent", env, tmp_path / "server.log") as server:
        with EventStream(server.events_url(), params=params) as first:
            assert first.ended(30), "the stream outlived SSE_MAX_LIFETIME"
            with pytest.raises(AssertionError, match="the stream ended"):  # empty, cleanly
                first.next(0)
            assert first.error is None
        ids = publish_lines(env, CHANNEL, [{"n": n} for n in range(EVENTS)])
        with EventStream(server.events_url(), params=params) as again:
            assert [str(Cursor.event_id(sse.id)) for sse in again.take(EVENTS, timeout=20)] == ids
            assert again.ended(30)
            with pytest.raises(AssertionError, match="the stream ended"):
                again.next(0)
