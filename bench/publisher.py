"""A long-lived publisher in its own process: the cross-process case.

Reads one sequence number per line on stdin, optionally followed by a
channel (default: the bench channel), publishes ``{"t": now, "seq": n}``
with ``django_realtime.publish`` and answers ``ok <id>`` on stdout.  It
starts by answering ``ready <directory of the django_realtime it imported>``.
The server's hub learns of these events only through its backend (the
polling backend: within one POLL_INTERVAL).

    DJANGO_SETTINGS_MODULE=bench.site.settings python -m bench.publisher
"""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.site.settings")
    import django

    django.setup()
    import django_realtime
    from bench.site.views import CHANNEL, payload
    from django_realtime import publish

    print("ready", os.path.dirname(os.path.realpath(django_realtime.__file__)), flush=True)
    for line in sys.stdin:
        seq, _, channel = line.strip().partition(" ")
        event = publish(channel or CHANNEL, payload(int(seq)))
        print(f"ok {event.id}", flush=True)


if __name__ == "__main__":
    main()
