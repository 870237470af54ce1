"""How soon InnoDB tailers see events behind gaps, with 1, 2 or 3 tailers reading at once (issue 12).

No server: *N* tailer threads (each its own connection, as each process's
hub has) tail a scratch MariaDB database (127.0.0.1:3306 as root, dropped
afterwards) with the InnoDB commit-order rule, reading as a hub does (at
once when poked... here every POLL seconds, or GAP_RECHECK while a gap is
open).  4 publisher threads publish transactions of 1-3 events that commit
at once (70 %), stay open 10-80 ms and commit (15 %), or roll back (15 %).
Every tailer must read every committed event once and in order.  Reported
per tailer count: publish->read latency p50/p99/max over every (tailer,
event), and how many INNODB_TRX lists were taken per second.  Run by hand::

    python -m bench.innodb_tailers                  # 1, 2 and 3 tailers, 20 s each
    python -m bench.innodb_tailers --tailers 3 --seconds 60
"""

from __future__ import annotations

import argparse
import random
import threading
import time

from tests.support.subscribers import percentile

#: Seconds between two reads of a tailer with no gap open (the polling backend's POLL_INTERVAL is 0.25).
POLL = 0.05
KINDS = {"commit": 70, "hold": 15, "rollback": 10, "hold-rollback": 5}


def setup(name: str) -> None:
    import django
    from django.conf import settings

    from tests.support.services import MARIADB

    settings.configure(
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.mysql",
                "NAME": name,
                "USER": "root",
                "HOST": MARIADB[0],
                "PORT": MARIADB[1],
                "OPTIONS": {"charset": "utf8mb4"},
            }
        },
        INSTALLED_APPS=["django.contrib.contenttypes", "django_realtime"],
        REALTIME={"BACKEND": "inprocess", "PRUNE_INTERVAL": None},
        USE_TZ=True,
    )
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def run(tailers: int, seconds: float, seed: int) -> dict:
    from django.db import connections, transaction

    from django_realtime import publish
    from django_realtime.eventlog import high_water_mark
    from django_realtime.eventlog.innodb import InnoDBTailer
    from django_realtime.eventlog.tailers import GAP_RECHECK
    from django_realtime.models import Event

    Event.objects.all().delete()
    start = high_water_mark("default")
    published: dict[int, float] = {}
    committed: set[int] = set()
    lock = threading.Lock()
    stop = threading.Event()
    reads: list[dict[int, float]] = [{} for _ in range(tailers)]
    orders: list[list[int]] = [[] for _ in range(tailers)]
    lists = [0]

    original = InnoDBTailer._list

    def counted(self):
        with lock:
            lists[0] += 1
        return original(self)

    InnoDBTailer._list = counted

    def publisher(lane: int) -> None:
        rng = random.Random(seed * 10 + lane)
        kinds, weights = list(KINDS), list(KINDS.values())
        try:
            while not stop.is_set():
                kind = rng.choices(kinds, weights)[0]
                ids: list[int] = []
                try:
                    with transaction.atomic():
                        for _ in range(rng.randint(1, 3)):
                            at = time.monotonic()
                            event = publish("bench", lane)
                            ids.append(event.id)
                            with lock:
                                published[event.id] = at
                        if kind.startswith("hold"):
                            time.sleep(rng.uniform(0.01, 0.08))
                        if kind.endswith("rollback"):
                            raise _Rollback
                    with lock:
                        committed.update(ids)
                except _Rollback:
                    pass
                time.sleep(rng.uniform(0.0, 0.05))
        finally:
            connections.close_all()

    def tailer(index: int) -> None:
        reader = InnoDBTailer("default")
        horizon = start
        try:
            while not stop.is_set() or horizon < max(committed, default=0):
                rows = reader.read(horizon)
                now = time.monotonic()
                for row in rows:
                    reads[index][row[0]] = now
                    orders[index].append(row[0])
                if rows:
                    horizon = rows[-1][0]
                time.sleep(GAP_RECHECK if reader.recheck_after else POLL)
                if stop.is_set() and time.monotonic() > deadline + 10:
                    break
        finally:
            connections.close_all()

    threads = [threading.Thread(target=publisher, args=(lane,)) for lane in range(4)]
    threads += [threading.Thread(target=tailer, args=(index,)) for index in range(tailers)]
    began = time.monotonic()
    deadline = began + seconds
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join(30)
    wall = time.monotonic() - began
    InnoDBTailer._list = original

    expected = sorted(committed)
    latencies = []
    exact = 0
    for index in range(tailers):
        if orders[index] == expected:
            exact += 1
        latencies += [reads[index][i] - published[i] for i in expected if i in reads[index]]
    return {
        "tailers": tailers,
        "events": len(published),
        "rolled back": len(published) - len(committed),
        "rate": len(published) / seconds,
        "exact": f"{exact} of {tailers}",
        "p50": percentile(latencies, 0.5),
        "p99": percentile(latencies, 0.99),
        "max": max(latencies, default=float("nan")),
        "lists per s": lists[0] / wall,
    }


class _Rollback(Exception):
    pass


def main() -> None:
    from tests.support.mariadb_database import scratch_mariadb

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tailers", type=int, action="append", help="tailer counts (default 1, 2, 3)")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with scratch_mariadb("realtime_bench") as url:
        try:
            setup(url.rsplit("/", 1)[1])
            print("| tailers | events (rolled back) | rate | exactly once, in order | p50 / p99 / max | lists/s |")
            print("|---|---|---|---|---|---|")
            for count in args.tailers or [1, 2, 3]:
                r = run(count, args.seconds, args.seed)
                print(
                    f"| {r['tailers']} | {r['events']} ({r['rolled back']}) | {r['rate']:.0f}/s | {r['exact']} | "
                    f"{r['p50'] * 1000:.0f} / {r['p99'] * 1000:.0f} / {r['max'] * 1000:.0f} ms | "
                    f"{r['lists per s']:.1f} |",
                    flush=True,
                )
        finally:
            from django.db import connections

            connections.close_all()  # before the database is dropped


if __name__ == "__main__":
    main()
