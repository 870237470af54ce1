"""A publisher at a steady rate, in a process of its own: the traffic of a deploy test and bench.

Run as ``python -m tests.paced_publisher CHANNEL RATE COUNT`` with
``DJANGO_SETTINGS_MODULE`` and ``DATABASE_URL`` set.  It sets Django up,
prints ``{"ready": true}``, waits for a line on stdin, then publishes
``{"seq": n, "t": time.time()}`` for n in ``range(COUNT)``, RATE a second
on a fixed schedule (a late publish does not push the next ones back),
printing ``{"seq": n, "id": id}`` after each and ``{"done": true}`` at the
end.
"""

from __future__ import annotations

import json
import sys
import time


def emit(line: dict) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def main(channel: str, rate: float, count: int) -> None:
    import django

    django.setup()
    from django_realtime import publish

    emit({"ready": True})
    sys.stdin.readline()
    start = time.monotonic()
    for seq in range(count):
        delay = start + seq / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        event = publish(channel, {"seq": seq, "t": time.time()})
        emit({"seq": seq, "id": event.id})
    emit({"done": True})


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]))
