"""Faults under real servers: a worker killed mid-stream, and a chaos soak of random faults.

Both run the demo project on a PostgreSQL database of their own with the
``postgres`` wake-up backend, publishers in processes of their own
(tests/scale_out_publisher.py: transactions that commit at once, commit late
or roll back), and clients that, like ``EventSource``, reconnect with the last
id they parsed whenever their connection ends (tests/support/chaos.py).  What
a user would notice is asserted: every committed event arrives once, in
order, none rolled back, and the resume after a crash takes seconds, not
minutes.

The soak (``-m soak``) runs ``CHAOS_SECONDS`` (60) of random faults: the
database refused or black-holed for up to 3 s through a TCP proxy the test
owns (tests/tcp_proxy.py; the shared PostgreSQL is never touched), servers
killed with SIGKILL to their whole process group or stopped with SIGTERM,
and replaced; ``CHAOS_SEED`` replays a run's choices (the timing differs).
"""

from __future__ import annotations

import json
import os
import random
import statistics
import time

import pytest

from tests.support.chaos import Cluster, Subscriber, run_soak
from tests.support.postgres_database import scratch_database
from tests.support.scale_out import PUBLISHER_RUN_TIMEOUT, PUBLISHER_START_TIMEOUT, Outcome, PublisherProcess
from tests.support.servers import manage, project_env
from tests.support.services import POSTGRES
from tests.support.subscribers import SubscriberPool

pytestmark = [pytest.mark.server, pytest.mark.postgres]

CHANNELS = ("chat:kill-a", "chat:kill-b")
#: SSE clients on the server that is killed.
CLIENTS = 20
PUBLISHERS = 2
EVENTS_PER_PUBLISHER = 60
#: Transactions the publishers have ended, together, when the server is killed.
MIDWAY = 15
#: Seconds within which a client of the killed server is streaming from the other one, and within
#: which an event it missed, or one committed meanwhile, reaches it: a pause a user notices, but
#: tolerates (the client's own delay is at most 0.6 s, the server's RETRY 0.5 s).
RESUME_WITHIN = 5.0
#: Seconds every client has, once the publishers are done, to hold every committed event.
DELIVERY_TIMEOUT = 30.0

CHAOS_SECONDS = float(os.environ.get("CHAOS_SECONDS", "60"))


@pytest.mark.parametrize(("killed", "survivor"), [("gunicorn-gevent", "daphne"), ("daphne", "gunicorn-gevent")])
def test_clients_of_a_killed_server_resume_on_another_with_every_event_once(tmp_path, killed, survivor):
    with scratch_database("realtime_kill") as (name, _admin):
        env = {
            **project_env(f"postgres://postgres@{POSTGRES[0]}:{POSTGRES[1]}/{name}"),
            "REALTIME_BACKEND": "postgres",
            "REALTIME_KEEPALIVE": "1",
            "REALTIME_JSON": json.dumps({"RETRY": 500, "CATCH_UP_CONNECTIONS": 2}),
        }
        manage(env, "migrate", "--verbosity", "0")
        cluster = Cluster(env, tmp_path)
        publishers: list[PublisherProcess] = []
        pool = SubscriberPool()
        try:
            victim, other = cluster.start(killed), cluster.start(survivor)

            def choose(transport, rng):
                # Every client starts on the victim; once it is gone, the other is all there is.
                return victim if victim in cluster.live else other

            rng = random.Random(14)
            pool.start(
                [
                    Subscriber(f"sse{n}", "sse", (CHANNELS[:1], CHANNELS[1:], CHANNELS)[n % 3], choose, rng)
                    for n in range(CLIENTS)
                ]
            )
            pool.wait_ready(20)
            for index in range(PUBLISHERS):
                publishers.append(
                    PublisherProcess(env, f"p{index}", 1400 + index, EVENTS_PER_PUBLISHER, CHANNELS, tmp_path)
                )
            deadline = time.monotonic() + PUBLISHER_START_TIMEOUT
            for publisher in publishers:
                publisher.wait_ready(deadline)
            for publisher in publishers:
                publisher.go()
            deadline = time.monotonic() + PUBLISHER_RUN_TIMEOUT
            while sum(len(p.transactions) for p in publishers) < MIDWAY:
                assert time.monotonic() < deadline, "the publishers ended too few transactions"
                time.sleep(0.01)
            while not all(subscriber.received for subscriber in pool.subscribers):
                assert time.monotonic() < deadline, "a client got nothing before the kill"
                time.sleep(0.01)
            killed_at = time.time()
            cluster.kill(victim)
            still_running = sum(not p.done.is_set() for p in publishers)
            deadline = time.monotonic() + PUBLISHER_RUN_TIMEOUT
            for publisher in publishers:
                publisher.finish(deadline)
            outcome = Outcome.of(publishers)
            pool.wait_until(outcome, DELIVERY_TIMEOUT)
            time.sleep(0.5)
            other.check_alive()
        finally:
            pool.close()
            for publisher in publishers:
                publisher.kill()
            cluster.stop_all()

    problems = [problem for subscriber in pool.subscribers for problem in subscriber.problems(outcome)]
    resumed, late = [], []
    for subscriber in pool.subscribers:
        on_other = [c for c in subscriber.connections if c.server == other.url and c.ready]
        if not on_other:
            problems.append(f"{subscriber}: never streamed from {other.kind}: {subscriber.connections}")
            continue
        resumed.append(on_other[0].ready - killed_at)
        # What it missed while it moved, or what was committed meanwhile, must come soon after.
        for event_id, *_, at in subscriber.received:
            if at > killed_at and at - max(killed_at, outcome.ended_at[event_id]) > RESUME_WITHIN:
                late.append(f"{subscriber}: event {event_id} came {at - killed_at:.1f}s after the kill")
    summary = (
        f"killed {killed} while {still_running} publishers ran; {len(outcome.committed)} events committed, "
        f"{len(outcome.rolled_back)} rolled back; clients streaming from {survivor} "
        f"{max(resumed or [0]):.2f}s after the kill at the latest (median {statistics.median(resumed or [0]):.2f}s)"
    )
    print(summary)
    if problems or late:
        for server in cluster.started:
            print(f"--- {server.kind} output ---\n{server.log()[-4000:]}")
    assert not problems, f"{summary}\n" + "\n".join(problems[:40])
    assert still_running, "the publishers had finished before the kill: it proves less than it says"
    assert max(resumed) < RESUME_WITHIN, summary
    assert not late, f"{summary}\n" + "\n".join(late[:20])


@pytest.mark.soak
@pytest.mark.timeout(CHAOS_SECONDS + 120)
def test_every_subscriber_gets_every_committed_event_once_in_order_through_random_faults(tmp_path):
    seed = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(1, 1_000_000))
    # Printed first, so that even a run that hangs tells how to replay it.
    print(f"CHAOS_SEED={seed} CHAOS_SECONDS={CHAOS_SECONDS:g}", flush=True)
    result = run_soak(tmp_path, seconds=CHAOS_SECONDS, seed=seed, sse=150, ws=50)
    print(result.summary)
    if result.problems:
        print(result.details)
    assert not result.problems, f"replay with CHAOS_SEED={seed}\n{result.summary}\n" + "\n".join(result.problems[:60])
    figures = result.figures
    assert figures["events rolled back"], "no transaction rolled back: the soak proves less than it says"
    assert figures["faults"].get("kill") and figures["reconnects"], f"no server was killed: {figures}"
