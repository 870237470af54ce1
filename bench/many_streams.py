"""Hold up to 100,000 SSE streams on this machine and broadcast to all of them (issue 26, item 3).

For each ``--streams`` count N: a fresh database (SQLite by default, or
PostgreSQL), ``migrate``, then the demo project (``testproject.wsgi``, what
users run; ``--application bench.site.wsgi`` for the bench site) under
``gunicorn -k django_realtime.gunicorn_worker.GeventWorker`` (``--worker-class
gevent`` for gunicorn's own) with W = ceil(N / ``--per-worker``) workers,
``MAX_STREAMS`` a little above N / W, every descriptor the hard limit allows
and a long listen backlog.  A publisher in another process
(``bench.publisher``) publishes a start mark; the N streams open on
``/events/?channel=demo:bench&lastEventId=<the mark's id>`` from several
client processes (``bench.many_clients``) over several loopback source
addresses, a few hundred at a time per process, in waves that retry what
failed.  Once all are open and idle, the publisher publishes ``--rate``
events a second (1) for ``--duration`` seconds (60), ``{"t": time, "seq":
n}``, and the runner waits until every stream has every event (or
``--drain`` runs out, or nothing arrived for ``--stall`` seconds).  Each
stream starts from the mark, so one that opened late still gets every
event; every seq is counted per stream.

Reported: streams opened, failed attempts and how long opening took;
delivered, lost (expected - received), duplicated; publish->receive
p50/p99/max; server RSS per stream (sum of the workers' VmRSS with N idle
streams minus with 0 after a warm-up, / N); server CPU per delivery (the
workers' utime+stime over the publishing phase / deliveries); the clients'
and the publisher's CPU and the machine's busy CPU over the same phase; the
kernel's TCP memory (/proc/net/sockstat) and socket slabs (/proc/slabinfo)
with 0 and N streams.

    python -m bench.many_streams --streams 1000,5000       # validate, ~1 minute each
    python -m bench.many_streams --streams 50000 --per-worker 12500
    python -m bench.many_streams                           # 100,000 streams, 8 workers
    python -m bench.many_streams --streams 20000 --per-worker 20000 --duration 10   # RSS at 20,000 per worker
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import os
import resource
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import options, report
from bench.databases import fresh_database
from bench.many_clients import Pool
from bench.options import Meter
from bench.servers import ProcessPublisher, Target, migrate, spawn, start_server, stop, stop_all
from tests.support.processes import (
    machine_busy,
    memory_kb,
    signal_group,
    steady_memory_kb,
    workers_of,
)

WORKER_CLASSES = {"ours": "django_realtime.gunicorn_worker.GeventWorker", "gevent": "gevent"}
CHANNEL = "demo:bench"
#: Kernel slabs a TCP socket takes memory from (those readable here).
SLABS = ("TCP", "sock_inode_cache", "dentry", "filp", "skbuff_head_cache", "eventpoll_epi", "eventpoll_pwq")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = options.parser("bench.many_streams", __doc__)
    parser.add_argument("--streams", default="100000", help="comma-separated stream counts, one run each")
    parser.add_argument("--per-worker", type=int, default=12500, help="streams per gunicorn worker (default: 12500)")
    parser.add_argument("--workers", type=int, help="gunicorn workers (default: streams / --per-worker, rounded up)")
    parser.add_argument("--worker-class", choices=sorted(WORKER_CLASSES), default="ours", help="ours or gevent")
    parser.add_argument("--application", default="testproject.wsgi", help="WSGI module (default: the demo's)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of publishing (default: 60)")
    parser.add_argument("--rate", type=float, default=1.0, help="events per second (default: 1)")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--backend", help="REALTIME BACKEND (default: polling on SQLite, postgres on PostgreSQL)")
    parser.add_argument("--client-processes", type=int, help="client processes (default: one per 14,000 streams)")
    parser.add_argument("--sources", type=int, help="loopback source addresses 127.0.0.2.. (default: one per 14,000)")
    parser.add_argument("--concurrency", type=int, default=100, help="connections each client opens at once")
    parser.add_argument("--connect-timeout", type=float, default=600.0, help="give up opening after this")
    parser.add_argument("--backlog", type=int, default=4096, help="gunicorn --backlog (capped by somaxconn)")
    parser.add_argument(
        "--profile", action="store_true", help="py-spy record the first worker while opening and publishing"
    )
    parser.add_argument(
        "--stall", type=float, default=15.0, help="stop waiting once nothing arrived for this long (default: 15)"
    )
    options.add(parser, "idle", "drain", "postgres", "out", idle=16.0, drain=300.0)
    return parser.parse_args(argv)


def sockstat() -> dict[str, int]:
    """Return the kernel's TCP figures: sockets in use, allocated, and memory in pages (/proc/net/sockstat)."""
    for line in Path("/proc/net/sockstat").read_text().splitlines():
        if line.startswith("TCP:"):
            fields = line.split()[1:]
            return {fields[i]: int(fields[i + 1]) for i in range(0, len(fields), 2)}
    return {}


def slabs() -> dict[str, int]:
    """Return the bytes of the socket-related kernel slabs (active objects × object size), if readable."""
    try:
        lines = Path("/proc/slabinfo").read_text().splitlines()[2:]
    except OSError:
        return {}
    found = {}
    for line in lines:
        fields = line.split()
        if fields[0] in SLABS:
            found[fields[0]] = int(fields[1]) * int(fields[3])
    return found


def descriptors(pid: int) -> int:
    """Return how many descriptors *pid* holds: per worker, its streams plus a few dozen of its own."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_for_workers(proc: Any, port: int, count: int, timeout: float = 90.0) -> list[int]:
    """Wait until gunicorn has *count* workers and one of them answers GET /; return their pids."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with status {proc.returncode}")
        pids = sorted(workers_of(proc.pid))
        if len(pids) == count:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("GET", "/")
                conn.getresponse().read()
                conn.close()
                return pids
            except OSError:
                pass
        time.sleep(0.3)
    raise TimeoutError(f"gunicorn did not start {count} answering workers within {timeout:.0f}s")


@contextlib.contextmanager
def profiled(pid: int, out: Path, wanted: bool) -> Iterator[None]:
    """Record *pid* with py-spy (collapsed stacks, 20 samples a second, without pausing it) for the block."""
    if not wanted:
        yield
        return
    argv = ["py-spy", "record", "--pid", str(pid), "--rate", "20", "--nonblocking", "--format", "raw", "-o", str(out)]
    spy = spawn([str(Path(sys.executable).parent / argv[0]), *argv[1:]], dict(os.environ), out.with_suffix(".log"))
    try:
        yield
    finally:
        signal_group(spy, signal.SIGINT)  # py-spy writes its output at SIGINT
        try:
            spy.wait(30)
        finally:
            stop(spy)


def drain_until(pool: Pool, deadline: float, stall: float) -> None:
    """Wait until every stream has every event, *deadline* passes, or nothing more arrived for *stall* seconds."""
    status = pool.status()
    moved, last = time.monotonic(), status["received"]
    while status["received"] < status["expected"] and time.monotonic() < min(deadline, moved + stall):
        time.sleep(0.2)
        status = pool.status()
        if status["received"] != last:
            moved, last = time.monotonic(), status["received"]


def target_for(args: argparse.Namespace, streams: int, workers: int) -> Target:
    cap = math.ceil(streams / workers * 1.1) + 100
    # RLIMIT_NOFILE is inherited: the runner raised its own to the hard limit.
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    backend = args.backend or ("postgres" if args.database == "postgres" else "polling")
    argv = [
        *("gunicorn", "-k", WORKER_CLASSES[args.worker_class], "-w", str(workers)),
        *("--worker-connections", str(limit), "--backlog", str(args.backlog)),
        # A worker busy opening thousands of streams must not be taken for hung and replaced.
        *("--timeout", "600", "--graceful-timeout", "5", "--no-control-socket"),
        *("-b", "127.0.0.1:{port}", args.application),
    ]
    return Target(
        key="ours",
        name=f"{workers} × gunicorn -k {args.worker_class}, {args.database}, {backend}",
        python=sys.executable,
        settings=args.application.rsplit(".", 1)[0] + ".settings",
        server_argv=argv,
        forks=True,
        publisher="process",
        env={
            "REALTIME_BACKEND": backend,
            "DJANGO_DEBUG": "0",
            "REALTIME_JSON": json.dumps({"MAX_STREAMS": min(cap, limit - 200)}),
        },
    )


def run_one(args: argparse.Namespace, streams: int, tmp: Path, logdir: Path) -> dict[str, Any]:
    workers = args.workers or max(1, math.ceil(streams / args.per_worker))
    processes = args.client_processes or max(2, math.ceil(streams / 14000))
    sources = [f"127.0.0.{2 + i}" for i in range(args.sources or max(2, math.ceil(streams / 14000)))]
    target = target_for(args, streams, workers)
    events = int(args.duration * args.rate)
    result: dict[str, Any] = {
        "name": target.name,
        "streams": streams,
        "workers": workers,
        "client_processes": processes,
        "sources": len(sources),
        "events": events,
        "loadavg_before": Path("/proc/loadavg").read_text().split()[:3],
    }
    before = machine_busy()
    time.sleep(2)
    result["busy_before_cores"] = round((machine_busy() - before) / 2, 2)
    slug = f"many-{streams}"
    with fresh_database(args.database, tmp, slug, args.postgres) as url:
        migrate(target, url)
        pool = Pool(processes)
        server, port = start_server(target, url, logdir / f"{slug}-server.log")
        publisher = None
        try:
            pids = wait_for_workers(server, port, workers)
            publisher = ProcessPublisher(target, url, logdir / f"{slug}-publisher.log")
            print(f"== {streams:,} streams, {workers} workers {pids}, {processes} client processes", flush=True)

            # Warm-up: a few streams per worker, some events, closed, noticed by the next writes.
            pool.open("127.0.0.1", port, f"/events/?channel={CHANNEL}", 20 * workers, sources, 20, 60)
            for seq in (-5, -4, -3):
                publisher.publish(seq)
                time.sleep(0.3)
            pool.close_all()
            for seq in (-3, -2):
                publisher.publish(seq)
                time.sleep(1.0)
            rss_before = sum(steady_memory_kb(pid) for pid in pids)
            fds_before = [descriptors(pid) for pid in pids]
            kernel_before, slabs_before = sockstat(), slabs()

            mark = publisher.publish(-1)
            path = f"/events/?channel={CHANNEL}&lastEventId={mark}"
            opening = Meter(pids)
            with profiled(pids[0], logdir / f"{slug}-opening.txt", args.profile):
                opened = pool.open("127.0.0.1", port, path, streams, sources, args.concurrency, args.connect_timeout)
            cost = opening.stop()
            opened["server_ms_per_stream"] = sum(cost.cpu_used) / max(1, opened["opened"]) * 1000
            opened["machine_cores"] = cost.machine_seconds / cost.wall
            result["connect"] = opened
            print(
                f"   opened {opened['opened']:,} in {opened['seconds']:.1f} s "
                f"({opened['failed_attempts']} failed attempts)",
                flush=True,
            )
            idle = Meter(pids)
            time.sleep(args.idle)
            idle_cost = idle.stop()
            rss_after = sum(steady_memory_kb(pid) for pid in pids)
            # Mostly the keepalives: a comment to each stream every KEEPALIVE seconds, one write each.
            idle_cores = sum(idle_cost.cpu_used) / idle_cost.wall
            result["idle"] = {
                "server_cores": idle_cores,
                "server_us_per_stream_second": idle_cores / max(1, opened["opened"]) * 1e6,
                "machine_cores": idle_cost.machine_seconds / idle_cost.wall,
            }
            kernel_after, slabs_after = sockstat(), slabs()
            per_worker = [descriptors(pid) - fds for pid, fds in zip(pids, fds_before, strict=True)]
            held = opened["opened"]
            result["memory"] = {
                "rss_before_kb": rss_before,
                "rss_after_kb": rss_after,
                "rss_per_stream_kb": (rss_after - rss_before) / held if held else None,
                "streams_per_worker": per_worker,
                "worker_rss_kb": [memory_kb(pid) for pid in pids],
                "tcp_before": kernel_before,
                "tcp_after": kernel_after,
                # Both ends of each stream are on this machine: two sockets per stream.
                "kernel_tcp_pages_per_stream": (kernel_after.get("mem", 0) - kernel_before.get("mem", 0)) / held
                if held
                else None,
                "slab_bytes_per_stream": {
                    name: (slabs_after.get(name, 0) - slabs_before.get(name, 0)) / held for name in slabs_after
                }
                if held
                else {},
            }

            pool.reset(events)
            meters = {
                key: Meter(group)
                for key, group in (("workers", pids), ("clients", pool.pids), ("publisher", [publisher.proc.pid]))
            }
            wall = time.monotonic()
            with profiled(pids[0], logdir / f"{slug}-publishing.txt", args.profile):
                for seq in range(events):
                    delay = wall + seq / args.rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    publisher.publish(seq)
                published = time.monotonic()
                drain_until(pool, published + args.drain, args.stall)
            phase = time.monotonic() - wall
            costs = {key: meter.stop() for key, meter in meters.items()}
            cpu = {key: sum(cost.cpu_used) for key, cost in costs.items()}
            busy = costs["workers"].machine_seconds
            result["workers_user_system_seconds"] = costs["workers"].cpu_used
            result["drain_seconds"] = time.monotonic() - published
            if sorted(workers_of(server.pid)) != pids:
                result["error"] = "a worker was replaced during the run"
            got = pool.results()
        finally:
            if publisher is not None:
                publisher.close()
            pool.stop()
            stop(server)
    latencies = sorted(got.pop("latencies"))
    delivered = got["received"]
    result.update(
        delivered=delivered,
        expected=got["expected"],
        lost=got["expected"] - delivered,
        duplicated=got["duplicates"],
        unexpected=got["unexpected"],
        streams_with_loss=got["streams_with_loss"],
        dropped_connections=got["dropped_connections"],
        latency_ms={
            "p50": report.percentile(latencies, 0.50) * 1000,
            "p99": report.percentile(latencies, 0.99) * 1000,
            "max": (latencies[-1] if latencies else math.nan) * 1000,
        },
        phase_seconds=phase,
        cpu_seconds=cpu,
        server_us_per_delivery=cpu["workers"] / delivered * 1e6 if delivered else None,
        clients_us_per_delivery=cpu["clients"] / delivered * 1e6 if delivered else None,
        server_cores=cpu["workers"] / phase,
        clients_cores=cpu["clients"] / phase,
        machine_cores=busy / phase,
        loadavg_after=Path("/proc/loadavg").read_text().split()[:3],
    )
    return result


def line(run: dict[str, Any]) -> str:
    if "delivered" not in run:
        return f"| {run['name']} | {run['streams']:,} | failed: {run.get('error', '?')} |" + " |" * 9
    memory, connect, latency = run["memory"], run["connect"], run["latency_ms"]
    return (
        f"| {run['name']} | {run['streams']:,} | {connect['opened']:,} in {connect['seconds']:.0f} s "
        f"({connect['failed_attempts']} retried) | {run['delivered']:,} / {run['expected']:,} | "
        f"{run['lost']:,} / {run['duplicated']:,} | "
        f"{latency['p50']:.0f} / {latency['p99']:.0f} / {latency['max']:.0f} | "
        f"{memory['rss_per_stream_kb']:.1f} | {run['server_us_per_delivery']:.1f} | "
        f"{run['clients_us_per_delivery']:.1f} ({run['clients_cores']:.2f} cores) | "
        f"{run['server_cores']:.2f} / {run['machine_cores']:.2f} | {' '.join(run['loadavg_before'])} |"
    )


def markdown(meta: dict[str, Any], runs: list[dict[str, Any]]) -> str:
    rows = [
        f"# bench.many_streams, {meta['date']}",
        "",
        f"`{meta['command']}` at {meta['package']}; {meta['cpu']}, Python {meta['python']}",
        "",
        "| server | streams | opened | delivered / expected | lost / dup | p50 / p99 / max ms | RSS KB per stream "
        "| server µs per delivery | clients µs per delivery | server / machine cores | load before |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *(line(run) for run in runs),
    ]
    return "\n".join(rows) + "\n"


def _read_int(path: str) -> int | None:
    try:
        return int(Path(path).read_text())
    except OSError:
        return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Started in the background by a shell, SIGINT is ignored: let it and SIGTERM end a run through its finally.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # gunicorn and its workers inherit it
    stamp = options.stamp("bench.many_streams")
    logdir = args.out / f"{stamp}-logs"
    logdir.mkdir(parents=True)
    meta = report.machine(args, sys.argv, [], "bench.many_streams", ("django", "gunicorn", "gevent"))
    meta["limits"] = {
        "nofile": hard,
        "ip_local_port_range": Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split(),
        "somaxconn": int(Path("/proc/sys/net/core/somaxconn").read_text()),
        "tcp_max_syn_backlog": int(Path("/proc/sys/net/ipv4/tcp_max_syn_backlog").read_text()),
        # With autogroups, each session (gunicorn's is its own) gets a fair share of the cores,
        # however many processes it has: other sessions' work takes from the workers as a whole.
        "sched_autogroup_enabled": _read_int("/proc/sys/kernel/sched_autogroup_enabled"),
    }
    runs: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="django-realtime-many-") as tmp:
            for streams in options.counts(args.streams):
                try:
                    runs.append(run_one(args, streams, Path(tmp), logdir))
                except (RuntimeError, TimeoutError, OSError, ValueError) as exc:
                    print(f"   FAILED: {exc}", file=sys.stderr)
                    runs.append({"name": "many_streams", "streams": streams, "error": str(exc)[:300]})
                print(line(runs[-1]), flush=True)
    finally:
        stop_all()
    options.write_results(args.out, stamp, {"meta": meta, "runs": runs}, markdown(meta, runs))
    return 0 if all("error" not in run and run.get("lost") == 0 for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
