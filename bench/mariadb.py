"""Exactly once, and how soon, on MariaDB: concurrent publishers with rollbacks, two servers, 50 subscribers (issue 12).

On a fresh MariaDB database (a scratch database on 127.0.0.1:3306 as root,
dropped afterwards): gunicorn (gevent, one worker) and daphne serve the demo
project with the polling backend (or ``--backend redis``); 50 subscribers
(20 SSE on gunicorn, 15 SSE and 15 WebSockets on daphne) listen on two
channels from the log's newest id; 4 publisher processes
(tests/scale_out_publisher.py) publish in transactions of 1-3 events that
commit at once (70 %), stay open 10-80 ms and commit (15 %), or roll back
(15 %, at once or after a hold).  Every subscriber must hold every committed
event of its channels exactly once and in order.  Reported: publish->receive
latency (from the ``publish()`` call to arrival) p50/p99/max over every
delivery, and per third of the run, so that a growing lag shows.  Run by
hand::

    python -m bench.mariadb                      # 4 x 300 events
    python -m bench.mariadb --events 1500        # the sustained run
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from contextlib import ExitStack, closing
from pathlib import Path

from tests.support.scale_out import Outcome, PublisherProcess, Subscriber
from tests.support.servers import manage, project_env, running_servers
from tests.support.services import MARIADB
from tests.support.subscribers import SubscriberPool, percentile

CHANNELS = ("chat:bench-a", "chat:bench-b")
SPREAD = {("gunicorn-gevent", "sse"): 20, ("daphne", "sse"): 15, ("daphne", "ws"): 15}
KINDS = {"commit": 70, "hold": 15, "rollback": 10, "hold-rollback": 5}
HOLD = "0.01,0.08"


def run(args: argparse.Namespace, directory: Path) -> dict:
    import MySQLdb

    name = f"realtime_bench_{uuid.uuid4().hex[:10]}"
    admin = MySQLdb.connect(host=MARIADB[0], port=MARIADB[1], user="root", connect_timeout=5)
    admin.autocommit(True)
    with closing(admin), ExitStack() as stack:
        admin.cursor().execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
        stack.callback(lambda: admin.cursor().execute(f"DROP DATABASE IF EXISTS {name}"))
        url = f"mysql://root@{MARIADB[0]}:{MARIADB[1]}/{name}"
        env = {
            **project_env(url),
            "REALTIME_BACKEND": args.backend,
            "SCALE_OUT_KINDS": json.dumps(KINDS),
            "SCALE_OUT_HOLD": HOLD,
        }
        manage(env, "migrate", "--verbosity", "0")
        servers = stack.enter_context(running_servers(["gunicorn-gevent", "daphne"], env, directory))
        pool = stack.enter_context(SubscriberPool())
        subscribers = [
            Subscriber(transport, servers[kind], (CHANNELS[index % 2],), 0)
            for (kind, transport), count in SPREAD.items()
            for index in range(count)
        ]
        pool.start(subscribers)
        pool.wait_ready()
        publishers = []
        for index in range(args.publishers):
            publisher = PublisherProcess(env, f"p{index}", args.seed + index, args.events, CHANNELS, directory)
            stack.callback(publisher.kill)
            publishers.append(publisher)
        deadline = time.monotonic() + 60
        for publisher in publishers:
            publisher.wait_ready(deadline)
        started = time.time()
        for publisher in publishers:
            publisher.go()
        deadline = time.monotonic() + 30 + args.events
        for publisher in publishers:
            publisher.finish(deadline)
        published = time.time()
        outcome = Outcome.of(publishers)
        delivered = pool.wait_until(outcome, 60)
        time.sleep(0.5)
        problems = [problem for subscriber in subscribers for problem in subscriber.problems(outcome)]
    publish_time = {
        event_id: at
        for publisher in publishers
        for transaction in publisher.transactions
        for (event_id, _channel, _data), at in zip(transaction["events"], transaction["published_at"], strict=True)
    }
    deliveries = [
        (publish_time[event_id], arrived - publish_time[event_id])
        for subscriber in subscribers
        for event_id, *_, arrived in list(subscriber.received)
        if event_id in outcome.committed
    ]
    latencies = [latency for _, latency in deliveries]
    thirds = []
    span = (published - started) / 3 or 1
    for part in range(3):
        chunk = [lat for at, lat in deliveries if started + part * span <= at < started + (part + 1) * span]
        thirds.append((percentile(chunk, 0.5), percentile(chunk, 0.99)))
    events = len(outcome.committed) + len(outcome.rolled_back)
    return {
        "backend": args.backend,
        "publishers": args.publishers,
        "events_published": events,
        "committed": len(outcome.committed),
        "rolled_back": len(outcome.rolled_back),
        "rollback_share": round(len(outcome.rolled_back) / events, 3) if events else 0,
        "publishing_seconds": round(published - started, 1),
        "events_per_second": round(events / (published - started), 1),
        "subscribers": len(subscribers),
        "all_delivered": delivered,
        "problems": problems[:20],
        "p50_ms": round(1000 * percentile(latencies, 0.5), 1),
        "p99_ms": round(1000 * percentile(latencies, 0.99), 1),
        "max_ms": round(1000 * max(latencies or [0]), 1),
        "mean_ms": round(1000 * statistics.fmean(latencies), 1) if latencies else None,
        "thirds_p50_p99_ms": [(round(1000 * a, 1), round(1000 * b, 1)) for a, b in thirds],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=300, help="events per publisher")
    parser.add_argument("--publishers", type=int, default=4)
    parser.add_argument("--backend", default="polling", choices=["polling", "redis"])
    parser.add_argument("--seed", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        result = run(args, Path(directory))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
