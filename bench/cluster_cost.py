"""What an event costs a cluster of W processes: worker CPU and database transactions, by backend (issue 21).

W single-worker gunicorn gevent servers of the demo project share a fresh
PostgreSQL database and one wake-up backend (``postgres``, ``redis`` or
``polling``).  Each serves 8 idle SSE streams, each on a channel of its own.
A separate process (bench/publisher.py) then publishes 300 events at 50 a
second, either on a channel nobody follows (``nobody``) or round-robin on
the streams' channels (``one``: one subscriber each).  Reported per event:
the CPU the W workers spent (their threads' run time from /proc, summed) and the same
less what they spend idle over as long (measured just before), and the
database's transactions (``pg_stat_database.xact_commit + xact_rollback``
of the database, the publisher's included) and the hubs' reads of the log
(their health checks' ``log_reads``).  Every event must reach its
subscriber.  Run by hand::

    python -m bench.cluster_cost --workers 1,2,4,8 --backends postgres,redis,polling --cases nobody,one
    python -m bench.cluster_cost --tree /work/old   # the same with another source tree's package
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import httpx

from bench import options
from bench.databases import fresh_database
from tests.support.redis_server import RedisServer
from tests.support.servers import ROOT, manage, project_env, start_server, stop_server

STREAMS_PER_WORKER = 8
EVENTS = 300
RATE = 50.0


def xacts(database_url: str) -> int:
    """Return the database's committed and rolled-back transactions so far (as its statistics say)."""
    import psycopg

    name = database_url.rsplit("/", 1)[1]
    admin = database_url.rsplit("/", 1)[0] + "/test"
    # A backend flushes its statistics at most once a second while busy, and within 10 s once idle
    # (PostgreSQL 15's PGSTAT_IDLE_INTERVAL): read them once every backend has.
    time.sleep(11)
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute("SELECT pg_stat_clear_snapshot()")
        row = connection.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s", [name]
        ).fetchone()
    return int(row[0])


def server_reads(server) -> int:
    """Return how many times the server's hub has read the log (its health check says)."""
    return int(httpx.get(server.events_url() + "health/", timeout=10).json().get("log_reads", 0))


def worker_cpu(pids: list[int]) -> float:
    """Return the CPU seconds *pids* have run, all their threads, to the nanosecond (schedstat, not clock ticks)."""
    total = 0
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except OSError:  # a thread that ended meanwhile
                continue
    return total / 1e9


class Streams:
    """Idle SSE streams, each read on a thread of its own: the events each got."""

    def __init__(self) -> None:
        self.got: dict[str, list[str]] = {}
        self.threads: list[threading.Thread] = []
        self.clients: list[httpx.Client] = []
        self.ready = threading.Semaphore(0)

    def open(self, url: str, channel: str) -> None:
        self.got[channel] = []
        thread = threading.Thread(target=self._read, args=(url, channel), daemon=True)
        thread.start()
        self.threads.append(thread)

    def _read(self, url: str, channel: str) -> None:
        client = httpx.Client(timeout=httpx.Timeout(10, read=None))
        self.clients.append(client)
        try:
            with client.stream("GET", url, params={"channel": channel}) as response:
                if response.status_code != 200:
                    raise RuntimeError(f"{channel}: HTTP {response.status_code}")
                self.ready.release()
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        self.got[channel].append(line)
        except Exception as exc:
            print(f"   stream {channel} ended: {exc!r}", flush=True)

    def close(self) -> None:
        for client in self.clients:
            client.close()


def run_case(args: argparse.Namespace, backend: str, workers: int, case: str, directory: Path) -> dict:
    cwd = Path(args.tree).resolve() if args.tree else ROOT
    with ExitStack() as stack:
        url = stack.enter_context(fresh_database("postgres", directory, f"cluster_{backend}_{workers}"))
        env = {**project_env(url), "REALTIME_BACKEND": backend, "PYTHONPATH": f"{cwd}:{ROOT}"}
        env.pop("REALTIME_KEEPALIVE")  # the default, 15 s: no read every second for keepalives
        if backend == "redis":
            redis = stack.enter_context(RedisServer(directory))
            env["REDIS_URL"] = redis.url
        manage(env, "migrate", "--verbosity", "0")
        servers = []
        for index in range(workers):
            server = start_server("gunicorn-gevent", env, directory / f"w{index}-{backend}-{case}.log", cwd=cwd)
            stack.callback(stop_server, server)
            servers.append(server)
        pids = [server.worker_pid() for server in servers]
        streams = Streams()
        stack.callback(streams.close)
        channels = []
        for index, server in enumerate(servers):
            for n in range(STREAMS_PER_WORKER):
                channel = f"chat:user-{index}-{n}"
                channels.append(channel)
                streams.open(server.events_url(), channel)
        for _ in channels:
            assert streams.ready.acquire(timeout=30), "a stream did not open"
        time.sleep(2.0)
        publisher = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "publisher.py")],
            cwd=cwd,
            env={**env, "DJANGO_SETTINGS_MODULE": "testproject.settings"},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        stack.callback(publisher.kill)
        assert publisher.stdout is not None and publisher.stdin is not None
        assert publisher.stdout.readline().startswith("ready")
        seconds = EVENTS / RATE
        # Idle first, as long as the publishing will take: what the workers spend anyway.
        idle_before = worker_cpu(pids)
        time.sleep(seconds)
        idle = worker_cpu(pids) - idle_before
        xact_before = xacts(url)
        reads_before = sum(server_reads(server) for server in servers)
        cpu_before = worker_cpu(pids)
        started = time.monotonic()
        for seq in range(EVENTS):
            channel = "chat:nobody-follows" if case == "nobody" else channels[seq % len(channels)]
            publisher.stdin.write(f"{seq} {channel}\n")
            publisher.stdin.flush()
            assert publisher.stdout.readline().startswith("ok")
            time.sleep(max(0.0, started + (seq + 1) / RATE - time.monotonic()))
        expected = 0 if case == "nobody" else EVENTS
        deadline = time.monotonic() + 30
        while sum(len(got) for got in streams.got.values()) < expected and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        cpu = worker_cpu(pids) - cpu_before
        elapsed = time.monotonic() - started
        reads = sum(server_reads(server) for server in servers) - reads_before
        delivered = sum(len(got) for got in streams.got.values())
        publisher.stdin.close()
        publisher.wait(30)
        xact = xacts(url) - xact_before
    idle_share = idle * elapsed / seconds
    return {
        "backend": backend,
        "workers": workers,
        "case": case,
        "tree": args.tree or "this checkout",
        "events": EVENTS,
        "delivered": delivered,
        "expected": expected,
        "worker_cpu_per_event_us": round(1e6 * cpu / EVENTS, 1),
        "above_idle_per_event_us": round(1e6 * (cpu - idle_share) / EVENTS, 1),
        "db_transactions_per_event": round(xact / EVENTS, 2),
        "log_reads_per_event": round(reads / EVENTS, 2),
    }


def main() -> None:
    parser = options.parser("bench.cluster_cost", __doc__)
    parser.add_argument("--workers", default="1,2,4,8")
    parser.add_argument("--backends", default="postgres,redis,polling")
    parser.add_argument("--cases", default="nobody,one")
    options.add(parser, "tree")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as directory:
        for backend in args.backends.split(","):
            for case in args.cases.split(","):
                for workers in (int(w) for w in args.workers.split(",")):
                    result = run_case(args, backend, workers, case, Path(directory))
                    print(json.dumps(result), flush=True)
                    results.append(result)


if __name__ == "__main__":
    main()
