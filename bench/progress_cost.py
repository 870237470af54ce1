"""What a task pays to report its progress (django_realtime.progress), on SQLite and PostgreSQL.

    python -m bench.progress_cost [--held 200000] [--published 1000] [--no-postgres]

For each database, in this process (the task's), with the demo's settings:

- a report the rate holds back (the common case: a task that reports on
  every row): CPU time per ``report()``;
- a report that is published (the rate never holds one back, each report a
  new percentage): CPU and wall time per ``report()``, which renders the
  bar's HTML and stores one event in its own transaction;
- the events a loop of 1,000,000 reports stores at the default rate, and the
  loop's extra time per report, against the same loop without reports.

PostgreSQL is a scratch database on 127.0.0.1:5432 (user postgres), dropped
afterwards.  Run by hand; results in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

POSTGRES = "postgresql://postgres@127.0.0.1:5432"


def setup(database_url: str) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "testproject.settings"
    os.environ["DATABASE_URL"] = database_url
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def per_call(function, count: int) -> tuple[float, float]:
    """Return the CPU and wall microseconds per call of *function*, called *count* times."""
    cpu, wall = time.process_time(), time.perf_counter()
    for number in range(count):
        function(number)
    return (time.process_time() - cpu) / count * 1e6, (time.perf_counter() - wall) / count * 1e6


def measure(label: str, held: int, published: int) -> None:
    from django_realtime.models import Event
    from django_realtime.progress import ProgressReporter, progress_channel

    frozen = ProgressReporter(uuid.uuid4().hex, clock=lambda: 0.0)
    frozen.report(0.0, "first")  # published; every later report comes at the same instant, and is held
    held_cpu, _ = per_call(lambda n: frozen.report(n / held, "Counting rows"), held)

    eager = ProgressReporter(uuid.uuid4().hex, rate=1e9)
    sent_cpu, sent_wall = per_call(lambda n: eager.report(n / published, f"Row {n}"), published)

    rows, task = 1_000_000, uuid.uuid4().hex
    start = time.perf_counter()
    total = 0
    for number in range(rows):
        total += number
    bare = time.perf_counter() - start
    start = time.perf_counter()
    with ProgressReporter(task) as progress:
        for number in range(rows):
            total += number
            progress.report(number / rows, "Counting rows")
    loop = time.perf_counter() - start
    stored = Event.objects.filter(channel=progress_channel(task)).count()
    print(
        f"{label}: held back {held_cpu:.2f} us CPU/report; published {sent_cpu:.0f} us CPU, {sent_wall:.0f} us wall"
        f"/report; 1,000,000 reports at rate 4: {loop:.2f} s ({(loop - bare) / rows * 1e6:.2f} us/report over"
        f" the bare loop's {bare:.2f} s), {stored} events stored"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--held", type=int, default=200_000)
    parser.add_argument("--published", type=int, default=1_000)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--database-url", help="run on this database only (the child runs)")
    parser.add_argument("--label", default="")
    args = parser.parse_args()
    if args.database_url:
        setup(args.database_url)
        measure(args.label, args.held, args.published)
        return
    import subprocess

    print(f"load average before: {os.getloadavg()}")
    common = [sys.executable, "-m", "bench.progress_cost", "--held", str(args.held), "--published", str(args.published)]
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run([*common, "--database-url", f"sqlite:///{scratch}/db.sqlite3", "--label", "SQLite"], check=True)
    if not args.no_postgres:
        import psycopg

        name = f"bench_progress_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(f"{POSTGRES}/test", autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
            try:
                subprocess.run([*common, "--database-url", f"{POSTGRES}/{name}", "--label", "PostgreSQL"], check=True)
            finally:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
