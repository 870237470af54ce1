"""Measure delivery latency while the server's own Pruner deletes 60,000 old events (issue 14).

For each database and each source tree: a fresh database seeded with
``--rows`` events created 8+ days ago (one bulk INSERT, spread over a few
channels), one gunicorn gevent worker of the bench site whose Pruner runs
every ``--prune-interval`` seconds, ``--streams`` SSE streams on the bench
channel, and ``bench.publisher`` in a process of its own publishing
``{"t": time.time(), "seq": n}`` at ``--rate``.  This process polls the
count of old rows to find the prune's window from outside, and publishing
goes on until ``--after`` seconds past its end.  Latencies of the events
published in the window are set against those published away from it, in
the same run.  See bench/README.md.

    python -m bench.prune_latency
    python -m bench.prune_latency --database sqlite,postgres --tree . --tree /tmp/prune-old --repeat 3
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import math
import sqlite3
import sys
import tempfile
import threading
import time
from array import array
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import options, report
from bench.clients import ClientPool, Stream
from bench.databases import fresh_database
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
from tests.support.processes import machine_busy

TABLE = "django_realtime_event"
#: Old rows are created this long ago and older: past MAX_AGE (7 days by default).
OLD = timedelta(days=8)
#: Rows younger than MAX_AGE - this are "old" to the poller too: it counts created < now - 7 days.
MAX_AGE = timedelta(days=7)
#: Seconds between two counts of the old rows.
POLL = 0.05
#: Seconds either side of the prune's window whose events count neither as baseline nor as during.
MARGIN = 1.0
#: The settings of the server: the bench site's, with REALTIME_JSON applied after its own
#: REALTIME (which turns the Pruner off, PRUNE_INTERVAL None, for the other runners).
SETTINGS_MODULE = "prune_bench_settings"
SETTINGS_SOURCE = '''"""bench.site.settings with REALTIME_JSON applied last (written by bench.prune_latency)."""
import json
import os

from bench.site.settings import *  # noqa: F403

REALTIME = {**REALTIME, **json.loads(os.environ.get("REALTIME_JSON", "{}"))}  # noqa: F405
'''


class TimedStream(Stream):
    """A ``bench.clients`` stream that records (publish time, latency) pairs, so events can be sorted into windows."""

    def _count(self, payload: dict[str, Any], now: float) -> None:
        latencies = self.worker.tally.latencies
        before = len(latencies)
        super()._count(payload, now)
        if len(latencies) > before:
            latency = latencies.pop()
            latencies.append(payload["t"])
            latencies.append(latency)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = options.parser("bench.prune_latency", __doc__)
    parser.add_argument("--database", default="sqlite", help="comma-separated: sqlite, postgres (default: sqlite)")
    parser.add_argument(
        "--tree",
        action="append",
        help="source tree to run django_realtime from (repeatable; default: this checkout); trees alternate",
    )
    options.add(parser, "repeat")
    parser.add_argument("--rows", type=int, default=60_000, help="old events to seed (default: 60000)")
    parser.add_argument("--channels", type=int, default=4, help="channels the old events are spread over")
    parser.add_argument("--streams", type=int, default=50, help="SSE streams on the live channel (default: 50)")
    options.add(parser, "rate", "backend", rate=40.0)
    parser.add_argument(
        "--prune-interval",
        type=float,
        default=20.0,
        help="PRUNE_INTERVAL of the server; its first prune comes 0.1-1.0 times this after the first stream",
    )
    parser.add_argument("--after", type=float, default=8.0, help="seconds to go on publishing after the prune")
    options.add(parser, "drain", "max_background")
    parser.add_argument("--patience", type=float, default=120.0, help="seconds to wait for a quiet machine")
    options.add(parser, "postgres", "out")
    return parser.parse_args(argv)


# The database --------------------------------------------------------------


def sqlite_path(database_url: str) -> str:
    return database_url.removeprefix("sqlite:///")


def seed(database_url: str, rows: int, channels: int) -> None:
    """Insert *rows* events created 8 days ago and earlier (one a second back), in one transaction."""
    newest = datetime.now(UTC) - OLD
    pad = "x" * 100
    if database_url.startswith("sqlite:"):
        # Django keeps SQLite datetimes as naive UTC text, "YYYY-MM-DD HH:MM:SS.ffffff".
        values = [
            (
                f"old:{i % channels}",
                "message",
                json.dumps({"old": i, "pad": pad}),
                (newest - timedelta(seconds=rows - i)).replace(tzinfo=None).isoformat(" ", "microseconds"),
            )
            for i in range(rows)
        ]
        with contextlib.closing(sqlite3.connect(sqlite_path(database_url))) as db, db:
            db.executemany(f"INSERT INTO {TABLE} (channel, event, data, created) VALUES (?, ?, ?, ?)", values)
        return
    import psycopg

    with psycopg.connect(database_url) as db:
        db.execute(
            f"INSERT INTO {TABLE} (channel, event, data, created)"
            " SELECT 'old:' || (i %% %s::int), 'message', json_build_object('old', i, 'pad', %s::text)::text,"
            " %s::timestamptz - (%s::int - i) * interval '1 second' FROM generate_series(0, %s::int - 1) AS i",
            [channels, pad, newest, rows, rows],
        )
    with psycopg.connect(database_url, autocommit=True) as db:
        # A log that grew over days has statistics; a freshly filled table has none.
        db.execute(f"ANALYZE {TABLE}")


class OldRowPoller:
    """Count the old rows every POLL seconds on a thread, from outside the server: (time.time(), count) samples."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.samples: list[tuple[float, int]] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="old-row-poller", daemon=True)

    def _connect(self) -> tuple[Any, str, Any]:
        cutoff = datetime.now(UTC) - MAX_AGE
        if self.database_url.startswith("sqlite:"):
            db = sqlite3.connect(sqlite_path(self.database_url), isolation_level=None)
            return db, f"SELECT count(*) FROM {TABLE} WHERE created < ?", cutoff.replace(tzinfo=None).isoformat(" ")
        import psycopg

        db = psycopg.connect(self.database_url, autocommit=True)
        return db, f"SELECT count(*) FROM {TABLE} WHERE created < %s", cutoff

    def _run(self) -> None:
        try:
            db, query, cutoff = self._connect()
            try:
                while not self._stop.is_set():
                    (count,) = db.execute(query, [cutoff]).fetchone()
                    self.samples.append((time.time(), count))
                    self._stop.wait(POLL)
            finally:
                db.close()
        except Exception as exc:  # reported by the runner
            self.error = exc

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def window(self, rows: int) -> tuple[float | None, float | None]:
        """Return (last count that saw all *rows*, first count after it that saw none), None for what was not seen."""
        start = end = None
        for moment, count in list(self.samples):
            if count >= rows:
                start = moment
            elif start is not None and count == 0:
                end = moment
                break
        return start, end


# One run -------------------------------------------------------------------


def make_target(args: argparse.Namespace, tree: str | None, settings_dir: Path, *, prunes: bool) -> Target:
    realtime = {"PRUNE_INTERVAL": args.prune_interval if prunes else None}
    return Target(
        key="ours",
        name=f"django-realtime, gunicorn gevent, {args.backend}",
        python=sys.executable,
        settings=SETTINGS_MODULE,
        server_argv=gunicorn_gevent(),
        forks=True,
        publisher="process",
        env={
            "REALTIME_BACKEND": args.backend,
            "DJANGO_DEBUG": "0",
            "PYTHONPATH": str(settings_dir),
            "REALTIME_JSON": json.dumps(realtime),
        },
        tree=None if tree is None or Path(tree).resolve() == ROOT else str(Path(tree).resolve()),
    )


def latency_stats(values: list[float]) -> dict[str, Any]:
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "p50_ms": round(report.percentile(ordered, 0.50) * 1e3, 1),
        "p99_ms": round(report.percentile(ordered, 0.99) * 1e3, 1),
        "max_ms": round(ordered[-1] * 1e3, 1) if ordered else math.nan,
    }


def split(pairs: array, start: float, end: float) -> dict[str, list[float]]:
    """Sort (publish time, latency) pairs into baseline (away from the window), during, and in flight across it."""
    out: dict[str, list[float]] = {"baseline": [], "during": [], "in_flight": []}
    for i in range(0, len(pairs), 2):
        t, latency = pairs[i], pairs[i + 1]
        if start <= t <= end:
            out["during"].append(latency)
        elif t < start - MARGIN or t > end + MARGIN:
            out["baseline"].append(latency)
        if t <= end and t + latency >= start:
            out["in_flight"].append(latency)
    return out


def run_one(args: argparse.Namespace, kind: str, tree: str | None, pool: ClientPool, tmp: Path, logdir: Path) -> dict:
    server_target = make_target(args, tree, tmp, prunes=True)
    publisher_target = make_target(args, tree, tmp, prunes=False)
    label = f"{kind}, {server_target.tree or 'this checkout'}"
    print(f"== {label}", flush=True)
    background = wait_for_quiet(args.max_background, patience=args.patience)
    slug = f"prune-{kind}-{int(time.time() * 1000) % 10**8}"
    log = logdir / f"{slug}.log"
    stream_kind = importlib.import_module("bench.prune_latency").TimedStream
    with fresh_database(kind, tmp, slug, args.postgres) as database_url:
        migrate(server_target, database_url)
        seeded = time.monotonic()
        seed(database_url, args.rows, args.channels)
        seed_seconds = time.monotonic() - seeded
        with measured_server(server_target, database_url, log) as (port, pid):
            publisher = None
            poller = OldRowPoller(database_url)
            try:
                info = get_json(port, "/bench/info/")
                if info["django_realtime"] != str(package_dir(server_target)) or info["pid"] != pid:
                    raise RuntimeError(f"the server runs {info}, not {package_dir(server_target)} in pid {pid}")
                publisher = ProcessPublisher(publisher_target, database_url, log)
                if publisher.package != str(package_dir(server_target)):
                    raise RuntimeError(f"the publisher imported {publisher.package}")
                poller.start()
                budget = int(args.rate * (args.prune_interval + args.after + 120)) + 10
                opened_at = time.time()
                opened = pool.open("127.0.0.1", port, "/events/?channel=demo%3Abench", args.streams, kind=stream_kind)
                if opened["failed"]:
                    raise RuntimeError(f"{opened['failed']} streams did not open: {opened['errors']}")
                pool.reset(budget)
                machine_start, wall_start = machine_busy(), time.monotonic()
                calls: list[tuple[float, float]] = []  # (send time, seconds until the publisher answered)
                started = time.monotonic()
                deadline = started + args.prune_interval + 90
                seq = 0
                while seq < budget and time.monotonic() < deadline:
                    _, end = poller.window(args.rows)
                    if end is not None and time.time() > end + args.after:
                        break
                    delay = started + seq / args.rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    sent = time.time()
                    publisher.publish(seq)
                    calls.append((sent, time.time() - sent))
                    seq += 1
                published = seq
                drain_until = time.monotonic() + args.drain
                while pool.status()["received"] < published * args.streams and time.monotonic() < drain_until:
                    time.sleep(0.05)
                wall = time.monotonic() - wall_start
                machine_cores = (machine_busy() - machine_start) / wall
                results = pool.results()
                live = pool.status()["live"]
            finally:
                poller.stop()
                pool.close_all()
                if publisher is not None:
                    publisher.close()
        if poller.error is not None:
            raise RuntimeError(f"could not count the old rows: {poller.error!r}")
    start, end = poller.window(args.rows)
    if start is None or end is None:
        raise RuntimeError(f"no prune seen within the run (old rows: {poller.samples[-1:] or 'never counted'})")
    windows = split(results["latencies"], start, end)
    during_calls = [seconds for sent, seconds in calls if start <= sent <= end]
    away_calls = [seconds for sent, seconds in calls if sent < start - MARGIN or sent > end + MARGIN]
    stats = {key: latency_stats(values) for key, values in windows.items()}
    return {
        "database": kind,
        "tree": server_target.tree or str(ROOT),
        "package": report.git_state(Path(server_target.tree) if server_target.tree else ROOT),
        "rows": args.rows,
        "seed_seconds": round(seed_seconds, 2),
        "streams": args.streams,
        "live_streams_at_end": live,
        "published": published,
        "rate": round((published - 1) / (calls[-1][0] - calls[0][0]), 1) if published > 1 else None,
        "prune_started_after_s": round(start - opened_at, 1),
        "prune_seconds": round(end - start, 2),
        **{key: value for key, value in stats.items()},
        "delta_p50_ms": round(stats["during"]["p50_ms"] - stats["baseline"]["p50_ms"], 1),
        "delta_p99_ms": round(stats["during"]["p99_ms"] - stats["baseline"]["p99_ms"], 1),
        "delta_max_ms": round(stats["during"]["max_ms"] - stats["baseline"]["max_ms"], 1),
        "publish_call_max_ms": {
            "baseline": round(max(away_calls, default=math.nan) * 1e3, 1),
            "during": round(max(during_calls, default=math.nan) * 1e3, 1),
        },
        "lost": published * args.streams - results["received"],
        "duplicates": results["duplicates"],
        "unexpected": results["unexpected"],
        "machine_cores": round(machine_cores, 2),
        "background_cores": round(background, 2),
        "log": str(log),
    }


# The report ----------------------------------------------------------------


def table(runs: list[dict]) -> list[str]:
    out = [
        "| database | package | prune s | baseline p50 / p99 / max ms | during p50 / p99 / max ms "
        "| during − baseline p99 / max ms | in flight max ms | publish call max ms (during) | lost | machine cores "
        "(before) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        if "error" in run:
            out.append(f"| {run['database']} | {run['tree']} | FAILED: {run['error']} |||||||||")
            continue
        b, d = run["baseline"], run["during"]
        out.append(
            f"| {run['database']} | {run['package']} | {run['prune_seconds']} "
            f"| {b['p50_ms']} / {b['p99_ms']} / {b['max_ms']} (n={b['n']}) "
            f"| {d['p50_ms']} / {d['p99_ms']} / {d['max_ms']} (n={d['n']}) "
            f"| {run['delta_p99_ms']:+} / {run['delta_max_ms']:+} | {run['in_flight']['max_ms']} "
            f"| {run['publish_call_max_ms']['during']} | {run['lost']} "
            f"| {run['machine_cores']} ({run['background_cores']}) |"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    kinds = args.database.split(",")
    trees = args.tree or [None]
    stamp = options.stamp("bench.prune_latency")
    logdir = args.out / f"{stamp}-logs"
    logdir.mkdir(parents=True)
    targets = [make_target(args, tree, Path("."), prunes=True) for tree in trees]
    meta = report.machine(args, sys.argv, targets, "bench.prune_latency")
    runs: list[dict] = []
    pool = ClientPool(1, args.streams)
    try:
        with tempfile.TemporaryDirectory(prefix="django-realtime-prune-") as tmp:
            (Path(tmp) / f"{SETTINGS_MODULE}.py").write_text(SETTINGS_SOURCE)
            for repeat in range(args.repeat):
                for kind in kinds:
                    # Alternate the trees' order, so that what else the machine does hits them alike.
                    for tree in trees if repeat % 2 == 0 else trees[::-1]:
                        try:
                            runs.append(run_one(args, kind, tree, pool, Path(tmp), logdir))
                        except Exception as exc:  # recorded in the report; the other runs go on
                            print(f"   FAILED: {exc}", file=sys.stderr)
                            runs.append({"database": kind, "tree": str(tree), "error": str(exc)[:300]})
                        print("\n".join(table(runs[-1:])[2:]), flush=True)
    finally:
        pool.stop()
        stop_all()
    lines = [*report.header(meta), "", *table(runs)]
    options.write_results(args.out, stamp, {"meta": meta, "runs": runs}, "\n".join(lines) + "\n")
    return 0 if all("error" not in run for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
