"""Measure SSE fan-out: django-realtime on one gunicorn gevent worker against django-eventstream.

For each server and each client count: warm up, then with N idle streams
measure the worker's RSS per stream; publish events at a steady rate, each
carrying its publish time, and measure publish->receive latency at the
clients and the server's CPU time per delivered event; check that every
stream got every event.  See bench/README.md.

    python -m bench.run --peer-venv /work/peer-venv
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import options, report
from bench.clients import ClientPool, Stream, raise_fd_limit
from bench.servers import (
    HttpPublisher,
    ProcessPublisher,
    Target,
    get_json,
    gunicorn_gevent,
    measured_server,
    migrate,
    stop_all,
    wait_for_quiet,
)
from tests.support.processes import steady_memory_kb


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = options.parser("bench.run", __doc__)
    parser.add_argument("--clients", default="1000,100", help="comma-separated stream counts (default: 1000,100)")
    options.add(parser, "events", "rate", "backend")
    parser.add_argument(
        "--publisher",
        choices=["http", "process", "both"],
        default="both",
        help="ours: publish() inside the server via POST /bench/publish/, from a separate process, or both",
    )
    parser.add_argument(
        "--metrics",
        default="default",
        help="ours: comma-separated REALTIME METRICS runs: default (the settings'), off, on, multiprocess "
        "(on, with PROMETHEUS_MULTIPROC_DIR); one target each (default: default)",
    )
    parser.add_argument(
        "--payload",
        default="plain",
        help="ours: comma-separated event payloads, one target each: plain ({t, seq}) or html ({t, seq} and a "
        "live model's replace action, 444 bytes of HTML: docs/live.md) (default: plain)",
    )
    parser.add_argument(
        "--our-servers",
        default="gunicorn-gevent",
        help="ours: comma-separated servers of the bench site: gunicorn-gevent, gunicorn-realtime (the package's "
        "worker, django_realtime.gunicorn_worker.GeventWorker), daphne, uvicorn (default: gunicorn-gevent)",
    )
    parser.add_argument("--peer-venv", type=Path, help="venv with django-eventstream, daphne, uvicorn (else no peer)")
    parser.add_argument("--peer-servers", default="daphne,uvicorn", help="ASGI servers for the peer")
    parser.add_argument("--only", default="ours,peer,floor", help="which of ours,peer,floor to run (default: all)")
    options.add(parser, "warmup_events", "idle", "drain", "client_processes", "max_background")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL"),
        help="database of both sides (default: $DATABASE_URL, else a fresh SQLite file per run)",
    )
    options.add(parser, "out")
    return parser.parse_args(argv)


def our_targets(args: argparse.Namespace) -> list[Target]:
    modes = ["http", "process"] if args.publisher == "both" else [args.publisher]
    return [
        Target(
            key="ours",
            name=f"django-realtime, {server_name(server)}, {args.backend}"
            + ("" if kind == "default" else f", metrics {kind}")
            + ("" if payload == "plain" else f", payload {payload}"),
            python=sys.executable,
            settings="bench.site.settings",
            server_argv=our_server_argv(server),
            forks=server.startswith("gunicorn"),
            publisher=mode,
            env={"REALTIME_BACKEND": args.backend, "DJANGO_DEBUG": "0", "BENCH_PAYLOAD": payload, **metrics_env(kind)},
        )
        for server in args.our_servers.split(",")
        for kind in args.metrics.split(",")
        for payload in payloads(args.payload)
        for mode in modes
    ]


def server_name(server: str) -> str:
    return {"gunicorn-gevent": "gunicorn gevent", "gunicorn-realtime": "gunicorn, the package's worker"}.get(
        server, server
    )


def our_server_argv(server: str) -> list[str]:
    """Return the ``server_argv`` of the bench site on *server* (its ASGI application under daphne and uvicorn)."""
    if server == "gunicorn-gevent":
        return gunicorn_gevent()
    if server == "gunicorn-realtime":
        return gunicorn_gevent(worker_class="django_realtime.gunicorn_worker.GeventWorker")
    if server == "daphne":
        return ["daphne", "-b", "127.0.0.1", "-p", "{port}", "bench.site.asgi:application"]
    if server == "uvicorn":
        return [
            *("uvicorn", "--host", "127.0.0.1", "--port", "{port}", "--lifespan", "off"),
            *("--no-access-log", "--log-level", "warning", "bench.site.asgi:application"),
        ]
    raise SystemExit(f"--our-servers: {server!r} is not gunicorn-gevent, gunicorn-realtime, daphne or uvicorn")


def payloads(given: str) -> list[str]:
    """Return the --payload kinds, checked."""
    kinds = given.split(",")
    for kind in kinds:
        if kind not in ("plain", "html"):
            raise SystemExit(f"--payload: {kind!r} is not plain or html")
    return kinds


def metrics_env(kind: str) -> dict[str, str]:
    """Return the environment of a server whose REALTIME METRICS are *kind* (docs/metrics.md)."""
    if kind == "default":
        return {}
    if kind not in ("off", "on", "multiprocess"):
        raise SystemExit(f"--metrics: {kind!r} is not default, off, on or multiprocess")
    env = {"REALTIME_JSON": json.dumps({"METRICS": kind != "off"})}
    if kind == "multiprocess":
        env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="django-realtime-bench-prometheus-")
    return env


def peer_targets(args: argparse.Namespace) -> list[Target]:
    python = args.peer_venv / "bin" / "python" if args.peer_venv else None
    if python is None or not python.exists():
        print(f"peer skipped: no python in --peer-venv ({args.peer_venv}); see bench/README.md", file=sys.stderr)
        return []
    commands = {
        "daphne": ["daphne", "-b", "127.0.0.1", "-p", "{port}", "bench.peer_site.asgi:application"],
        "uvicorn": [
            "uvicorn",
            "--host",
            "127.0.0.1",
            "--port",
            "{port}",
            "--lifespan",
            "off",
            "--no-access-log",
            "--log-level",
            "warning",
            "bench.peer_site.asgi:application",
        ],
    }
    targets = []
    for server in args.peer_servers.split(","):
        if subprocess.run([python, "-c", f"import {server}"], capture_output=True).returncode:
            print(f"peer on {server} skipped: {server} is not installed in {args.peer_venv}", file=sys.stderr)
            continue
        targets.append(
            Target(
                key="peer",
                name=f"django-eventstream, {server}, stored",
                python=str(python),
                settings="bench.peer_site.settings",
                server_argv=commands[server],
                forks=False,
            )
        )
    return targets


def floor_targets(args: argparse.Namespace) -> list[Target]:
    return [
        Target(
            key="floor",
            name="floor: bare asyncio writer",
            python=sys.executable,
            settings=None,
            server_argv=["bench.floor_server", "--port", "{port}"],
            forks=False,
        )
    ]


def publish_paced(
    publisher: Any, seqs: range | list[int], rate: float, channel: Callable[[int], str] | None = None
) -> float:
    """Publish *seqs* at *rate* per second, each once the previous one returned; return the achieved rate.

    Each on ``channel(seq)`` if given, else on the bench channel.
    """
    started = last = time.monotonic()
    for i, seq in enumerate(seqs):
        delay = started + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        last = time.monotonic()
        if channel is None:
            publisher.publish(seq)
        else:
            publisher.publish(seq, channel(seq))
    return (len(seqs) - 1) / (last - started) if last > started else float("inf")


def stream_class(target: Target) -> type[Stream]:
    """Return the client class that speaks *target*'s transport."""
    if target.transport == "ws":
        from bench.ws_clients import WebSocketStream

        return WebSocketStream
    return Stream


def wait_delivered(pool: ClientPool, deadline: float) -> dict[str, int]:
    """Wait until the streams have every event the last ``pool.reset()`` expects, or *deadline* passes."""
    while True:
        status = pool.status()
        if status["received"] >= status["expected"] or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


@dataclass
class FanOut:
    """What :func:`fan_out` measured of the serving processes, each list one figure per process."""

    warm: dict[str, Any]
    rss_idle0: list[int]
    opened: dict[str, Any]
    cpu_open: float
    rss_idle_n: list[int]
    idle: options.Cost
    rate: float
    status: dict[str, int]
    cost: options.Cost
    results: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        """Return the keywords of ``report.summarise`` that it measured."""
        return {
            "warm": self.warm,
            "opened": self.opened,
            "cpu_open": self.cpu_open,
            "rss_idle0": sum(self.rss_idle0),
            "rss_idle_n": sum(self.rss_idle_n),
            "cpu_used": self.cost.cpu_used,
            "wall": self.cost.wall,
            "rate": self.rate,
            "status": self.status,
            "results": self.results,
            "machine_seconds": self.cost.machine_seconds,
        }


def fan_out(
    args: argparse.Namespace,
    pool: ClientPool,
    publisher: Any,
    pids: list[int],
    open_streams: Callable[[int], dict[str, Any]],
    streams: int,
    *,
    warm_streams: int = 20,
    farewell: Sequence[int] = tuple(range(-1000, -1005, -1)),
    farewell_rate: float = 10,
    channel: Callable[[int], str] | None = None,
    owners: Sequence[int] | None = None,
) -> FanOut:
    """Measure a fan-out to *streams* streams (``open_streams(n)`` opens n) served by *pids*: CPU, RSS, latency, loss.

    Warm up first: every code path once on *warm_streams* streams, which
    then close, and the *farewell* events make the server notice (a WSGI
    server sees a gone client on its next writes).  Then RSS with no stream;
    open the streams (their CPU); RSS after ``args.idle`` seconds idle (and
    the idle CPU); publish ``args.events`` at ``args.rate`` (each on
    ``channel(seq)`` if given; seq n only for the stream of index
    ``owners[n]`` if given) and wait up to ``args.drain`` seconds for delivery.
    """
    warm = open_streams(warm_streams)
    publish_paced(publisher, range(-1, -args.warmup_events - 1, -1), 50, channel)
    time.sleep(1)
    pool.close_all()
    publish_paced(publisher, list(farewell), farewell_rate, channel)
    time.sleep(1)
    rss_idle0 = [steady_memory_kb(pid) for pid in pids]

    opening = options.Meter(pids)
    opened = open_streams(streams)
    cpu_open = opening.cpu_seconds()
    idling = options.Meter(pids)
    time.sleep(args.idle)
    rss_idle_n = [steady_memory_kb(pid) for pid in pids]
    idle = idling.stop()

    pool.reset(args.events, owners)
    meter = options.Meter(pids)
    rate = publish_paced(publisher, range(args.events), args.rate, channel)
    status = wait_delivered(pool, time.monotonic() + args.drain)
    cost = meter.stop()
    return FanOut(warm, rss_idle0, opened, cpu_open, rss_idle_n, idle, rate, status, cost, pool.results())


def run_one(
    target: Target, clients: int, args: argparse.Namespace, pool: ClientPool, dbdir: Path, logdir: Path
) -> dict:
    """Measure *target* with *clients* streams on a fresh server and database."""
    label = f"{target.name}, publish {target.publisher}, {clients} clients"
    print(f"== {label}", flush=True)
    slug = f"{target.key}-{target.server_argv[0].split('.')[-1]}-{target.publisher}-{clients}"
    if "-k" in target.server_argv and target.server_argv[target.server_argv.index("-k") + 1] != "gevent":
        slug += "-" + target.server_argv[target.server_argv.index("-k") + 1].split(".")[-1]
    if target.env.get("BENCH_PAYLOAD", "plain") != "plain":
        slug += f"-{target.env['BENCH_PAYLOAD']}"
    database_url = args.database_url or f"sqlite:///{dbdir / (slug + '.sqlite3')}"
    log = logdir / f"{slug}.log"
    background = wait_for_quiet(args.max_background)
    migrate(target, database_url)
    with measured_server(target, database_url, log) as (port, pid):
        publisher = None
        try:
            publisher = (
                ProcessPublisher(target, database_url, log) if target.publisher == "process" else HttpPublisher(port)
            )
            kind = stream_class(target)
            measured = fan_out(
                args,
                pool,
                publisher,
                [pid],
                lambda count: pool.open("127.0.0.1", port, target.path, count, kind=kind),
                clients,
                warm_streams=min(20, clients),
            )
            stats = get_json(port, target.stats_path) if target.stats_path else None
        finally:
            pool.close_all()
            if publisher is not None:
                publisher.close()
    return report.summarise(
        target=target,
        clients=clients,
        log=str(log),
        stats=stats,
        background=background,
        **measured.summary(),
    )


#: What a failed run raises: it is recorded in the report, and the other runs go on.
FAILURES: tuple[type[Exception], ...] = (RuntimeError, TimeoutError, OSError, subprocess.SubprocessError)


def run_each(
    counts: Sequence[int],
    targets: Sequence[Target],
    one: Callable[[Target, int], dict[str, Any]],
    failures: tuple[type[Exception], ...] = FAILURES,
) -> list[dict[str, Any]]:
    """Return ``one(target, count)`` for each count and each target, a failure recorded as such.

    The targets alternate at each count, so that what else the machine does hits them alike.
    """
    runs = []
    for count in counts:
        for target in targets:
            try:
                runs.append(one(target, count))
            except failures as exc:
                print(f"   FAILED: {exc}", file=sys.stderr)
                runs.append({"target": asdict(target), "clients": count, "error": str(exc)[:300]})
            print(report.line(runs[-1]), flush=True)
    return runs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sides = args.only.split(",")
    targets = [
        target
        for side, make in (("ours", our_targets), ("peer", peer_targets), ("floor", floor_targets))
        if side in sides
        for target in make(args)
    ]
    return measure(args, targets)


def measure(
    args: argparse.Namespace,
    targets: list[Target],
    prog: str = "bench.run",
    packages: tuple[str, ...] = ("django", "gunicorn", "gevent"),
) -> int:
    """Run every target at every client count of *args*, print the report and write it to ``args.out``."""
    counts = options.counts(args.clients)
    raise_fd_limit(max(counts) * 2 + 1000)
    stamp = options.stamp(prog)
    logdir = args.out / f"{stamp}-logs"
    logdir.mkdir(parents=True)
    meta = report.machine(args, sys.argv, targets, prog, packages)  # before the runs: the commit under test
    pool = ClientPool(args.client_processes, max(counts))
    try:
        with tempfile.TemporaryDirectory(prefix="django-realtime-bench-") as tmp:
            runs = run_each(counts, targets, lambda target, n: run_one(target, n, args, pool, Path(tmp), logdir))
    finally:
        pool.stop()
        stop_all()
    options.write_results(args.out, stamp, {"meta": meta, "runs": runs}, report.markdown(meta, runs))
    return 0 if all("error" not in run for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
