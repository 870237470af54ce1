"""What broadcasting costs a model save: time per save of the board's Item, broadcasting and not, same run.

Run by hand: ``python -m bench.live_save [--saves 2000] [--rounds 5] [--database postgres|sqlite]``.

Each save is its own transaction (``atomic()``: the row, plus the action and
the refresh when broadcasting, then COMMIT), on a fresh database.  Rounds
alternate the two modes, so that a change in the machine's load touches
both; the report gives each round and the median of each mode.  "plain" is
the same model unregistered (no signal receiver at all); "publish" is that
plus two plain ``publish()`` calls of the same sizes (the log's own cost); "broadcast" is the
demo's declaration: an ``append`` rendered from ``board/_item.html`` on
``board:items`` and a ``refresh`` on ``board:counts``, two rows of the log.
"later" is that declaration with ``render="later"``: what the saving
transaction pays (the row, the envelope, the refresh; the task is enqueued on
the tasks framework's in-memory DummyBackend after the commit); "task" is
the time per task when the round's queued renders then run one after the
other, each as a worker would (read, render, lock, check, publish).
Half the saves create an item, half update one.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.databases import fresh_database

ROOT = Path(__file__).resolve().parent.parent


def run(saves: int, rounds: int) -> None:
    import django

    django.setup()
    from django.db import transaction
    from django.db.models.signals import post_delete, post_save
    from django.test import override_settings

    from django_realtime import live
    from testproject.board.models import Item

    declaration = live.declaration_for(Item)
    # The demo's live count of items (board/models.py: broadcast_total) is its own receiver, not the
    # declaration: off in every mode, so that the modes stay what they measured on 2026-12-07.
    post_save.disconnect(sender=Item, dispatch_uid="board-total-saved")
    post_delete.disconnect(sender=Item, dispatch_uid="board-total-deleted")

    from django_realtime import publish

    html = live.action_html("append", target="board-items", dom_id="board-item-1", html='<li id="board-item-1">x</li>')

    from django_realtime.live import later

    backends = "django.tasks.backends" if later._task.__module__.startswith("django.tasks") else "django_tasks.backends"
    override_settings(TASKS={"default": {"BACKEND": f"{backends}.dummy.DummyBackend"}}).enable()
    queue = later.render_later.get_backend()  # type: ignore[attr-defined]
    task_times: list[float] = []

    def one_round(mode: str) -> float:
        if mode in ("broadcast", "later"):
            live.register(
                Item,
                to=declaration.to,
                target=declaration.target,
                refreshes=declaration.refreshes,
                render="now" if mode == "broadcast" else "later",
            )
        else:
            live.unregister(Item)
        started = time.perf_counter()
        item = None
        for n in range(saves):
            with transaction.atomic():
                if item is None or n % 2 == 0:
                    item = Item.objects.create(title=f"item {n}")
                else:
                    item.title = f"item {n}, edited"
                    item.save()
                if mode == "publish":  # what the log costs alone: two publish() of the same sizes
                    publish("board:items", html, event="live")
                    publish("board:counts", "-", event="live-refresh")
        elapsed = (time.perf_counter() - started) / saves * 1e6
        if mode == "later":
            tasks, started = list(queue.results), time.perf_counter()
            for result in tasks:
                result.task.call(*result.args, **result.kwargs)
            task_times.append((time.perf_counter() - started) / len(tasks) * 1e6)
            queue.clear()
        return elapsed

    one_round("broadcast")  # warm-up: templates, connections, caches
    results: dict[str, list[float]] = {"plain": [], "publish": [], "broadcast": [], "later": []}
    for _ in range(rounds):
        for mode in results:
            results[mode].append(one_round(mode))
    for mode, values in results.items():
        rounds_text = ", ".join(f"{v:.0f}" for v in values)
        print(f"{mode:>9}: median {statistics.median(values):.0f} µs per save  (rounds: {rounds_text})")
    rounds_text = ", ".join(f"{v:.0f}" for v in task_times)
    print(f"{'task':>9}: median {statistics.median(task_times):.0f} µs per render task  (rounds: {rounds_text})")
    plain, broadcast = (statistics.median(results[m]) for m in ("plain", "broadcast"))
    print(f"broadcasting adds {broadcast - plain:.0f} µs per save ({broadcast / plain:.2f}×)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--saves", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--database", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run(args.saves, args.rounds)
        return
    with tempfile.TemporaryDirectory() as workdir, fresh_database(args.database, Path(workdir), "live-save") as url:
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "testproject.settings", "DATABASE_URL": url}
        env["REALTIME_BACKEND"] = "postgres" if args.database == "postgres" else "polling"
        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
        command = [sys.executable, "-m", "bench.live_save", "--child", f"--saves={args.saves}"]
        print(f"load average before: {Path('/proc/loadavg').read_text().split()[:3]}")
        subprocess.run([*command, f"--rounds={args.rounds}"], cwd=ROOT, env=env, check=True)
        print(f"load average after: {Path('/proc/loadavg').read_text().split()[:3]}")


if __name__ == "__main__":
    main()
