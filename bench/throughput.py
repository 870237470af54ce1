"""Publish throughput: how many events one process stores per second, calling publish() in a loop.

Runs in a process of its own, set up from the environment like the
servers (DJANGO_SETTINGS_MODULE, DATABASE_URL, REALTIME_BACKEND); prints one
JSON line: events, seconds, events per second, the calls' p50 / p99 / max
in microseconds, and the share of a core the process used (near 1: bound by
its own Python; well below: by waiting on the database or Redis).  Each call
is autocommitted, as in a view or a task outside ``atomic()``; ``--atomic``
wraps each call in a transaction of its own instead.  ``--api eventstream``
calls django-eventstream's ``send_event()`` (run it from the peer's venv,
with ``bench.peer_site.settings``).

    DJANGO_SETTINGS_MODULE=bench.site.settings DATABASE_URL=... python -m bench.throughput --seconds 5
"""

from __future__ import annotations

import argparse
import json
import os
import time

from bench.report import percentile

CHANNEL = "demo:bench"


def publisher(api: str, atomic: bool):
    """Return a function that publishes one event ``{"t": now, "seq": seq}``."""
    from django.db import transaction

    if api == "eventstream":
        from django_eventstream import send_event

        def call(seq: int) -> None:
            send_event(CHANNEL, "message", {"t": time.time(), "seq": seq})

    else:
        from django_realtime import publish

        def call(seq: int) -> None:
            publish(CHANNEL, {"t": time.time(), "seq": seq})

    if not atomic:
        return call

    def in_transaction(seq: int) -> None:
        with transaction.atomic():
            call(seq)

    return in_transaction


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="how long to publish (default: 5)")
    parser.add_argument("--warmup", type=int, default=50, help="calls before the clock starts (default: 50)")
    parser.add_argument("--api", choices=["realtime", "eventstream"], default="realtime")
    parser.add_argument("--atomic", action="store_true", help="one transaction per call instead of autocommit")
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.site.settings")
    import django

    django.setup()
    call = publisher(args.api, args.atomic)
    for seq in range(-args.warmup, 0):
        call(seq)
    durations = []
    cpu_start = time.process_time()
    start = now = time.perf_counter()
    stop = start + args.seconds
    seq = 0
    while now < stop:
        call(seq)
        seq += 1
        then, now = now, time.perf_counter()
        durations.append(now - then)
    wall = now - start
    cpu = time.process_time() - cpu_start
    durations.sort()

    def us(q: float) -> float:
        return round(percentile(durations, q) * 1e6, 1)

    print(
        json.dumps(
            {
                "events": seq,
                "seconds": round(wall, 3),
                "events_per_s": round(seq / wall, 1),
                "p50_us": us(0.5),
                "p99_us": us(0.99),
                "max_us": round(durations[-1] * 1e6, 1),
                "cores": round(cpu / wall, 2),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
