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
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import report
from bench.clients import ClientPool, Stream, raise_fd_limit
from bench.servers import (
    ROOT,
    HttpPublisher,
    ProcessPublisher,
    Target,
    cpu_times,
    get_json,
    machine_busy,
    measured_pid,
    migrate,
    start_server,
    steady_rss_kb,
    stop,
    stop_all,
    wait_for_quiet,
    wait_ready,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="1000,100", help="comma-separated stream counts (default: 1000,100)")
    parser.add_argument("--events", type=int, default=200, help="events published per run (default: 200)")
    parser.add_argument("--rate", type=float, default=20.0, help="events per second (default: 20)")
    parser.add_argument("--backend", default="polling", help="REALTIME BACKEND of our server (default: polling)")
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
    parser.add_argument("--peer-venv", type=Path, help="venv with django-eventstream, daphne, uvicorn (else no peer)")
    parser.add_argument("--peer-servers", default="daphne,uvicorn", help="ASGI servers for the peer")
    parser.add_argument("--only", default="ours,peer,floor", help="which of ours,peer,floor to run (default: all)")
    parser.add_argument("--warmup-events", type=int, default=20, help="events sent to warm-up streams first")
    parser.add_argument("--idle", type=float, default=3.0, help="seconds streams sit idle before RSS is read")
    parser.add_argument("--drain", type=float, default=10.0, help="seconds to wait for delivery after the last event")
    parser.add_argument("--client-processes", type=int, default=2, help="processes holding the client streams")
    add_background_option(parser)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL"),
        help="database of both sides (default: $DATABASE_URL, else a fresh SQLite file per run)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="results directory")
    return parser.parse_args(argv)


def add_background_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-background",
        type=float,
        default=0.25,
        help="before each run, wait (up to 10 minutes) until the machine uses at most this many cores (default: 0.25)",
    )


def our_targets(args: argparse.Namespace) -> list[Target]:
    modes = ["http", "process"] if args.publisher == "both" else [args.publisher]
    argv = [
        "gunicorn",
        "-k",
        "gevent",
        "-w",
        "1",
        "--worker-connections",
        "2000",
        "-b",
        "127.0.0.1:{port}",
        "bench.site.wsgi",
    ]
    return [
        Target(
            key="ours",
            name=f"django-realtime, gunicorn gevent, {args.backend}"
            + ("" if kind == "default" else f", metrics {kind}")
            + ("" if payload == "plain" else f", payload {payload}"),
            python=sys.executable,
            settings="bench.site.settings",
            server_argv=argv,
            forks=True,
            publisher=mode,
            env={"REALTIME_BACKEND": args.backend, "DJANGO_DEBUG": "0", "BENCH_PAYLOAD": payload, **metrics_env(kind)},
        )
        for kind in args.metrics.split(",")
        for payload in payloads(args.payload)
        for mode in modes
    ]


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


def run_one(
    target: Target, clients: int, args: argparse.Namespace, pool: ClientPool, dbdir: Path, logdir: Path
) -> dict:
    """Measure *target* with *clients* streams on a fresh server and database."""
    label = f"{target.name}, publish {target.publisher}, {clients} clients"
    print(f"== {label}", flush=True)
    slug = f"{target.key}-{target.server_argv[0].split('.')[-1]}-{target.publisher}-{clients}"
    if target.env.get("BENCH_PAYLOAD", "plain") != "plain":
        slug += f"-{target.env['BENCH_PAYLOAD']}"
    database_url = args.database_url or f"sqlite:///{dbdir / (slug + '.sqlite3')}"
    log = logdir / f"{slug}.log"
    background = wait_for_quiet(args.max_background)
    migrate(target, database_url)
    proc, port = start_server(target, database_url, log)
    publisher = None
    try:
        wait_ready(proc, port)
        pid = measured_pid(target, proc)
        publisher = (
            ProcessPublisher(target, database_url, log) if target.publisher == "process" else HttpPublisher(port)
        )
        # Warm-up: load every code path once, then close the streams and make
        # the server notice (a WSGI server sees a gone client on its next writes).
        kind = stream_class(target)
        warm = pool.open("127.0.0.1", port, target.path, min(20, clients), kind=kind)
        publish_paced(publisher, range(-1, -args.warmup_events - 1, -1), 50)
        time.sleep(1)
        pool.close_all()
        publish_paced(publisher, [-1000 - i for i in range(5)], 10)
        time.sleep(1)
        rss_idle0 = steady_rss_kb(pid)

        cpu_before_open = sum(cpu_times(pid))
        opened = pool.open("127.0.0.1", port, target.path, clients, kind=kind)
        cpu_open = sum(cpu_times(pid)) - cpu_before_open
        time.sleep(args.idle)
        rss_idle_n = steady_rss_kb(pid)

        pool.reset(args.events)
        cpu_start = cpu_times(pid)
        machine_start = machine_busy()
        wall_start = time.monotonic()
        rate = publish_paced(publisher, range(args.events), args.rate)
        status = wait_delivered(pool, time.monotonic() + args.drain)
        cpu_end = cpu_times(pid)
        machine_seconds = machine_busy() - machine_start
        cpu_used = (cpu_end[0] - cpu_start[0], cpu_end[1] - cpu_start[1])
        wall = time.monotonic() - wall_start
        results = pool.results()
        stats = get_json(port, target.stats_path) if target.stats_path else None
        if measured_pid(target, proc) != pid:
            raise RuntimeError("the measured worker was replaced during the run")
    finally:
        pool.close_all()
        if publisher is not None:
            publisher.close()
        stop(proc)
    return report.summarise(
        target=target,
        clients=clients,
        warm=warm,
        opened=opened,
        cpu_open=cpu_open,
        rss_idle0=rss_idle0,
        rss_idle_n=rss_idle_n,
        cpu_used=cpu_used,
        wall=wall,
        rate=rate,
        status=status,
        results=results,
        log=str(log),
        stats=stats,
        machine_seconds=machine_seconds,
        background=background,
    )


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
    counts = [int(n) for n in args.clients.split(",")]
    raise_fd_limit(max(counts) * 2 + 1000)
    stamp = time.strftime("%Y%m%d-%H%M%S") + ("" if prog == "bench.run" else "-" + prog.rsplit(".", 1)[-1])
    logdir = args.out / f"{stamp}-logs"
    logdir.mkdir(parents=True)
    meta = report.machine(args, sys.argv, targets, prog, packages)  # before the runs: the commit under test
    runs = []
    pool = ClientPool(args.client_processes, max(counts))
    try:
        with tempfile.TemporaryDirectory(prefix="django-realtime-bench-") as tmp:
            for clients in counts:
                for target in targets:
                    try:
                        runs.append(run_one(target, clients, args, pool, Path(tmp), logdir))
                    except (RuntimeError, TimeoutError, OSError, subprocess.SubprocessError) as exc:
                        print(f"   FAILED: {exc}", file=sys.stderr)
                        runs.append({"target": asdict(target), "clients": clients, "error": str(exc)[:300]})
                    print(report.line(runs[-1]), flush=True)
    finally:
        pool.stop()
        stop_all()
    markdown = report.markdown(meta, runs)
    (args.out / f"{stamp}.json").write_text(json.dumps({"meta": meta, "runs": runs}, indent=2))
    (args.out / f"{stamp}.md").write_text(markdown)
    print("\n" + markdown)
    print(f"results written to {args.out / stamp}.{{json,md}}")
    return 0 if all("error" not in run for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
