"""Open SSE streams of the demo under gevent, as gunicorn's gevent worker serves them, and report greenlet switches.

Run in a process of its own (gevent must patch before anything imports
``threading``): ``python -m tests.gevent_stream_open`` with the demo's
environment (tests/support/servers.py ``project_env``) on a migrated database.  It
starts the hub, opens and closes one stream (imports, caches), then opens
``--streams`` more, tracing greenlet switches from the moment Django's
handler is called until it has returned the response and the server has
taken the first chunk.  It prints one line of JSON: the switches, and the
Python stack of the first few; and the switches the first stream made
while it held the hub's lock, starting the hub.

Under a burst of connections, every switch there lets the next requests in,
and each of them then waits with Django's whole request on its greenlet's
stack, which gevent copies to the heap: the worker's RSS keeps that
high-water mark (issue 26).
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
import traceback  # noqa: E402

import django  # noqa: E402
import greenlet  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--query", default="channel=demo:open", help="the query string of /events/")
    args = parser.parse_args()
    django.setup()

    from django.core.handlers.wsgi import WSGIHandler
    from django.test import RequestFactory

    from django_realtime.hub import get_hub

    handler = WSGIHandler()
    factory = RequestFactory()
    hub = get_hub()

    def open_stream():
        # Sec-Fetch-Site: the page's own site, as a browser says it (a stream may join presence).
        environ = factory.get(f"/events/?{args.query}", HTTP_SEC_FETCH_SITE="same-origin").environ
        environ["gunicorn.socket"] = socket.socket()  # as gunicorn gives it: the stream watches its writes
        response = handler(environ, lambda status, headers: None)
        stream = iter(response)
        first = next(stream)
        return response, first

    main_greenlet = greenlet.getcurrent()

    def recorder(into, only_holding_the_lock=False):
        def trace(event, origin_target):
            if event not in ("switch", "throw") or origin_target[0] is not main_greenlet:
                return
            if only_holding_the_lock and not hub._lock.locked():
                return
            # Where the request gave way: the frames it was suspended in.
            frame = origin_target[0].gr_frame
            into.append(traceback.format_stack(frame, limit=10) if frame is not None and len(into) < 5 else [])

        return trace

    # The first stream starts the hub: it waits for the hub's first read, but must not hold the
    # hub's lock while it gives way (the requests of a burst would wait for it with their stacks).
    locked: list[list[str]] = []
    previous = greenlet.settrace(recorder(locked, only_holding_the_lock=True))
    try:
        response, first = open_stream()
    finally:
        greenlet.settrace(previous)
    assert first.startswith(b"retry:"), first
    response.close()

    switches: list[list[str]] = []
    trace = recorder(switches)

    opened = []
    for _ in range(args.streams):
        previous = greenlet.settrace(trace)
        try:
            response, first = open_stream()
        finally:
            greenlet.settrace(previous)
        if response.status_code != 200:
            raise SystemExit(f"a stream was refused: {response.status_code} {response.content!r}")
        opened.append(response)
    for response in opened:
        response.close()
    print(
        json.dumps(
            {
                "streams": args.streams,
                "switches": len(switches),
                "stacks": switches[:5],
                "starting_switches_holding_the_lock": len(locked),
                "starting_stacks": locked[:5],
            }
        )
    )


if __name__ == "__main__":
    main()
