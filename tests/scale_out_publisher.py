"""One publisher process of tests/test_scale_out.py: a random mix of transactions.

Run as ``python -m tests.scale_out_publisher NAME SEED COUNT CHANNEL...`` with
``DJANGO_SETTINGS_MODULE`` and ``DATABASE_URL`` set.  It sets Django up,
prints ``ready``, waits for a line on stdin (so that every publisher starts at
once), then calls ``publish()`` COUNT times in transactions of one to three
events: some committed at once, some held open for 0.2-1 s before they
commit, so that ids commit out of order, and some rolled back, at once or
after a while.  After each transaction it prints one JSON line::

    {"outcome": "commit" | "rollback", "events": [[id, channel, data], ...], "published_at": [t, ...],
     "held": 0.4, "t": 1700000000.1}

``published_at`` is when each ``publish()`` was called, ``t`` when the
transaction ended; a final ``{"done": true}`` line says the publisher
finished.  The seed makes the mix (not the timing) reproducible.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time

#: Transaction kinds and their weights: commit at once, hold then commit, roll back at once, hold then roll back.
#: (bench/mariadb.py sets its own with SCALE_OUT_KINDS, a JSON object.)
KINDS = json.loads(os.environ.get("SCALE_OUT_KINDS", "null")) or {
    "commit": 45,
    "hold": 30,
    "rollback": 15,
    "hold-rollback": 10,
}
#: Seconds a held transaction stays open, at least and at most (SCALE_OUT_HOLD: "low,high").
HOLD = tuple(float(s) for s in os.environ.get("SCALE_OUT_HOLD", "0.2,1.0").split(","))
#: Seconds between two transactions, at most: enough for other publishers' ids to interleave.
PAUSE = 0.05


class RolledBack(Exception):
    """Raised inside a transaction to roll it back."""


def emit(line: dict) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def run(name: str, seed: int, count: int, channels: list[str]) -> None:
    from django.db import transaction

    from django_realtime import publish

    rng = random.Random(seed)
    sequence = 0
    while sequence < count:
        size = min(rng.choice([1, 1, 1, 2, 3]), count - sequence)
        kind = rng.choices(list(KINDS), weights=list(KINDS.values()))[0]
        held = round(rng.uniform(*HOLD), 3) if kind.startswith("hold") else 0.0
        events, published_at = [], []
        try:
            with transaction.atomic():
                for _ in range(size):
                    sequence += 1
                    channel = rng.choice(channels)
                    data = {"publisher": name, "n": sequence}
                    published_at.append(time.time())
                    events.append([publish(channel, data, event="scale").id, channel, data])
                time.sleep(held)
                if kind.endswith("rollback"):
                    raise RolledBack
        except RolledBack:
            outcome = "rollback"
        else:
            outcome = "commit"
        emit({"outcome": outcome, "events": events, "published_at": published_at, "held": held, "t": time.time()})
        time.sleep(rng.uniform(0, PAUSE))
    emit({"done": True})


def main(argv: list[str]) -> None:
    import django

    name, seed, count, *channels = argv
    django.setup()
    # Connect now, so that the first transaction does not pay for it.
    from django.db import connection

    connection.ensure_connection()
    emit({"ready": True})
    if not sys.stdin.readline():
        return  # the test went away before saying go
    run(name, int(seed), int(count), channels)


if __name__ == "__main__":
    main(sys.argv[1:])
