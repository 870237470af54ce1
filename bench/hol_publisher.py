"""A publisher process of bench.head_of_line: transactions that publish early and commit late, or at once.

Run as ``python -m bench.hol_publisher NAME CHANNEL HOLD INTERVAL SECONDS`` with
``DJANGO_SETTINGS_MODULE`` and ``DATABASE_URL`` set.  For SECONDS it loops:
a transaction that calls ``publish()`` on CHANNEL, stays open HOLD seconds
(a number, or ``LOW-HIGH`` for a uniform draw, or ``once:N`` to hold N
seconds the first time only), and commits; then it sleeps INTERVAL seconds.
HOLD 0 publishes in autocommit.  It prints ``ready`` once set up, waits for a
line on stdin, and then one JSON line per event: its id, channel and when it
was published and committed (``time.time()``), and ``done`` at the end.
"""

from __future__ import annotations

import json
import random
import sys
import time


def hold_of(spec: str, first: bool, rng: random.Random) -> float:
    if spec.startswith("once:"):
        return float(spec[5:]) if first else 0.0
    if "-" in spec:
        low, high = (float(part) for part in spec.split("-"))
        return rng.uniform(low, high)
    return float(spec)


def main(argv: list[str]) -> None:
    import django

    name, channel, hold, interval, seconds = argv
    django.setup()
    from django.db import connection, transaction

    from django_realtime import publish

    connection.ensure_connection()
    print("ready", flush=True)
    sys.stdin.readline()
    rng = random.Random(name)
    end = time.monotonic() + float(seconds)
    first = True
    while time.monotonic() < end:
        held = hold_of(hold, first, rng)
        first = False
        data = {"publisher": name}
        if held:
            with transaction.atomic():
                published = time.time()
                event = publish(channel, {**data, "t": published})
                time.sleep(held)
        else:
            published = time.time()
            event = publish(channel, {**data, "t": published})
        committed = time.time()
        line = {"id": event.id, "channel": channel, "publisher": name, "published": published, "committed": committed}
        print(json.dumps(line), flush=True)
        time.sleep(float(interval))
    print("done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
