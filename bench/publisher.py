"""A long-lived publisher in its own process: the cross-process case.

Reads one sequence number per line on stdin, publishes ``{"t": now, "seq": n}``
with ``django_realtime.publish`` and answers ``ok <id>`` on stdout.  The
server's hub learns of these events only through its backend (the polling
backend: within one POLL_INTERVAL).

    DJANGO_SETTINGS_MODULE=bench.site.settings python -m bench.publisher
"""

import os
import sys
import time


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.site.settings")
    import django

    django.setup()
    from bench.site.views import CHANNEL
    from django_realtime import publish

    print("ready", flush=True)
    for line in sys.stdin:
        seq = int(line)
        event = publish(CHANNEL, {"t": time.time(), "seq": seq})
        print(f"ok {event.id}", flush=True)


if __name__ == "__main__":
    main()
