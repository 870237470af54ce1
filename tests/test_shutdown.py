"""ASGI servers told to stop (shutdown.py): daphnes restarted in turn lose nothing; each stream ends cleanly.

Two daphne instances serve the demo on one database; SSE subscribers
(httpx-sse, resuming as EventSource does) and WebSocket subscribers (the
``websockets`` client, resuming as realtime.js does) start on the first
and go to the other when the first refuses connections, as nginx's next
upstream.  A publisher process publishes 20 events a second; midway each
instance in turn is sent TERM, and a new one started on its port once it
has exited (tests/rolling_restart.py).  The figures (200 subscribers, time
to live again) come from bench/rolling_restart.py, not from here.  Under
uvicorn, one instance: each stream and WebSocket ends cleanly, once.
"""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from tests.support.rolling_restart import DaphnePair, PacedPublisher, Subscriber, WebSocketSubscriber, run_restart
from tests.support.servers import manage, project_env, start_server, stop_server

pytestmark = pytest.mark.server

SUBSCRIBERS = 20  # of each transport
RATE = 20.0
COUNT = 200
SIGNAL_AFTER = 2.0
CHANNEL = "demo:deploy"
SHUTDOWN_RETRY = 1000


@pytest.fixture(scope="module")
def restart(tmp_path_factory):
    directory = tmp_path_factory.mktemp("daphne-drain")
    env = project_env(f"sqlite:///{directory / 'db.sqlite3'}")
    manage(env, "migrate", "--verbosity", "0")
    pair = DaphnePair(env, directory)
    try:
        pool = [pair.sse_subscriber(CHANNEL) for _ in range(SUBSCRIBERS)]
        pool += [pair.websocket_subscriber(CHANNEL) for _ in range(SUBSCRIBERS)]
        publisher = PacedPublisher(env, CHANNEL, RATE, COUNT, directory / "publisher.stderr")
        try:
            outcome = asyncio.run(
                run_restart(
                    pair.servers["a"],
                    publisher,
                    channel=CHANNEL,
                    subscribers=len(pool),
                    signal_after=SIGNAL_AFTER,
                    send_signals=pair.restart_in_turn,
                    pool=pool,
                )
            )
        finally:
            publisher.kill()
        log = pair.log()
    finally:
        pair.stop()
    return outcome, pair.exits, log


def test_daphne_restarted_in_turn_loses_and_repeats_no_event(restart):
    outcome, exits, log = restart

    assert outcome.published == COUNT
    assert outcome.problems() == [], log
    assert outcome.lost() == outcome.duplicated() == outcome.out_of_order() == 0
    # Both instances were stopped, and each exited by itself.
    assert [(name, status) for name, _, status in exits] == [("a", 0), ("b", 0)], log


def test_at_a_term_each_sse_stream_and_websocket_ends_cleanly_once_with_a_spread_retry(restart):
    outcome, _, log = restart

    for kind in (Subscriber, WebSocketSubscriber):
        subscribers = [s for s in outcome.subscribers if isinstance(s, kind)]
        breaks = [b for s in subscribers for b in s.breaks if b.at >= outcome.signalled_at]
        # SSE: the response ended after a retry:, not cut mid-chunk; WebSocket: closed with 4004 and retry=<ms>.
        assert {b.how for b in breaks} == {"clean"}, (kind.__name__, log)
        retries = [b.retry_ms for b in breaks]
        assert max(retries) <= SHUTDOWN_RETRY
        assert len(set(retries)) > len(retries) / 2, retries
        assert all(b.live_at is not None for b in breaks)
        # Each client ends once per stopped instance it was on: on the first, then on the second, which it went
        # to when the first refused it; never told to go twice by a stopping instance it came back to.
        per_subscriber = [sum(b.at >= outcome.signalled_at for b in s.breaks) for s in subscribers]
        assert set(per_subscriber) == {2}, (kind.__name__, per_subscriber, log)


async def _term_under_streams(server, subscribers: list) -> float:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(s.run(stop)) for s in subscribers]
    try:
        await asyncio.wait_for(asyncio.gather(*(s.ready.wait() for s in subscribers)), 30)
        signalled_at = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        deadline = signalled_at + 20
        while any(not s.breaks for s in subscribers) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return signalled_at
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def test_uvicorn_told_to_stop_ends_each_stream_and_websocket_cleanly(tmp_path):
    env = project_env(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    manage(env, "migrate", "--verbosity", "0")
    server = start_server("uvicorn", env, tmp_path / "uvicorn.log")
    try:
        ws_url = server.url.replace("http://", "ws://") + "/ws/"
        pool = [Subscriber(server.events_url(), CHANNEL) for _ in range(5)]
        pool += [WebSocketSubscriber(ws_url, CHANNEL) for _ in range(5)]
        asyncio.run(_term_under_streams(server, pool))
        server.process.wait(20)  # uvicorn waits for open streams without end: it exits once they have ended
    finally:
        stop_server(server)
    log = server.log()
    assert [len(s.breaks) for s in pool] == [1] * len(pool), log
    assert {b.how for s in pool for b in s.breaks} == {"clean"}, log
    assert all(b.retry_ms <= SHUTDOWN_RETRY for s in pool for b in s.breaks)
