"""Measure per-user channels: N SSE streams on one gunicorn gevent worker, each on a channel of its own.

For each stream count and each source tree of the package, on a fresh
PostgreSQL database with the ``postgres`` backend: open N streams, stream i
following ``user:i``; publish events at a steady rate from a separate
long-lived process (``bench.publisher``), event k on ``user:(k * stride mod
N)``, so that every event has exactly one subscriber; measure the worker's
CPU per delivered event, publish->receive latency, RSS per idle stream, and
check that each stream got exactly its events.  With ``--tree`` the server
and the publisher import ``django_realtime`` and the demo project from
another source tree (a ``git worktree`` of an older commit, say), so two
versions are measured in one run.  With ``--floor`` a bare gevent server
(``bench.wake_floor``: LISTEN, one query, a send per subscriber) is measured
beside them, as a floor on the CPU a wake-up costs.  See bench/README.md.

    python -m bench.per_user --tree /tmp/base-tree --tree .
"""

from __future__ import annotations

import argparse
import math
import resource
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from bench import options, report
from bench.clients import ClientPool, raise_fd_limit
from bench.databases import fresh_database
from bench.run import FAILURES, fan_out, run_each
from bench.servers import (
    ROOT,
    ProcessPublisher,
    Target,
    get_json,
    gunicorn_gevent,
    measured_server,
    migrate,
    package_dir,
    stop_all,
    wait_for_quiet,
)

#: What stream i opens: its own channel, user:i (public in bench.site.settings).
PATH = "/events/?channel=user%3A{i}"
#: Descriptors the worker needs besides its streams: listener, database, log, the hub.
SPARE_CONNECTIONS = 200
#: --worker-class: gunicorn's -k, and how the run names it.
WORKER_CLASSES = {
    "gevent": ("gevent", "gunicorn gevent"),
    "ours": ("django_realtime.gunicorn_worker.GeventWorker", "gunicorn, the package's worker"),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = options.parser("bench.per_user", __doc__)
    parser.add_argument(
        "--streams", default="10,1000,10000", help="comma-separated stream counts (default: 10,1000,10000)"
    )
    parser.add_argument(
        "--tree",
        action="append",
        type=Path,
        help="source tree to import django_realtime from; repeat to compare trees in one run (default: this checkout)",
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also measure bench.wake_floor (bare gevent, LISTEN, one query and a send per event) at each stream count",
    )
    options.add(parser, "events", "rate", events=1000, rate=100.0)
    parser.add_argument(
        "--stride",
        type=int,
        default=7919,
        help="event k goes to user:(k * stride mod N); raised to the next number coprime with N (default: 7919)",
    )
    options.add(parser, "warmup_events")
    parser.add_argument(
        "--idle",
        type=float,
        default=16.0,
        help="seconds streams sit idle before RSS is read; idle CPU is read over them: at least two keepalive "
        "ticks (KEEPALIVE/2 apart, 7.5 s by default) (default: 16)",
    )
    parser.add_argument(
        "--keepalive",
        type=float,
        help="the server's KEEPALIVE, seconds (REALTIME_KEEPALIVE, read by the demo settings; default: the package's)",
    )
    parser.add_argument(
        "--worker-class",
        choices=list(WORKER_CLASSES),
        default="gevent",
        help="gunicorn's worker: gevent, or ours, the package's (its waiting streams parked) (default: gevent)",
    )
    options.add(parser, "drain", "client_processes", "max_background", "postgres", "out")
    args = parser.parse_args(argv)
    args.tree = [tree.resolve() for tree in args.tree or [ROOT]]
    return args


def label(tree: Path) -> str:
    return "this checkout" if tree == ROOT else str(tree)


def target(tree: Path, max_streams: int, keepalive: float | None = None, worker_class: str = "gevent") -> Target:
    """Return one gunicorn worker (gevent, or the package's) on the postgres backend, importing django_realtime
    from *tree*."""
    worker, name = WORKER_CLASSES[worker_class]
    argv = gunicorn_gevent(max_streams + SPARE_CONNECTIONS, worker_class=worker)
    return Target(
        key="ours",
        name=f"{label(tree)}: {name}, postgres",
        python=sys.executable,
        settings="bench.site.settings",
        server_argv=argv,
        forks=True,
        publisher="process",
        env={
            "REALTIME_BACKEND": "postgres",
            "DJANGO_DEBUG": "0",
            **({"REALTIME_KEEPALIVE": str(keepalive)} if keepalive is not None else {}),
        },
        path=PATH,
        tree=None if tree == ROOT else str(tree),
    )


#: The name of the floor target; the report's first column shows what precedes the colon.
FLOOR_NAME = "wake floor: bare gevent StreamServer, psycopg LISTEN + SELECT, no Django"


def floor_target() -> Target:
    """Return bench.wake_floor: the least a gevent process does per wake-up, fed by the same publisher."""
    return Target(
        key="floor",
        name=FLOOR_NAME,
        python=sys.executable,
        # Not for the server (no Django there), for migrate and the publisher: the schema and publish().
        settings="bench.site.settings",
        server_argv=["bench.wake_floor", "--port", "{port}"],
        forks=False,
        publisher="process",
        env={"REALTIME_BACKEND": "postgres", "DJANGO_DEBUG": "0"},
        path=PATH,
    )


def coprime_stride(stride: int, streams: int) -> int:
    """Return the first number from *stride* up that is coprime with *streams*: then min(events, N) streams get one."""
    while math.gcd(stride, streams) != 1:
        stride += 1
    return stride


def check_package(what: str, found: str, target: Target) -> None:
    expected = str(package_dir(target))
    if found != expected:
        raise RuntimeError(f"the {what} imported django_realtime from {found}, not from {expected}")


def run_one(
    target: Target, streams: int, args: argparse.Namespace, pool: ClientPool, tmp: Path, logdir: Path
) -> dict[str, Any]:
    """Measure *target* with *streams* streams, one channel each, on a fresh server and database."""
    print(f"== {target.name}, {streams} streams", flush=True)
    floor = target.key == "floor"
    slug = f"{'floor' if floor else 'base' if target.tree else 'here'}-{streams}"
    log = logdir / f"{'wake_floor' if floor else Path(target.tree or ROOT).name}-{streams}.log"
    stride = coprime_stride(args.stride, streams)
    owners = [seq * stride % streams for seq in range(args.events)]
    background = wait_for_quiet(args.max_background)
    with fresh_database("postgres", tmp, slug, args.postgres) as database_url:
        migrate(target, database_url)
        with measured_server(target, database_url, log) as (port, pid):
            publisher = None
            try:
                info = get_json(port, "/bench/info/")
                if not floor:  # the floor imports no django_realtime
                    check_package("server", info["django_realtime"], target)
                if info["pid"] != pid:
                    raise RuntimeError(f"/bench/info/ answered from pid {info['pid']}, not the worker {pid}")
                publisher = ProcessPublisher(target, database_url, log)
                check_package("publisher", publisher.package, target)  # the floor's too: this checkout's

                # Warm-up, as in bench.run, on the warm-up streams' own channels; after they
                # close, one event per channel so the worker writes to, and drops, each.
                few = min(20, streams)
                measured = fan_out(
                    args,
                    pool,
                    publisher,
                    [pid],
                    lambda count: pool.open("127.0.0.1", port, target.path, count, timeout=120 + count / 20),
                    streams,
                    warm_streams=few,
                    farewell=range(-1001, -1001 - few, -1),
                    farewell_rate=20,
                    channel=lambda seq: f"user:{-seq % few if seq < 0 else owners[seq]}",
                    owners=owners,
                )
                idle_cores = sum(measured.idle.cpu_used) / measured.idle.wall
            finally:
                pool.close_all()
                if publisher is not None:
                    publisher.close()
    delivered = measured.results["received"]
    run = report.summarise(target=target, clients=streams, log=str(log), background=background, **measured.summary())
    run["events"] = args.events  # published; each to one stream
    run["stride"] = stride
    run["most_events_per_stream"] = max(Counter(owners).values(), default=0)
    run["django_realtime"] = info.get("django_realtime")
    run["testproject"] = info.get("testproject")
    run["publisher_django_realtime"] = publisher.package
    run["idle_server_cores"] = round(idle_cores, 3)
    # What the worker spends with no event at all (keepalive ticks, with many streams) is not per event.
    net = sum(measured.cost.cpu_used) - idle_cores * measured.cost.wall
    run["us_per_event_net_of_idle"] = round(net * 1e6 / delivered, 1) if delivered else None
    return run


def _ratio(value: float | None, base: float | None) -> str:
    return f"{value / base:.2f}" if value and base else "n/a"


def _slopes(base: dict[str, Any], others: list[dict[str, Any]], key: str) -> dict[int, float]:
    """Return, for each run of *others*, what each stream beyond *base*'s added to *key* (µs per event).

    If a wake-up touched every stream, CPU per event would be the wake-up's plus N times this.
    """
    return {
        r["streams"]: round((r[key] - base[key]) / (r["streams"] - base["streams"]), 3)
        for r in others
        if r["streams"] > base["streams"] and r[key] is not None and base[key] is not None
    }


def derived(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per tree: CPU per wake-up (per event with the fewest streams) and what each further stream adds per event."""
    out = []
    for tree in dict.fromkeys(run["target"]["name"] for run in runs):
        mine = sorted(
            (r for r in runs if r["target"]["name"] == tree and r.get("us_per_event")), key=lambda r: r["streams"]
        )
        if not mine:
            continue
        base = mine[0]
        out.append(
            {
                "tree": tree.split(":", 1)[0],
                "key": base["target"]["key"],
                "wakeup_streams": base["streams"],
                "us_per_wakeup": base["us_per_event"],
                "us_per_wakeup_net_of_idle": base["us_per_event_net_of_idle"],
                "us_per_further_stream": _slopes(base, mine[1:], "us_per_event"),
                "us_per_further_stream_net_of_idle": _slopes(base, mine[1:], "us_per_event_net_of_idle"),
            }
        )
    return out


def floor_lines(slopes: list[dict[str, Any]]) -> list[str]:
    """Return "per wake-up: ours X µs, floor Y µs, ratio" for each tree measured beside the floor."""
    floor = next((s for s in slopes if s["key"] == "floor"), None)
    if floor is None:
        return []
    out = []
    for slope in slopes:
        if slope is floor:
            continue
        where = (
            f" ({slope['wakeup_streams']:,} streams)"
            if slope["wakeup_streams"] == floor["wakeup_streams"]
            else f" (ours at {slope['wakeup_streams']:,} streams, floor at {floor['wakeup_streams']:,})"
        )
        out.append(
            f"- per wake-up: {slope['tree']} {slope['us_per_wakeup']} µs, floor {floor['us_per_wakeup']} µs, "
            f"ratio {_ratio(slope['us_per_wakeup'], floor['us_per_wakeup'])}; net of idle "
            f"{slope['us_per_wakeup_net_of_idle']} µs, {floor['us_per_wakeup_net_of_idle']} µs, "
            f"ratio {_ratio(slope['us_per_wakeup_net_of_idle'], floor['us_per_wakeup_net_of_idle'])}{where}"
        )
    return out


def markdown(meta: dict[str, Any], runs: list[dict[str, Any]], slopes: list[dict[str, Any]]) -> str:
    has_floor = any(run["target"]["key"] == "floor" for run in runs)
    out = [
        *report.header(meta),
        "",
        "Each stream on a channel of its own, each event on one of them (one subscriber), published from another "
        "process; one gunicorn gevent worker, postgres backend, PostgreSQL log. Net of idle: minus what the worker "
        "used per second with the streams idle (keepalive ticks), times the phase."
        + (
            " The wake floor (bench/wake_floor.py) is one bare gevent process, no Django: it LISTENs on "
            "the backend's channel, and on each notification runs one SELECT of the rows after the last id "
            "seen and sendall()s each row as SSE to its channel's sockets."
            if has_floor
            else ""
        ),
        "",
        "| tree | streams | CPU µs per delivered event (of which sys) | net of idle | vs fewest streams, same tree "
        "| p50 / p99 / max ms | KB per idle stream | lost / duplicated / unexpected of expected "
        "| events/s achieved | server idle / busy cores; clients; machine | CPU ms per stream opened |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    ok = [run for run in runs if "error" not in run]
    for run in runs:
        tree = run["target"]["name"].split(":", 1)[0]
        if "error" in run:
            out.append(f"| {tree} | {run['clients']:,} | failed: {run['error']} | | | | | | | | |")
            continue
        fewest = min((r for r in ok if r["target"]["name"] == run["target"]["name"]), key=lambda r: r["streams"])
        out.append(
            f"| {tree} | {run['streams']:,} | {run['us_per_event']} ({run['us_per_event_sys']}) "
            f"| {run['us_per_event_net_of_idle']} | {_ratio(run['us_per_event'], fewest['us_per_event'])} "
            f"| {run['p50_ms']} / {run['p99_ms']} / {run['max_ms']} | {run['kb_per_stream']} "
            f"| {run['lost']} / {run['duplicates']} / {run['unexpected']} of {run['expected']:,} "
            f"| {run['rate']} | {run['idle_server_cores']} / {run['server_cores']}; {run['client_cores']}; "
            f"{run['machine_cores']} | {run['cpu_ms_per_open']} |"
        )
    if slopes:
        out += [
            "",
            "CPU per wake-up: at the fewest streams each event is its own wake-up (events come one by one, "
            "slower than the worker handles them), so CPU per event there is CPU per wake-up. "
            "Each further stream adds, per event (µs, net of idle in brackets; 0 if a wake-up touches only "
            "its channel's streams):",
            "",
        ]
        for slope in slopes:
            net = slope["us_per_further_stream_net_of_idle"]
            further = ", ".join(
                f"{v} ({net.get(n)}) at {n:,} streams" for n, v in slope["us_per_further_stream"].items()
            )
            out.append(
                f"- {slope['tree']}: {slope['us_per_wakeup']} ({slope['us_per_wakeup_net_of_idle']}) µs per wake-up "
                f"({slope['wakeup_streams']:,} streams)" + (f"; {further}" if further else "")
            )
    lines = floor_lines(slopes)
    if lines:
        out += [
            "",
            "Against the wake floor, CPU per wake-up (per event at the fewest streams; above 1: ours costs more):",
            "",
            *lines,
        ]
    names = list(dict.fromkeys(run["target"]["name"] for run in ok))
    if len(names) > 1:
        out += [
            "",
            f"Ratios against {names[0].split(':', 1)[0]} (below 1: lower, i.e. better), same stream count, same run:",
            "",
            "| tree | streams | CPU per event | net of idle | p50 | p99 | KB per stream |",
            "|---|---|---|---|---|---|---|",
        ]
        for run in ok:
            base = next((r for r in ok if r["target"]["name"] == names[0] and r["streams"] == run["streams"]), None)
            if base is None or run is base:
                continue
            out.append(
                f"| {run['target']['name'].split(':', 1)[0]} | {run['streams']:,} "
                f"| {_ratio(run['us_per_event'], base['us_per_event'])} "
                f"| {_ratio(run['us_per_event_net_of_idle'], base['us_per_event_net_of_idle'])} "
                f"| {_ratio(run['p50_ms'], base['p50_ms'])} "
                f"| {_ratio(run['p99_ms'], base['p99_ms'])} | {_ratio(run['kb_per_stream'], base['kb_per_stream'])} |"
            )
    out += ["", "Servers:", ""] + [f"- {k}: `{v}`" for k, v in meta["servers"].items()]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    counts = options.counts(args.streams)
    targets = [target(tree, max(counts), args.keepalive, args.worker_class) for tree in args.tree]
    if args.floor:
        targets.append(floor_target())
    # The worker inherits this limit: it holds every stream, plus its database and listener.
    raise_fd_limit(max(counts) + SPARE_CONNECTIONS + 1000)
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < max(counts) + SPARE_CONNECTIONS:
        print(
            f"{max(counts)} streams need RLIMIT_NOFILE above {max(counts) + SPARE_CONNECTIONS}, the hard limit "
            f"allows {soft}: raise it (ulimit -Hn) or use fewer --streams",
            file=sys.stderr,
        )
        return 2
    stamp = options.stamp("bench.per_user")
    logdir = args.out / f"{stamp}-logs"
    logdir.mkdir(parents=True)
    packages = ("django", "gunicorn", "gevent", "psycopg")
    meta = report.machine(args, sys.argv, targets, "bench.per_user", packages)
    pool = ClientPool(args.client_processes, max(counts))
    try:
        with tempfile.TemporaryDirectory(prefix="django-realtime-bench-") as tmp:
            # Trees alternate at each stream count, so that what else the machine does hits them alike.
            runs = run_each(
                counts,
                targets,
                lambda each, streams: run_one(each, streams, args, pool, Path(tmp), logdir),
                (*FAILURES, ValueError),
            )
    finally:
        pool.stop()
        stop_all()
    slopes = derived([run for run in runs if "error" not in run])
    payload = {"meta": meta, "runs": runs, "wakeups": slopes}
    options.write_results(args.out, stamp, payload, markdown(meta, runs, slopes))
    return 0 if all("error" not in run for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
