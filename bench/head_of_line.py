"""Head-of-line blocking: how long committed events wait while other publishing transactions stay open (issue 21).

The demo project runs under one server (gunicorn gevent, or daphne) on a
fresh database (PostgreSQL with the ``postgres`` backend, or MariaDB with
``polling``); publisher processes (bench/hol_publisher.py) publish for a
few seconds, some in transactions held open after ``publish()``; one SSE
client follows every channel with ``?include=channel``.  For each event the
client notes when it arrived; its latency is arrival - commit (the
publisher's ``time.time()`` just after COMMIT).  Every committed event must
arrive exactly once, and each publisher's events in the order it committed
them (commit order).  Shapes:

* ``back-to-back``: transactions on ``chat:slow`` held 1 s each, 0.2 s
  apart; autocommit publishes on ``chat:fast`` every 100 ms;
* ``random4``: four publishers each holding random 0-2 s transactions on a
  channel of its own, and ``chat:fast`` as above;
* ``held15``: one transaction held 15 s on ``chat:held`` among three
  publishers publishing there in autocommit every 100 ms.

Run by hand (``--tree`` runs the package and demo of another source tree,
an older commit's worktree, for the figure before)::

    python -m bench.head_of_line --database postgres --server gunicorn-gevent --shape back-to-back
    python -m bench.head_of_line --database mariadb --server daphne --shape held15 --tree /work/old
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
from httpx_sse import connect_sse

from bench import options
from tests.support.mariadb_database import scratch_mariadb
from tests.support.servers import ROOT, manage, project_env, start_server, stop_server
from tests.support.services import POSTGRES
from tests.support.subscribers import percentile

#: name -> (channel, hold, interval) for each publisher of a shape.
SHAPES = {
    "back-to-back": {"slow": ("chat:slow", "1", "0.2"), "fast": ("chat:fast", "0", "0.1")},
    "random4": {
        **{f"r{n}": (f"chat:r{n}", "0-2", "0.05") for n in range(4)},
        "fast": ("chat:fast", "0", "0.1"),
    },
    "held15": {
        "holder": ("chat:held", "once:15", "0.1"),
        **{f"p{n}": ("chat:held", "0", "0.1") for n in range(3)},
    },
}
BACKENDS = {"postgres": "postgres", "mariadb": "polling"}


@contextmanager
def fresh_database(kind: str):
    """Yield the URL of a new database of *kind*, dropped afterwards."""
    name = f"realtime_hol_{uuid.uuid4().hex[:10]}"
    if kind == "postgres":
        import psycopg

        admin_url = f"postgres://postgres@{POSTGRES[0]}:{POSTGRES[1]}/test"
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
            try:
                yield f"postgres://postgres@{POSTGRES[0]}:{POSTGRES[1]}/{name}"
            finally:
                admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        return
    with scratch_mariadb("realtime_hol") as url:
        yield url


class Publisher:
    def __init__(self, env: dict[str, str], cwd: Path, name: str, spec: tuple[str, str, str], seconds: float) -> None:
        channel, hold, interval = spec
        self.name = name
        self.process = subprocess.Popen(
            # As a script: its directory, not *cwd*, leads sys.path, and PYTHONPATH puts the tree first.
            [sys.executable, str(ROOT / "bench" / "hol_publisher.py"), name, channel, hold, interval, str(seconds)],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert self.process.stdout is not None and self.process.stdout.readline().strip() == "ready"
        self.events: list[dict] = []

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def finish(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.strip() == "done":
                break
            self.events.append(json.loads(line))
        self.process.wait(30)


def follow(url: str, channels: list[str], received: list, ready: threading.Event, stop: threading.Event) -> None:
    params = [*(("channel", channel) for channel in channels), ("include", "channel")]
    with httpx.Client(timeout=httpx.Timeout(10, read=None)) as client:
        with connect_sse(client, "GET", url, params=params) as source:
            for sse in source.iter_sse():
                if stop.is_set():
                    return
                if sse.retry is not None or sse.event == "error":
                    ready.set()
                if not sse.data:
                    ready.set()  # the cursor the stream starts at
                    continue
                received.append((sse.id, json.loads(sse.data), time.time()))


def run(args: argparse.Namespace) -> dict:
    from django_realtime.cursor import Cursor

    cwd = Path(args.tree).resolve() if args.tree else ROOT
    shape = SHAPES[args.shape]
    seconds = 20.0 if args.shape == "held15" else args.seconds
    with ExitStack() as stack:
        url = stack.enter_context(fresh_database(args.database))
        env = {**project_env(url), "REALTIME_BACKEND": BACKENDS[args.database], "PYTHONPATH": f"{cwd}:{ROOT}"}
        env.pop("REALTIME_KEEPALIVE")  # the default, as a site has it: no read every second for the keepalives
        manage(env, "migrate", "--verbosity", "0")
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        server = start_server(args.server, env, directory / "server.log", cwd=cwd)
        stack.callback(stop_server, server)
        received: list = []
        ready, stop = threading.Event(), threading.Event()
        channels = sorted({channel for channel, _, _ in shape.values()})
        reader = threading.Thread(target=follow, args=(server.events_url(), channels, received, ready, stop))
        reader.daemon = True
        reader.start()
        assert ready.wait(10), "the stream did not open"
        publishers = [Publisher(env, cwd, name, spec, seconds) for name, spec in shape.items()]
        for publisher in publishers:
            stack.callback(publisher.process.kill)
            publisher.go()
        for publisher in publishers:
            publisher.finish()
        committed = {event["id"]: event for publisher in publishers for event in publisher.events}
        deadline = time.monotonic() + 30
        while len({Cursor.event_id(text) for text, _, _ in list(received)} & set(committed)) < len(committed):
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        time.sleep(0.5)
        stop.set()
    got = [(Cursor.event_id(text), at) for text, _, at in received]
    counts = Counter(event_id for event_id, _ in got)
    result: dict = {
        "database": args.database,
        "server": args.server,
        "shape": args.shape,
        "tree": args.tree or "this checkout",
        "events": len(committed),
        "lost": len(set(committed) - set(counts)),
        "duplicated": sum(1 for count in counts.values() if count > 1),
        "out_of_commit_order": 0,
        "latency": {},
    }
    for publisher in publishers:
        mine = [event_id for event_id, _ in got if committed.get(event_id, {}).get("publisher") == publisher.name]
        result["out_of_commit_order"] += sum(1 for a, b in zip(mine, mine[1:], strict=False) if b <= a)
    groups: dict[str, list[float]] = {}
    first_arrival: dict[int, float] = {}
    for event_id, at in got:
        first_arrival.setdefault(event_id, at)
    for event_id, event in committed.items():
        if event_id in first_arrival:
            kind = (
                "holder" if event["publisher"] in ("slow", "holder") or event["publisher"].startswith("r") else "others"
            )
            groups.setdefault(kind, []).append(first_arrival[event_id] - event["committed"])
    for kind, values in groups.items():
        result["latency"][kind] = {
            "count": len(values),
            "p50_s": round(percentile(values, 0.5), 3),
            "p99_s": round(percentile(values, 0.99), 3),
            "max_s": round(max(values), 3),
        }
    return result


def main() -> None:
    parser = options.parser("bench.head_of_line", __doc__)
    parser.add_argument("--database", choices=list(BACKENDS), default="postgres")
    parser.add_argument("--server", choices=["gunicorn-gevent", "daphne"], default="gunicorn-gevent")
    parser.add_argument("--shape", choices=list(SHAPES), default="back-to-back")
    options.add(parser, "seconds", "tree", seconds=8.0)
    print(json.dumps(run(parser.parse_args()), indent=2))


if __name__ == "__main__":
    main()
