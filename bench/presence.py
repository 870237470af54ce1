"""Measure presence: 1,000 members of one channel on one gunicorn gevent worker, on SQLite and PostgreSQL.

For each database, on a fresh one, one worker with the bench site's probe
(``bench/site/probe.py``: every SQL statement counted, every heartbeat
timed) and a short ``PRESENCE_HEARTBEAT``: rounds of 1,000 SSE streams that
join the channel's presence (``?presence=``), then the same 1,000 streams
without it, alternately.  Each round measures the time of the 1,000 joins,
the writes and the worker's CPU per second while the streams sit idle over
several heartbeat periods, and the time of 1,000 simultaneous leaves (every
client closed at once), whether every ``presence.leave`` was stored, and on
PostgreSQL the most connections the worker held meanwhile.  See
bench/README.md.

    python -m bench.presence --database sqlite,postgres
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench import options, report
from bench.clients import ClientPool, raise_fd_limit
from bench.databases import POSTGRES_ADMIN, fresh_database, private_postgres
from bench.servers import (
    HttpPublisher,
    Target,
    get_json,
    gunicorn_gevent,
    measured_server,
    migrate,
    stop_all,
    wait_for_quiet,
)
from tests.support.processes import cpu_times

CHANNEL = "demo:presence"  # public in the demo settings ("demo:*"), and present by the runner's PRESENCE_CHANNELS
WARM_CHANNEL = "demo:warm"
#: Stream i joins as m<i>; the plain streams follow the same channel and join nothing.
PRESENT = "/events/?channel={c}&presence={c}&name=m{{i}}&include=channel"
PLAIN = "/events/?channel={c}&include=channel"
PRESENCE_TABLES = ("django_realtime_presenceprocess", "django_realtime_presencemember")
#: What a stream's request passes (quoted channel names).
QUOTED = {CHANNEL: "demo%3Apresence", WARM_CHANNEL: "demo%3Awarm"}
#: The server log's line for a leave that could not be written (retried by the next heartbeat).
LEAVE_FAILED = "could not write that"
#: The worker's sessions on the bench database: its role's, but for the runner's own reader.
COUNT_SESSIONS = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND usename = %s AND pid <> %s"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = options.parser("bench.presence", __doc__)
    parser.add_argument("--database", default="sqlite,postgres", help="sqlite, postgres or both (default: both)")
    parser.add_argument("--members", type=int, default=1000, help="streams per phase (default: 1000)")
    parser.add_argument("--heartbeat", type=float, default=5.0, help="PRESENCE_HEARTBEAT, seconds (default: 5)")
    parser.add_argument("--periods", type=int, default=6, help="heartbeat periods of each idle window (default: 6)")
    parser.add_argument("--rounds", type=int, default=2, help="presence phases, each followed by a plain one (2)")
    parser.add_argument(
        "--keepalive", type=float, help="the server's KEEPALIVE, seconds (REALTIME_KEEPALIVE; default: the package's)"
    )
    options.add(parser, "backend")
    parser.add_argument("--concurrency", type=int, default=64, help="streams each client process opens at once (64)")
    parser.add_argument(
        "--connection-limit",
        type=int,
        default=0,
        help="PostgreSQL: the worker logs in as a role of its own with this CONNECTION LIMIT (default: 0, as the "
        "admin URL's user, no limit). It does not shield a shared server: refused logins hold slots too",
    )
    parser.add_argument("--leave-wait", type=float, help="seconds to wait for the leaves (default: 3 heartbeats + 10)")
    options.add(parser, "client_processes", "max_background")
    parser.add_argument(
        "--postgres",
        default="private",
        help="where to create databases: 'private' (default), a PostgreSQL server the runner starts for the run "
        f"(initdb, loopback), or a server's admin URL, e.g. {POSTGRES_ADMIN}: never a shared one, since 1,000 "
        "simultaneous leaves may try 1,000 connections at once",
    )
    parser.add_argument(
        "--max-connections", type=int, default=100, help="max_connections of the private server (default: 100)"
    )
    options.add(parser, "out")
    return parser.parse_args(argv)


def target(args: argparse.Namespace) -> Target:
    """Return one gunicorn gevent worker of the bench site, probe on, presence allowed on demo:*."""
    argv = gunicorn_gevent(args.members + 1000)
    settings = {
        "PRESENCE_CHANNELS": ["demo:*"],
        "PRESENCE_HEARTBEAT": args.heartbeat,
        "PRESENCE_TIMEOUT": 3 * args.heartbeat,
    }
    env = {
        "REALTIME_BACKEND": args.backend,
        "DJANGO_DEBUG": "0",
        "BENCH_PRESENCE_PROBE": "1",
        "REALTIME_JSON": json.dumps(settings),
        **({"REALTIME_KEEPALIVE": str(args.keepalive)} if args.keepalive is not None else {}),
    }
    return Target(
        key="ours",
        name=f"gunicorn gevent, {args.backend}",
        python=sys.executable,
        settings="bench.site.settings",
        server_argv=argv,
        forks=True,
        env=env,
        path=PRESENT.format(c=QUOTED[CHANNEL]),
    )


class Database:
    """The runner's own look at the bench database: presence rows, stored events, and on PostgreSQL its counters."""

    def __init__(self, url: str, admin_url: str) -> None:
        self.url = url
        self.postgres = url.startswith("postgres")
        if self.postgres:
            import psycopg

            parts = urlsplit(url)
            self.name = parts.path.lstrip("/")
            self.role = parts.username
            # As the admin (a superuser: outside the role's limit), to the bench database and to the admin's.
            admin = urlsplit(admin_url)
            self.conn = psycopg.connect(admin._replace(path=parts.path).geturl(), autocommit=True)
            self.admin = psycopg.connect(admin_url, autocommit=True)
            self.own = self.conn.info.backend_pid  # not the worker's: left out of the counts
        else:
            self.conn = sqlite3.connect(urlsplit(url).path, timeout=20, isolation_level=None)

    def one(self, query: str, params: tuple = ()) -> Any:
        return self.conn.execute(query, params).fetchone()[0]

    def members(self) -> int:
        return self.one("SELECT count(*) FROM django_realtime_presencemember")

    def events(self, name: str, channel: str = CHANNEL) -> int:
        mark = "%s" if self.postgres else "?"
        query = f"SELECT count(*) FROM django_realtime_event WHERE event = {mark} AND channel = {mark}"
        return self.one(query, (name, channel))

    def table_stats(self) -> dict[str, dict[str, int]]:
        """PostgreSQL: rows inserted, updated and deleted in the presence tables so far (pg_stat_user_tables)."""
        if not self.postgres:
            return {}
        self.conn.execute("SELECT pg_stat_clear_snapshot()")
        rows = self.conn.execute(
            "SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables WHERE relname = ANY(%s)",
            (list(PRESENCE_TABLES),),
        ).fetchall()
        return {name: {"ins": ins, "upd": upd, "del": dele} for name, ins, upd, dele in rows}

    def connections(self) -> int:
        """PostgreSQL: the sessions the worker's role holds on the bench database now."""
        return self.admin.execute(COUNT_SESSIONS, (self.name, self.role, self.own)).fetchone()[0]

    def close(self) -> None:
        self.conn.close()
        if self.postgres:
            self.admin.close()


class ConnectionSampler:
    """Count the worker's PostgreSQL sessions every *interval* seconds, in a thread, for peaks over windows."""

    def __init__(self, database: Database, interval: float = 0.02) -> None:
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = None
        if database.postgres:
            self._thread = threading.Thread(target=self._run, args=(database, interval), daemon=True)
            self._thread.start()

    def _run(self, database: Database, interval: float) -> None:
        import psycopg

        # A connection of its own: the runner's other reads go on meanwhile.
        with psycopg.connect(database.admin.info.dsn, autocommit=True) as conn:
            while not self._stop.wait(interval):
                n = conn.execute(COUNT_SESSIONS, (database.name, database.role, database.own)).fetchone()[0]
                self.samples.append((time.monotonic(), n))

    def peak(self, start: float, end: float) -> int | None:
        if self._thread is None:
            return None
        return max((n for t, n in self.samples if start <= t <= end), default=0)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


def log_count(log: Path, offset: int, text: str) -> int:
    with open(log, "rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace").count(text)


def diff(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def writes(counts: dict[str, int]) -> dict[str, int]:
    """The statements of *counts* that write a presence table."""
    return {
        k: v
        for k, v in counts.items()
        if k.split()[0] in ("INSERT", "UPDATE", "DELETE") and k.split()[1] in PRESENCE_TABLES
    }


class Run:
    """One database: the server, its probe, the runner's look at the database, and the measurements."""

    def __init__(self, args: argparse.Namespace, pool: ClientPool, db: Database, port: int, pid: int, log: Path):
        self.args, self.pool, self.db, self.port, self.pid, self.log = args, pool, db, port, pid, log
        self.publisher = HttpPublisher(port)
        self.sampler = ConnectionSampler(db)
        self.poke_seq = -1

    def probe(self) -> dict[str, Any]:
        return get_json(self.port, "/bench/presence/")

    def cpu(self) -> float:
        return sum(cpu_times(self.pid))

    def poke(self, channel: str, times: int = 3, pause: float = 0.2) -> int:
        """Publish on *channel* a few times: a WSGI stream learns its client left only when a write fails.

        Return how many publishes failed (a database that refuses connections, say).
        """
        failed = 0
        for _ in range(times):
            time.sleep(pause)
            self.poke_seq -= 1
            try:
                self.publisher.publish(self.poke_seq, channel)
            except (RuntimeError, OSError):
                failed += 1
        return failed

    def open(self, present: bool, channel: str = CHANNEL, count: int | None = None) -> dict[str, Any]:
        """Open the streams, joined or not; wait until every join event reached the streams."""
        count = self.args.members if count is None else count
        path = (PRESENT if present else PLAIN).format(c=QUOTED[channel])
        self.pool.reset(0)
        before = self.probe()
        cpu, start = self.cpu(), time.monotonic()
        opened = self.pool.open("127.0.0.1", self.port, path, count, self.args.concurrency, timeout=300)
        opened_at = time.monotonic()
        # Stream k gets the joins from its own on (it takes its cursor before joining): N(N+1)/2 at least.
        want = count * (count + 1) // 2 if present else 0
        deadline, last, settled_at = opened_at + 60, -1, opened_at
        while True:
            got = self.pool.status()["other"]
            if got != last:
                last, settled_at = got, time.monotonic()
            if got >= want and (not present or time.monotonic() - settled_at > 0.5) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        return {
            "present": present,
            "opened": opened["opened"],
            "failed": opened["failed"],
            "errors": opened["errors"],
            "open_seconds": round(opened["seconds"], 2),
            "joins_delivered": last,
            "joins_delivered_wanted": want,
            "delivered_seconds": round(settled_at - start, 2),
            "cpu_seconds": round(self.cpu() - cpu, 2),
            "peak_connections": self.sampler.peak(start, time.monotonic()),
            "members_in_db": self.db.members(),
            "statements": diff(self.probe()["statements"], before["statements"]),
            "connects": diff(self.probe()["connects"], before["connects"]),
        }

    def idle(self, present: bool) -> dict[str, Any]:
        """Measure *periods* heartbeat periods of idle streams: the worker's CPU, its statements, its beats."""
        time.sleep(1.0)
        before, stats0 = self.probe(), self.db.table_stats()
        cpu, start = self.cpu(), time.monotonic()
        time.sleep(self.args.periods * self.args.heartbeat)
        cpu_used, wall = self.cpu() - cpu, time.monotonic() - start
        after = self.probe()
        # A session's pg_stat counters reach the view when it ends (a beat's, at once) or has idled a while:
        # read them a little later, and count the beats up to then.
        time.sleep(1.0)
        stats1 = self.db.table_stats()
        pg_beats = len(self.probe()["beats"]) - len(before["beats"])
        beats = after["beats"][len(before["beats"]) :]
        beat_counts = diff(after["beat_statements"], before["beat_statements"])
        other_counts = diff(after["statements"], before["statements"])
        pg = {table: diff(stats1.get(table, {}), stats0.get(table, {})) for table in PRESENCE_TABLES if table in stats1}
        return {
            "present": present,
            "seconds": round(wall, 2),
            "cores": round(cpu_used / wall, 5),
            "cpu_seconds": round(cpu_used, 3),
            "beats": len(beats),
            "beat_wall_ms": [round(b[0] * 1e3, 2) for b in beats],
            "beat_cpu_ms": [round(b[1] * 1e3, 2) for b in beats],
            "beat_statements": beat_counts,
            "other_statements": other_counts,
            "presence_writes": sum(writes(beat_counts).values()) + sum(writes(other_counts).values()),
            "connects": diff(after["connects"], before["connects"]),
            "pg_stat": pg,
            "pg_stat_beats": pg_beats if self.db.postgres else None,
            "members": after["members"],
        }

    def leave(self, present: bool, joined_before: int, channel: str = CHANNEL) -> dict[str, Any]:
        """Close every stream at once; wait until the members and the streams are gone and the leaves stored."""
        wait = self.args.leave_wait or 3 * self.args.heartbeat + 10
        offset = self.log.stat().st_size
        leaves_before = self.db.events("presence.leave", channel)
        cpu, start = self.cpu(), time.monotonic()
        closed = self.pool.close_all()
        pokes_failed = self.poke(channel)
        gone_at = stored_at = streams_at = None
        while time.monotonic() - start < wait:
            now = time.monotonic()
            if gone_at is None and self.db.members() == 0:
                gone_at = now
            if stored_at is None and self.db.events("presence.leave", channel) - leaves_before >= joined_before:
                stored_at = now
            probe = self.probe()
            if streams_at is None and probe["streams"] == 0:
                streams_at = now
            if gone_at and stored_at and streams_at and probe["leaving"] == 0 and probe["members"] == 0:
                break
            time.sleep(0.05)
        end = time.monotonic()
        probe = self.probe()
        return {
            "present": present,
            "closed": closed,
            "pokes_failed": pokes_failed,
            "members_left_seconds": round(gone_at - start, 2) if gone_at else None,
            "leaves_stored_seconds": round(stored_at - start, 2) if stored_at else None,
            "streams_ended_seconds": round(streams_at - start, 2) if streams_at else None,
            "leaves_stored": self.db.events("presence.leave", channel) - leaves_before,
            "leaves_wanted": joined_before,
            "members_in_db": self.db.members(),
            "registry_members": probe["members"],
            "registry_leaving": probe["leaving"],
            "leave_failures_logged": log_count(self.log, offset, LEAVE_FAILED),
            "too_many_clients_logged": log_count(self.log, offset, "too many clients"),
            "too_many_for_role_logged": log_count(self.log, offset, "too many connections for role"),
            "peak_connections": self.sampler.peak(start, end),
            "cpu_seconds": round(self.cpu() - cpu, 2),
        }

    def close(self) -> None:
        self.sampler.stop()
        self.publisher.close()


def run_database(
    kind: str, args: argparse.Namespace, pool: ClientPool, tmp: Path, logdir: Path, admin_url: str
) -> dict[str, Any]:
    print(f"== {kind}, {args.members} members, heartbeat {args.heartbeat:g} s", flush=True)
    background = wait_for_quiet(args.max_background)
    server = target(args)
    log = logdir / f"{kind}.log"
    limit = args.connection_limit or None
    with fresh_database(kind, tmp, "presence", admin_url, connection_limit=limit) as url:
        migrate(server, url)
        with measured_server(server, url, log) as (port, pid):
            db = run = None
            try:
                if not get_json(port, "/bench/presence/")["installed"]:
                    raise RuntimeError("the worker's probe is not installed (BENCH_PRESENCE_PROBE)")
                db = Database(url, admin_url)
                run = Run(args, pool, db, port, pid, log)
                # Warm-up: 20 members on a channel of their own, who then leave.
                warm = run.open(True, WARM_CHANNEL, 20)
                warm_leave = run.leave(True, 20, WARM_CHANNEL)
                phases: list[dict[str, Any]] = []
                for n in range(args.rounds):
                    for present in (True, False):
                        label = "presence" if present else "plain"
                        print(f"   round {n + 1}, {label}: opening {args.members} streams", flush=True)
                        opened = run.open(present)
                        print(f"   {opened}", flush=True)
                        idle = run.idle(present)
                        print(
                            f"   idle {idle['seconds']} s: {idle['cores']} cores, {idle['beats']} beats, "
                            f"{idle['presence_writes']} presence writes, pg {idle['pg_stat']}",
                            flush=True,
                        )
                        left = run.leave(present, opened["members_in_db"] if present else 0)
                        print(f"   {left}", flush=True)
                        phases.append({"round": n + 1, "open": opened, "idle": idle, "leave": left})
                totals = {
                    "joins_stored": db.events("presence.join"),
                    "leaves_stored": db.events("presence.leave"),
                    "members_in_db": db.members(),
                }
            finally:
                pool.close_all()
                if run is not None:
                    run.close()
                if db is not None:
                    db.close()
    return {
        "database": kind,
        "connection_limit": limit if kind == "postgres" else None,
        "background_cores": round(background, 2),
        "warm": {"open": warm, "leave": warm_leave},
        "phases": phases,
        "totals": totals,
        "log": str(log),
    }


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def summarise(result: dict[str, Any], heartbeat: float) -> dict[str, Any]:
    """Per database: the figures of the presence phases, and the plain phases' idle CPU beside them."""
    phases = result["phases"]
    present = [p for p in phases if p["open"]["present"]]
    plain = [p for p in phases if not p["open"]["present"]]
    beats = sum(p["idle"]["beats"] for p in present)
    beat_cpu = [ms for p in present for ms in p["idle"]["beat_cpu_ms"]]
    beat_wall = [ms for p in present for ms in p["idle"]["beat_wall_ms"]]
    statements: Counter[str] = Counter()
    for p in present:
        statements.update(p["idle"]["beat_statements"])
    process_updates = statements.get("UPDATE django_realtime_presenceprocess", 0)
    pg_upd = sum(p["idle"]["pg_stat"].get("django_realtime_presenceprocess", {}).get("upd", 0) for p in present)
    pg_beats = sum(p["idle"]["pg_stat_beats"] or 0 for p in present)
    pg_member = sum(sum(p["idle"]["pg_stat"].get("django_realtime_presencemember", {}).values()) for p in present)
    cores_present = [p["idle"]["cores"] for p in present]
    cores_plain = [p["idle"]["cores"] for p in plain]
    cpu_beat = statistics.mean(beat_cpu) / 1e3 if beat_cpu else None
    return {
        "database": result["database"],
        "beats": beats,
        "writes_per_beat": round(sum(p["idle"]["presence_writes"] for p in present) / beats, 3) if beats else None,
        "process_updates_per_beat": round(process_updates / beats, 3) if beats else None,
        "pg_process_updates_per_beat": round(pg_upd / pg_beats, 3) if pg_beats else None,
        "pg_member_rows_touched_idle": pg_member if result["database"] == "postgres" else None,
        "beat_statements_per_beat": {k: round(v / beats, 2) for k, v in statements.items()} if beats else {},
        "beat_cpu_ms_median": _median(beat_cpu),
        "beat_cpu_ms_mean": round(statistics.mean(beat_cpu), 2) if beat_cpu else None,
        "beat_wall_ms_median": _median(beat_wall),
        "idle_cores_present": cores_present,
        "idle_cores_plain": cores_plain,
        "idle_cores_difference": round(statistics.mean(cores_present) - statistics.mean(cores_plain), 5)
        if cores_present and cores_plain
        else None,
        "beat_cores_at_heartbeat": round(cpu_beat / heartbeat, 6) if cpu_beat else None,
        "beat_cores_at_15s": round(cpu_beat / 15.0, 6) if cpu_beat else None,
        "join_seconds": [p["open"]["open_seconds"] for p in present],
        "join_delivered_seconds": [p["open"]["delivered_seconds"] for p in present],
        "join_cpu_seconds": [p["open"]["cpu_seconds"] for p in present],
        "plain_open_seconds": [p["open"]["open_seconds"] for p in plain],
        "open_failures": [p["open"]["failed"] for p in phases],
        "join_peak_connections": [p["open"]["peak_connections"] for p in present],
        "leave_members_seconds": [p["leave"]["members_left_seconds"] for p in present],
        "leave_stored_seconds": [p["leave"]["leaves_stored_seconds"] for p in present],
        "leaves_stored": [f"{p['leave']['leaves_stored']}/{p['leave']['leaves_wanted']}" for p in present],
        "leave_failures_logged": [p["leave"]["leave_failures_logged"] for p in present],
        "leave_peak_connections": [p["leave"]["peak_connections"] for p in present],
        "leave_cpu_seconds": [p["leave"]["cpu_seconds"] for p in present],
        "plain_leave_seconds": [p["leave"]["streams_ended_seconds"] for p in plain],
        "totals": result["totals"],
    }


def _list(values: list[Any]) -> str:
    return ", ".join("–" if v is None else str(v) for v in values)


def markdown(meta: dict[str, Any], args: argparse.Namespace, results: list[dict[str, Any]]) -> str:
    out = [
        *report.header(meta),
        "",
        f"{args.members:,} SSE streams on `{CHANNEL}` on one gunicorn gevent worker ({args.backend} backend), "
        f"PRESENCE_HEARTBEAT {args.heartbeat:g} s (a beat every 0.8–1.0 of it), {args.rounds} rounds of "
        f"{args.members:,} present streams then {args.members:,} plain ones; idle windows of "
        f"{args.periods} periods ({args.periods * args.heartbeat:g} s). Lists: one value per round.",
        "",
        "| | " + " | ".join(r["database"] for r in results) + " |",
        "|---|" + "---|" * len(results),
    ]
    s = [summarise(r, args.heartbeat) for r in results if "error" not in r]
    rows = [
        ("heartbeats measured", "beats"),
        ("presence-table writes per beat (probe)", "writes_per_beat"),
        ("UPDATE of the process row per beat (probe)", "process_updates_per_beat"),
        ("process row updates per beat (pg_stat_user_tables)", "pg_process_updates_per_beat"),
        ("member rows written while idle (pg_stat_user_tables)", "pg_member_rows_touched_idle"),
        ("statements per beat", "beat_statements_per_beat"),
        ("CPU per beat, ms: median / mean", None),
        ("wall per beat, ms (median)", "beat_wall_ms_median"),
        ("idle worker cores, present", "idle_cores_present"),
        ("idle worker cores, plain", "idle_cores_plain"),
        ("present − plain, cores (mean)", "idle_cores_difference"),
        (f"beat CPU / heartbeat: cores at {args.heartbeat:g} s", "beat_cores_at_heartbeat"),
        ("beat CPU / heartbeat: cores at 15 s (default)", "beat_cores_at_15s"),
        (f"{args.members:,} joins (streams open), s", "join_seconds"),
        ("… until every join event was delivered, s", "join_delivered_seconds"),
        ("worker CPU over the joins, s", "join_cpu_seconds"),
        (f"{args.members:,} plain streams open, s", "plain_open_seconds"),
        ("streams refused (each phase)", "open_failures"),
        ("peak PostgreSQL sessions during the joins", "join_peak_connections"),
        (f"{args.members:,} leaves: members gone, s", "leave_members_seconds"),
        (f"{args.members:,} leaves: every presence.leave stored, s", "leave_stored_seconds"),
        ("presence.leave stored / members", "leaves_stored"),
        ("leaves that failed and waited for a heartbeat (log)", "leave_failures_logged"),
        ("peak PostgreSQL sessions during the leaves", "leave_peak_connections"),
        ("worker CPU over the leaves, s", "leave_cpu_seconds"),
        ("plain streams ended after the close, s", "plain_leave_seconds"),
        ("in the end: joins / leaves stored, members left", "totals"),
    ]
    for title, key in rows:
        cells = []
        for r in s:
            if key is None:
                cells.append(f"{r['beat_cpu_ms_median']} / {r['beat_cpu_ms_mean']}")
                continue
            value = r[key]
            if key == "totals":
                value = f"{value['joins_stored']} / {value['leaves_stored']}, {value['members_in_db']}"
            elif isinstance(value, list):
                value = _list(value)
            elif isinstance(value, dict):
                value = ", ".join(f"{k}: {v}" for k, v in value.items())
            cells.append("–" if value is None else str(value))
        out.append(f"| {title} | " + " | ".join(cells) + " |")
    for r in results:
        if "error" in r:
            out.append(f"\n{r['database']}: failed: {r['error']}")
    out += ["", "Servers:", ""] + [f"- {k}: `{v}`" for k, v in meta["servers"].items()]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    kinds = [k.strip() for k in args.database.split(",") if k.strip()]
    raise_fd_limit(args.members + 2000)
    stamp = options.stamp("bench.presence")
    logdir = args.out / f"{stamp}-logs"
    logdir.mkdir(parents=True)
    meta = report.machine(args, sys.argv, [target(args)], "bench.presence", ("django", "gunicorn", "gevent", "psycopg"))
    results: list[dict[str, Any]] = []
    failures = (RuntimeError, TimeoutError, OSError, subprocess.SubprocessError, ValueError)
    pool = ClientPool(args.client_processes, args.members)
    try:
        with tempfile.TemporaryDirectory(prefix="django-realtime-bench-") as tmp, contextlib.ExitStack() as stack:
            admin_url = args.postgres
            if "postgres" in kinds and admin_url == "private":
                admin_url = stack.enter_context(private_postgres(logdir, args.max_connections))
                meta["postgres"] = f"a private server, max_connections {args.max_connections}"
            for kind in kinds:
                try:
                    results.append(run_database(kind, args, pool, Path(tmp), logdir, admin_url))
                except failures as exc:
                    print(f"   FAILED: {exc}", file=sys.stderr)
                    results.append({"database": kind, "error": str(exc)[:300]})
    finally:
        pool.stop()
        stop_all()
    summaries = [summarise(r, args.heartbeat) for r in results if "error" not in r]
    payload = {"meta": meta, "results": results, "summaries": summaries}
    options.write_results(args.out, stamp, payload, markdown(meta, args, results))
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
