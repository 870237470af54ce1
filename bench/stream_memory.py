"""RSS per idle SSE stream on the demo's path, for one or more source trees (issue 26).

For each tree (this checkout, or a ``git worktree`` of an older commit) and
each mode: a fresh SQLite file, ``migrate``, then the demo project
(``testproject``, its settings and middleware as tests/support/servers.py runs them:
polling backend, keepalive 1 s) under ``gunicorn -k gevent -w 1
--worker-connections 2000 testproject.wsgi``, started in the tree so that
it imports that tree's ``django_realtime`` and ``testproject`` with this
venv.  Then:

- ``cold``: read the forked worker's VmRSS (median of 5 reads, from
  /proc/<pid>/status), open ``--streams`` SSE streams to ``--path``,
  ``--concurrency`` requests in flight at a time (raw sockets that read the
  response head and nothing more), wait ``--idle``
  seconds, read VmRSS again;
- ``warm``: the same after ``--warmup`` streams were opened, held a second
  and closed, and the worker had time to notice (as bench.run warms up).

It prints (KB after − KB before) / streams for each.  Run by hand::

    python -m bench.stream_memory
    python -m bench.stream_memory --tree /work/wt-old --tree . --repeat 2
    python -m bench.stream_memory --path '/events/?channel=chat:lobby&presence=chat:lobby&name=a' \
        --env 'REALTIME_JSON={"PRESENCE_BURST": 100000}'
    python -m bench.stream_memory --worker-class django_realtime.gunicorn_worker.GeventWorker
    python -m bench.stream_memory --floor   # and the bare asyncio writer, opened the same way
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import options
from bench.clients import raise_fd_limit
from tests.support.processes import free_port, steady_memory_kb
from tests.support.servers import project_env, start_server, stop_server

ROOT = Path(__file__).resolve().parent.parent
#: The demo's stream: one public channel, no presence (what its dashboard page opens).
DEMO_PATH = "/events/?channel=demo:idle"


def open_streams(port: int, path: str, count: int, concurrency: int) -> list[socket.socket]:
    """Open *count* SSE streams, *concurrency* requests in flight at a time, as a crowd of pages does.

    Each stream's response head is read; the socket is not read from then on.
    """
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode()
    socks: list[socket.socket] = []
    while len(socks) < count:
        batch = [
            socket.create_connection(("127.0.0.1", port), timeout=30)
            for _ in range(min(concurrency, count - len(socks)))
        ]
        for sock in batch:
            sock.sendall(request)
        for sock in batch:
            head = sock.recv(4096)
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"the stream was refused: {head[:200]!r}")
        socks += batch
    return socks


def migrate(tree: Path, env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "-v0", "--no-input"], cwd=tree, env=env, check=True, timeout=180
    )


def measure(tree: Path, mode: str, args: argparse.Namespace, directory: Path) -> dict:
    """Run one fresh server of *tree* and return what *mode* ("cold" or "warm") measured."""
    env = project_env(f"sqlite:///{directory / 'db.sqlite3'}")
    # The tree's package and demo first: ahead of this venv's editable install.
    env["PYTHONPATH"] = os.pathsep.join([str(tree), str(ROOT)])
    env.update(args.env)
    migrate(tree, env)
    extra = ["--worker-connections", str(max(2000, args.streams + 100))]
    if args.worker_class:
        extra += ["-k", args.worker_class]
    server = start_server("gunicorn-gevent", env, directory / "server.log", extra, cwd=tree)
    try:
        port = int(server.url.rsplit(":", 1)[1])
        pid = server.worker_pid()
        if mode == "warm":
            warm = open_streams(port, args.path, args.warmup, args.concurrency)
            time.sleep(1)
            for sock in warm:
                sock.close()
            time.sleep(3)  # keepalives (1 s) find the closed sockets
        before = steady_memory_kb(pid, pause=0.1)
        socks = open_streams(port, args.path, args.streams, args.concurrency)
        time.sleep(args.idle)
        after = steady_memory_kb(pid, pause=0.1)
        server.check_alive()
        for sock in socks:
            sock.close()
    finally:
        stop_server(server)
    return {
        "tree": str(tree),
        "mode": mode,
        "worker_class": args.worker_class or "gevent",
        "streams": args.streams,
        "concurrency": args.concurrency,
        "rss_before_kb": before,
        "rss_after_kb": after,
        "kb_per_stream": round((after - before) / args.streams, 1),
    }


def measure_floor(args: argparse.Namespace) -> dict:
    """Return what the bare asyncio writer (bench/floor_server.py) keeps per idle stream, opened the same way."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "bench.floor_server", "--port", str(port)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        before = steady_memory_kb(process.pid, pause=0.1)
        socks = open_streams(port, args.path, args.streams, args.concurrency)
        time.sleep(args.idle)
        after = steady_memory_kb(process.pid, pause=0.1)
        for sock in socks:
            sock.close()
    finally:
        process.terminate()
        process.wait(10)
    return {
        "tree": "floor (bench/floor_server.py)",
        "mode": "-",
        "worker_class": "-",
        "streams": args.streams,
        "concurrency": args.concurrency,
        "rss_before_kb": before,
        "rss_after_kb": after,
        "kb_per_stream": round((after - before) / args.streams, 1),
    }


def main() -> None:
    parser = options.parser("bench.stream_memory", __doc__)
    parser.add_argument("--tree", action="append", help="a source tree to measure (repeatable; default: this one)")
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=20, help="streams opened and closed first in the warm mode")
    parser.add_argument("--modes", default="cold,warm")
    parser.add_argument("--path", default=DEMO_PATH, help="what each stream opens")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight at a time while opening")
    options.add(parser, "idle", "repeat")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the server (repeatable)")
    parser.add_argument("--floor", action="store_true", help="measure the bare asyncio writer too, each repeat")
    parser.add_argument(
        "--worker-class", help="gunicorn's -k instead of gevent, e.g. django_realtime.gunicorn_worker.GeventWorker"
    )
    args = parser.parse_args()
    args.env = dict(item.split("=", 1) for item in args.env)
    raise_fd_limit(args.streams * 2 + 200)
    trees = [Path(tree).resolve() for tree in args.tree or [ROOT]]
    rows = []
    for _ in range(args.repeat):
        for tree in trees:
            for mode in args.modes.split(","):
                with tempfile.TemporaryDirectory() as directory:
                    rows.append(measure(tree, mode, args, Path(directory)))
                print(json.dumps(rows[-1]), flush=True)
        if args.floor:
            rows.append(measure_floor(args))
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n| tree | worker | mode | KB per idle stream ({args.streams} streams, {args.path}) |")
    print("|---|---|---|---|")
    for row in rows:
        print(f"| {row['tree']} | {row['worker_class']} | {row['mode']} | {row['kb_per_stream']} |")


if __name__ == "__main__":
    main()
