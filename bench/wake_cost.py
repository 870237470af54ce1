"""CPU per stream wake-up of the package's sync stream loop under gevent, without sockets.

N greenlets follow one channel through the real ``Hub`` and ``follow()``; the
hub gets E events, one at a time, and each event wakes every greenlet once.
Printed: CPU microseconds per (stream, event).  Variants:

- ``bare``: wait on the hub's signal and count, nothing else (gevent's own cost);
- ``follow``: the package's ``follow()``;
- ``sse_stream``: the bytes iterator the WSGI response iterates.

It uses the hub's internals (``Hub(...)``, ``append``): adjust it when they change.

    python -m bench.wake_cost --streams 1000 --events 200
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import inspect  # noqa: E402
import time  # noqa: E402

import django  # noqa: E402
import gevent  # noqa: E402
from django.conf import settings  # noqa: E402

CHANNELS = frozenset(["demo:bench"])


def setup():
    settings.configure(
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        INSTALLED_APPS=["django_realtime"],
        REALTIME={"BACKEND": "inprocess"},
    )
    django.setup()
    from django_realtime.backends.inprocess import InProcessBackend
    from django_realtime.hub import Hub

    wanted = {"using": "default", "buffer_size": 2000, "buffer_bytes": 64 << 20}
    accepted = inspect.signature(Hub).parameters
    return Hub(InProcessBackend(), **{k: v for k, v in wanted.items() if k in accepted})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--variants", default="bare,follow,sse_stream")
    args = parser.parse_args()
    hub = setup()
    from django_realtime.hub import make_item
    from django_realtime.sse.responses import sse_stream
    from django_realtime.streams import follow

    iterators = {
        "follow": lambda: follow(hub, CHANNELS, None, 15.0),
        "sse_stream": lambda: sse_stream(hub, CHANNELS, None, 15.0),
    }
    next_id = 0
    for variant in args.variants.split(","):
        wakes = [0]

        def consume(variant=variant, wakes=wakes):
            if variant == "bare":
                while True:
                    hub.signal.wait()
                    wakes[0] += 1
            for _ in iterators[variant]():
                wakes[0] += 1

        greenlets = [gevent.spawn(consume) for _ in range(args.streams)]
        gevent.sleep(0.2)
        baseline = wakes[0]  # sse_stream yields its prelude first
        cpu = time.process_time()
        for i in range(args.events):
            next_id += 1
            hub.append([make_item(next_id, "demo:bench", "message", f'{{"t":0,"seq":{i}}}')])
            while wakes[0] < baseline + (i + 1) * args.streams:
                gevent.sleep(0)
        cpu = time.process_time() - cpu
        gevent.killall(greenlets)
        print(f"{variant:22s} {cpu / (args.streams * args.events) * 1e6:6.2f} µs CPU per stream wake-up")


if __name__ == "__main__":
    main()
