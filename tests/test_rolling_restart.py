"""A rolling restart of gunicorn (``kill -HUP`` to its master) while events are published: nothing lost, nothing twice.

The demo runs under gunicorn with two gevent workers and the drain hook
(docs/deployment.md); 50 subscribers resume as EventSource does
(tests/rolling_restart.py) while a publisher process publishes 20 events a
second.  The figures (200 subscribers, time to live again) come from
bench/rolling_restart.py, not from here.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.rolling_restart import PacedPublisher, gunicorn_args, run_restart, workers_of
from tests.servers import manage, project_env, running_server

pytestmark = pytest.mark.server

SUBSCRIBERS = 50
RATE = 20.0
COUNT = 120
SIGNAL_AFTER = 2.0
#: gunicorn's --graceful-timeout here: how long an old worker could hold its streams without the drain hook.
GRACEFUL_TIMEOUT = 30.0
CHANNEL = "demo:deploy"


@pytest.fixture(scope="module", params=["gunicorn-gevent", "gunicorn-realtime"])
def restart(request, tmp_path_factory):
    directory = tmp_path_factory.mktemp("rolling")
    env = project_env(f"sqlite:///{directory / 'db.sqlite3'}")
    manage(env, "migrate", "--verbosity", "0")
    args = gunicorn_args(directory, graceful_timeout=GRACEFUL_TIMEOUT)
    with running_server(request.param, env, directory / "server.log", args) as server:
        old = workers_of(server.process.pid)
        publisher = PacedPublisher(env, CHANNEL, RATE, COUNT, directory / "publisher.stderr")
        try:
            outcome = asyncio.run(
                run_restart(server, publisher, channel=CHANNEL, subscribers=SUBSCRIBERS, signal_after=SIGNAL_AFTER)
            )
        finally:
            publisher.kill()
        # The old workers exit once their streams have ended: well before gunicorn would kill them.
        deadline = time.monotonic() + GRACEFUL_TIMEOUT / 2
        while old & workers_of(server.process.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = old & workers_of(server.process.pid)
        new = workers_of(server.process.pid) - old
        log = server.log()
    return outcome, old, left, new, log


def test_a_hup_under_traffic_loses_and_repeats_no_event(restart):
    outcome, old, _, new, log = restart

    assert outcome.published == COUNT
    assert outcome.problems() == [], log[-3000:]
    assert outcome.lost() == outcome.duplicated() == outcome.out_of_order() == 0
    # The restart happened, to every subscriber: each stream of the old workers broke and resumed on a new one.
    assert len(old) == 2 and len(new) == 2, log[-3000:]
    assert all(any(b.at >= outcome.signalled_at for b in s.breaks) for s in outcome.subscribers)


def test_at_a_hup_each_stream_ends_cleanly_with_a_spread_retry(restart):
    outcome, _, left, _, log = restart

    breaks = outcome.breaks()
    assert breaks
    # An ended response, not a connection cut mid-stream when gunicorn's graceful timeout ran out.
    assert {b.how for b in breaks} == {"clean"}, log[-3000:]
    # Each told to come back within SHUTDOWN_RETRY (1000 ms), not RETRY's 3000, each at a time of its own.
    retries = [b.retry_ms for b in breaks]
    assert max(retries) <= 1000
    assert len(set(retries)) > len(retries) / 2, retries
    assert all(b.live_at is not None for b in breaks)
    # Each stream ends once, when its worker no longer accepts connections, and its connection with it:
    # the reconnect reaches a new worker (not the old one again), and the old workers exit.
    per_subscriber = [sum(b.at >= outcome.signalled_at for b in s.breaks) for s in outcome.subscribers]
    assert set(per_subscriber) == {1}, per_subscriber
    assert not left, log[-3000:]
    assert "its streams end, each with a spread retry:" in log
