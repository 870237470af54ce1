"""Measure WebSocket fan-out: django-realtime's consumer against a plain Channels group broadcast, on daphne.

For each server and each client count, on a fresh daphne process and a
fresh SQLite file: warm up, then with N idle subscribed sockets measure the
process's RSS per socket; publish events at a steady rate, each carrying its
publish time, with a POST that runs in the daphne process (``publish()``,
or ``channel_layer.group_send`` on the in-memory layer); measure
publish->receive latency at the clients and the process's CPU time per
delivered event; check that every socket got every event once.  The floor
(``bench.ws_floor``) is a bare ASGI application on the same daphne.  The same
steps as ``bench.run``, with WebSocket clients (``bench.ws_clients``).  See
bench/README.md.

    python -m bench.websocket_fanout
"""

from __future__ import annotations

import argparse
import os
import sys

from bench import options
from bench.run import measure
from bench.servers import Target

SOCKET_PATH = "/ws/?channel=demo%3Abench"  # the clients subscribe to ?channel= in a message


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = options.parser("bench.websocket_fanout", __doc__)
    parser.add_argument("--clients", default="1000,100", help="comma-separated socket counts (default: 1000,100)")
    options.add(parser, "events", "rate", "backend")
    parser.add_argument(
        "--only", default="ours,channels,floor", help="which of ours,channels,floor to run (default: all)"
    )
    parser.add_argument(
        "--layer-capacity",
        type=int,
        default=1000,
        help="the in-memory channel layer's capacity per consumer (Channels' default: 100; here: 1000)",
    )
    options.add(parser, "warmup_events", "idle", "drain", "client_processes", "max_background")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL"),
        help="database of both servers (default: $DATABASE_URL, else a fresh SQLite file per run)",
    )
    options.add(parser, "out")
    return parser.parse_args(argv)


def daphne(application: str) -> list[str]:
    return ["daphne", "-b", "127.0.0.1", "-p", "{port}", application]


def targets(args: argparse.Namespace) -> list[Target]:
    made = {
        "ours": Target(
            key="ours",
            name=f"django-realtime RealtimeConsumer, daphne, {args.backend}",
            python=sys.executable,
            settings="bench.site.settings",
            server_argv=daphne("bench.site.asgi:application"),
            forks=False,
            env={"REALTIME_BACKEND": args.backend, "DJANGO_DEBUG": "0"},
            path=SOCKET_PATH,
            transport="ws",
        ),
        "channels": Target(
            key="channels",
            name="Channels group_send, InMemoryChannelLayer, daphne",
            python=sys.executable,
            settings="bench.channels_site.settings",
            server_argv=daphne("bench.channels_site.asgi:application"),
            forks=False,
            env={"BENCH_LAYER_CAPACITY": str(args.layer_capacity), "DJANGO_DEBUG": "0"},
            path=SOCKET_PATH,
            transport="ws",
            stats_path="/bench/stats/",
        ),
        "floor": Target(
            key="floor",
            name="floor: bare ASGI app, daphne",
            python=sys.executable,
            settings=None,
            server_argv=daphne("bench.ws_floor:application"),
            forks=False,
            path=SOCKET_PATH,
            transport="ws",
        ),
    }
    return [made[side] for side in args.only.split(",")]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    packages = ("django", "channels", "daphne", "twisted", "autobahn")
    return measure(args, targets(args), prog="bench.websocket_fanout", packages=packages)


if __name__ == "__main__":
    sys.exit(main())
