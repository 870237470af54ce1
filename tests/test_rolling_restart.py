"""A rolling restart of gunicorn (``kill -HUP`` to its master) while events are published: nothing lost, nothing twice.

The demo runs under gunicorn with two gevent workers and the drain hook
(docs/deployment.md); 50 subscribers resume as EventSource does
(tests/support/rolling_restart.py) while a publisher process publishes 20 events a
second.  The figures (200 subscribers, time to live again) come from
bench/rolling_restart.py, not from here.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from httpx_sse import aconnect_sse

from tests.support.processes import workers_of
from tests.support.rolling_restart import PacedPublisher, gunicorn_args, hup, run_restart
from tests.support.servers import manage, project_env, running_server

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


CLOCK_STREAMS = 10


async def _follow_clock(url: str, ticking: asyncio.Event, ended: list[tuple[str, int | None, float]]) -> None:
    """Follow the demo's @event_stream clock until its stream ends; note how, its last retry:, and when."""
    retry = None
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=GRACEFUL_TIMEOUT * 2), trust_env=False) as client:
        try:
            async with aconnect_sse(client, "GET", url) as source:
                async for sse in source.aiter_sse():
                    if sse.event == "tick":
                        ticking.set()
                    if sse.retry is not None:
                        retry = sse.retry
            ended.append(("clean", retry, time.monotonic()))
        except httpx.HTTPError as exc:
            ended.append((type(exc).__name__, retry, time.monotonic()))


async def _hup_under_clock_streams(server) -> tuple[list[tuple[str, int | None, float]], float]:
    ended: list[tuple[str, int | None, float]] = []
    ticking = [asyncio.Event() for _ in range(CLOCK_STREAMS)]
    url = f"{server.url}/clock/stream/"
    tasks = [asyncio.create_task(_follow_clock(url, tick, ended)) for tick in ticking]
    await asyncio.wait_for(asyncio.gather(*(tick.wait() for tick in ticking)), 30)
    signalled_at = time.monotonic()
    hup(server)
    await asyncio.wait(tasks, timeout=GRACEFUL_TIMEOUT / 2)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return ended, signalled_at


def test_at_a_hup_an_event_stream_views_streams_end_cleanly_with_a_spread_retry(tmp_path):
    env = project_env(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    manage(env, "migrate", "--verbosity", "0")
    args = gunicorn_args(tmp_path, graceful_timeout=GRACEFUL_TIMEOUT)
    with running_server("gunicorn-gevent", env, tmp_path / "server.log", args) as server:
        old = workers_of(server.process.pid)
        ended, signalled_at = asyncio.run(_hup_under_clock_streams(server))
        deadline = time.monotonic() + GRACEFUL_TIMEOUT / 2
        while old & workers_of(server.process.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = old & workers_of(server.process.pid)
        log = server.log()

    # Each stream of the demo's clock (a generator that ticks for an hour) ended, as the built-in view's do:
    # cleanly, after a retry: within SHUTDOWN_RETRY, long before gunicorn's graceful timeout would cut it.
    assert len(ended) == CLOCK_STREAMS, log[-3000:]
    assert {how for how, _, _ in ended} == {"clean"}, (ended, log[-3000:])
    retries = [retry for _, retry, _ in ended]
    assert all(retry is not None and retry <= 1000 for retry in retries), retries
    assert max(at for _, _, at in ended) - signalled_at < GRACEFUL_TIMEOUT / 2
    assert not left, log[-3000:]
