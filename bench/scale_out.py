"""Measure scale-out: SSE fan-out over several gunicorn gevent processes per wake-up backend; publish throughput.

Latency: for each backend (polling, postgres, redis), on a fresh PostgreSQL
database, N SSE streams spread evenly over several single-worker gunicorn
gevent servers, and events published at a steady rate by a separate
long-lived process (``bench.publisher``), so every wake-up crosses processes
through the backend.  Measured as in ``bench.run``: publish->receive
latency, CPU per delivered event and RSS per idle stream (summed over the
servers' workers), and losses.  A reference run puts all N streams on one
worker and publishes inside it (a POST), so nothing crosses processes.

Throughput: for each database and backend, one process calls
``publish()`` in a loop for a few seconds (``bench.throughput``), with no
server running; optionally django-eventstream's ``send_event()`` too.

    python -m bench.scale_out --peer-venv /work/peer-venv
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from bench import options, report
from bench.clients import ClientPool, raise_fd_limit
from bench.databases import fresh_database
from bench.run import fan_out
from bench.servers import (
    ROOT,
    HttpPublisher,
    ProcessPublisher,
    Target,
    environment,
    gunicorn_gevent,
    measured_pid,
    migrate,
    start_server,
    stop,
    stop_all,
    wait_for_quiet,
    wait_ready,
)

THROUGHPUT_CASES = "sqlite:polling,postgres:polling,postgres:postgres,postgres:redis,postgres:postgres:atomic"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = options.parser("bench.scale_out", __doc__)
    parser.add_argument("--only", default="latency,throughput", help="which of latency,throughput to run")
    parser.add_argument("--clients", type=int, default=1000, help="streams in all (default: 1000)")
    parser.add_argument("--servers", type=int, default=2, help="gunicorn processes sharing them (default: 2)")
    parser.add_argument("--backends", default="polling,postgres,redis", help="backends to measure (default: all)")
    parser.add_argument(
        "--reference",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run every stream on one worker with publish() inside it (default: on)",
    )
    options.add(parser, "events", "rate", "warmup_events", "idle", "drain", "client_processes", "max_background")
    parser.add_argument(
        "--database", choices=["postgres", "sqlite"], default="postgres", help="the latency runs' database"
    )
    options.add(parser, "postgres")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0", help="Redis of the redis backend")
    parser.add_argument(
        "--throughput-cases",
        default=THROUGHPUT_CASES,
        help=f"database:backend[:atomic] list (default: {THROUGHPUT_CASES})",
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds each throughput case publishes")
    parser.add_argument("--peer-venv", type=Path, help="venv with django-eventstream: also measure send_event()")
    options.add(parser, "out")
    return parser.parse_args(argv)


def ours(backend: str, args: argparse.Namespace, **changes: Any) -> Target:
    target = Target(
        key="ours",
        name=f"{args.servers} × gunicorn gevent, {backend}",
        python=sys.executable,
        settings="bench.site.settings",
        server_argv=gunicorn_gevent(),
        forks=True,
        publisher="process",
        env={"REALTIME_BACKEND": backend, "DJANGO_DEBUG": "0", "REDIS_URL": args.redis_url},
    )
    return replace(target, **changes)


def latency_targets(args: argparse.Namespace) -> list[tuple[Target, int]]:
    """Return (target, server count) pairs: the reference first, then each backend."""
    pairs = []
    if args.reference:
        reference = ours("polling", args, name="1 × gunicorn gevent, polling (reference)", publisher="http")
        pairs.append((reference, 1))
    pairs += [(ours(backend, args), args.servers) for backend in args.backends.split(",")]
    return pairs


def open_spread(pool: ClientPool, ports: list[int], path: str, per_server: int) -> dict[str, Any]:
    """Open *per_server* streams on each server; merge what the pool reports."""
    replies = [pool.open("127.0.0.1", port, path, per_server) for port in ports]
    return {
        "opened": sum(r["opened"] for r in replies),
        "failed": sum(r["failed"] for r in replies),
        "errors": [e for r in replies for e in r["errors"]][:5],
        "seconds": sum(r["seconds"] for r in replies),
    }


def run_latency(
    target: Target, servers: int, args: argparse.Namespace, pool: ClientPool, tmp: Path, logdir: Path
) -> dict[str, Any]:
    """Measure *target* on *servers* fresh servers sharing one fresh database."""
    clients = args.clients
    backend = target.env["REALTIME_BACKEND"]
    print(f"== {target.name}, publish {target.publisher}, {clients} clients", flush=True)
    slug = f"{backend}-{servers}x-{target.publisher}-{clients}"
    log = logdir / f"{slug}.log"
    background = wait_for_quiet(args.max_background)
    with fresh_database(args.database, tmp, slug, args.postgres) as database_url:
        migrate(target, database_url)
        procs, ports, publisher = [], [], None
        try:
            for _ in range(servers):
                proc, port = start_server(target, database_url, log)
                procs.append(proc)
                ports.append(port)
            for proc, port in zip(procs, ports, strict=True):
                wait_ready(proc, port)
            pids = [measured_pid(target, proc) for proc in procs]
            if target.publisher == "process":
                publisher = ProcessPublisher(target, database_url, log)
            else:
                publisher = HttpPublisher(ports[0])
            # Warm-up, as in bench.run: every code path once, then the streams closed and noticed.
            measured = fan_out(
                args,
                pool,
                publisher,
                pids,
                lambda count: open_spread(pool, ports, target.path, count),
                clients // servers,
                warm_streams=min(20, clients),
            )
            if [measured_pid(target, proc) for proc in procs] != pids:
                raise RuntimeError("a measured worker was replaced during the run")
        finally:
            pool.close_all()
            if publisher is not None:
                publisher.close()
            for proc in procs:
                stop(proc)
    run = report.summarise(target=target, clients=clients, log=str(log), background=background, **measured.summary())
    run["servers"] = servers
    run["backend"] = backend
    run["database"] = args.database
    run["per_server_cpu_seconds"] = [round(c, 2) for c in measured.cost.per_process]
    run["per_server_kb_per_stream"] = [
        round((n - z) / (clients // servers), 1) for z, n in zip(measured.rss_idle0, measured.rss_idle_n, strict=True)
    ]
    return run


def throughput_cases(args: argparse.Namespace) -> list[dict[str, Any]]:
    cases = []
    for spec in args.throughput_cases.split(","):
        database, backend, *flags = spec.split(":")
        cases.append({"database": database, "backend": backend, "api": "realtime", "atomic": "atomic" in flags})
    python = args.peer_venv / "bin" / "python" if args.peer_venv else None
    if python is not None and python.exists():
        for database in sorted({case["database"] for case in cases}):
            if database == "postgres" and subprocess.run([python, "-c", "import psycopg"]).returncode:
                print("peer throughput on postgres skipped: no psycopg in --peer-venv", file=sys.stderr)
                continue
            cases.append({"database": database, "backend": "-", "api": "eventstream", "atomic": False})
    elif args.peer_venv:
        print(f"peer throughput skipped: no python in --peer-venv ({args.peer_venv})", file=sys.stderr)
    return cases


def run_throughput(case: dict[str, Any], args: argparse.Namespace, tmp: Path, logdir: Path) -> dict[str, Any]:
    """Publish in a loop from one fresh process on a fresh database; return its figures."""
    peer = case["api"] == "eventstream"
    target = Target(
        key="peer" if peer else "ours",
        name="django-eventstream send_event()" if peer else f"publish(), {case['backend']}",
        python=str(args.peer_venv / "bin" / "python") if peer else sys.executable,
        settings="bench.peer_site.settings" if peer else "bench.site.settings",
        server_argv=[],
        forks=False,
        env={} if peer else {"REALTIME_BACKEND": case["backend"], "DJANGO_DEBUG": "0", "REDIS_URL": args.redis_url},
    )
    label = f"{case['api']}-{case['database']}-{case['backend']}{'-atomic' if case['atomic'] else ''}"
    print(f"== throughput: {target.name} on {case['database']}{', atomic' if case['atomic'] else ''}", flush=True)
    background = wait_for_quiet(args.max_background)
    argv = [target.python, "-m", "bench.throughput", "--seconds", str(args.seconds), "--api", case["api"]]
    if case["atomic"]:
        argv.append("--atomic")
    with fresh_database(case["database"], tmp, "tp-" + label.replace("eventstream", "es"), args.postgres) as url:
        migrate(target, url)
        with open(logdir / f"throughput-{label}.log", "ab") as log:
            done = subprocess.run(
                argv,
                cwd=ROOT,
                env=environment(target, url),
                stdout=subprocess.PIPE,
                stderr=log,
                timeout=args.seconds + 120,
                check=True,
            )
    figures = json.loads(done.stdout.decode().strip().splitlines()[-1])
    print(f"   {figures}", flush=True)
    return {**case, "name": target.name, **figures, "background_cores": round(background, 2)}


def ratio(value: float | None, base: float | None) -> str:
    return f"{value / base:.2f}" if value and base else "n/a"


def markdown(meta: dict[str, Any], runs: list[dict[str, Any]], rates: list[dict[str, Any]]) -> str:
    if runs:
        out = [report.markdown(meta, runs).rstrip("\n")]
    else:
        out = report.header(meta)
    ok = [run for run in runs if "error" not in run]
    base = next((run for run in ok if run["backend"] == "polling" and run["servers"] > 1), None)
    reference = next((run for run in ok if run["servers"] == 1), None)
    if ok:
        out += [
            "",
            "Per server (worker CPU seconds over the publishing phase; KB per idle stream):",
            "",
        ]
        out += [
            f"- {run['target']['name']}: {run['per_server_cpu_seconds']} s; {run['per_server_kb_per_stream']} KB"
            for run in ok
        ]
    if base or reference:
        out += [
            "",
            "Ratios (below 1: lower, i.e. better), same run:",
            "",
            "| run | against | p50 | p99 | CPU per event | KB per stream |",
            "|---|---|---|---|---|---|",
        ]
        for run in ok:
            for other in (base, reference):
                if other is None or run is other or run is reference:
                    continue
                out.append(
                    f"| {run['target']['name']} | {other['target']['name']} "
                    f"| {ratio(run['p50_ms'], other['p50_ms'])} | {ratio(run['p99_ms'], other['p99_ms'])} "
                    f"| {ratio(run['us_per_event'], other['us_per_event'])} "
                    f"| {ratio(run['kb_per_stream'], other['kb_per_stream'])} |"
                )
    if rates:
        out += [
            "",
            "Publish throughput, one process, each call autocommitted unless marked atomic, no server running:",
            "",
            "| database | call | events/s | µs per call p50 / p99 / max | publisher cores busy "
            "| vs publish() polling, same database | vs send_event(), same database |",
            "|---|---|---|---|---|---|---|",
        ]
        for rate in rates:
            if "error" in rate:
                out.append(f"| {rate['database']} | {rate['name']} | failed: {rate['error']} | | | | |")
                continue
            same = [r for r in rates if r["database"] == rate["database"] and "error" not in r]
            polling = next((r for r in same if r["backend"] == "polling" and not r["atomic"]), None)
            peer = next((r for r in same if r["api"] == "eventstream"), None)
            call = rate["name"] + (", in atomic()" if rate["atomic"] else "")
            out.append(
                f"| {rate['database']} | {call} | {rate['events_per_s']:,} "
                f"| {rate['p50_us']} / {rate['p99_us']} / {rate['max_us']} | {rate['cores']} "
                f"| {ratio(rate['events_per_s'], polling and polling['events_per_s'])} "
                f"| {ratio(rate['events_per_s'], peer and peer['events_per_s'])} |"
            )
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    parts = args.only.split(",")
    pairs = latency_targets(args) if "latency" in parts else []
    raise_fd_limit(args.clients * 2 + 1000)
    stamp = options.stamp("bench.scale_out")
    logdir = args.out / f"{stamp}-logs"
    logdir.mkdir(parents=True)
    packages = ("django", "gunicorn", "gevent", "psycopg", "redis")
    meta = report.machine(args, sys.argv, [target for target, _ in pairs], "bench.scale_out", packages)
    runs: list[dict[str, Any]] = []
    rates: list[dict[str, Any]] = []
    failures = (RuntimeError, TimeoutError, OSError, subprocess.SubprocessError, ValueError)
    pool = ClientPool(args.client_processes, args.clients) if pairs else None
    try:
        with tempfile.TemporaryDirectory(prefix="django-realtime-bench-") as tmp:
            for target, servers in pairs:
                try:
                    runs.append(run_latency(target, servers, args, pool, Path(tmp), logdir))
                except failures as exc:
                    print(f"   FAILED: {exc}", file=sys.stderr)
                    runs.append({"target": asdict(target), "clients": args.clients, "error": str(exc)[:300]})
                print(report.line(runs[-1]), flush=True)
            if "throughput" in parts:
                for case in throughput_cases(args):
                    try:
                        rates.append(run_throughput(case, args, Path(tmp), logdir))
                    except failures as exc:
                        print(f"   FAILED: {exc}", file=sys.stderr)
                        rates.append({**case, "name": case["api"], "error": str(exc)[:300]})
    finally:
        if pool is not None:
            pool.stop()
        stop_all()
    payload = {"meta": meta, "runs": runs, "throughput": rates}
    options.write_results(args.out, stamp, payload, markdown(meta, runs, rates))
    return 0 if all("error" not in item for item in [*runs, *rates]) else 1


if __name__ == "__main__":
    sys.exit(main())
