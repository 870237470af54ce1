"""A rolling restart under traffic: what subscribers lose, and how long they are down (issue 24, deploys).

The demo project runs under gunicorn with gevent workers (2 by default) and
the drain hook (``--no-hook``: without it, as before), on a fresh database
(PostgreSQL with the ``postgres`` backend, or SQLite with ``polling``).
Subscribers (tests/rolling_restart.py) follow one channel as EventSource
does: on any end of their stream they wait the last ``retry:`` they were
sent and resume with ``Last-Event-ID``.  A publisher process publishes at a
steady rate; midway the run sends the deploy's signals to gunicorn's master:

* ``hup``: ``kill -HUP`` (new workers, the old ones told to stop);
* ``usr2``: ``kill -USR2`` (a new master and its workers), then, once the
  new workers have loaded the project, ``TERM`` to the old master (it and
  its workers stop; gunicorn ignores ``WINCH`` unless it runs daemonized).

With ``--server daphne``, two daphne instances serve the demo instead, as
behind nginx (each subscriber's connection goes to the second when the
first refuses it), half the subscribers over WebSockets (resuming as
realtime.js does); midway each instance in turn is sent TERM and a new one
started on its port once it has exited.  ``--source DIR`` runs the servers
from another source tree (``git archive`` of an older commit), for the same
run's comparison with the package before a change.

Reported: events lost, duplicated, out of order; how the streams ended; per
subscriber, the time from its stream's end to a stream that stays (live
again); when the reconnects came (the spread); the old workers' exit.

    python -m bench.rolling_restart --database postgres --signal hup
    python -m bench.rolling_restart --database postgres --signal usr2
    python -m bench.rolling_restart --database postgres --signal hup --no-hook
    python -m bench.rolling_restart --database postgres --server daphne
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from bench import options
from bench.databases import fresh_database
from tests.support.processes import machine_busy, workers_of
from tests.support.rolling_restart import (
    DaphnePair,
    Outcome,
    PacedPublisher,
    Subscriber,
    WebSocketSubscriber,
    gunicorn_args,
    hup,
    run_restart,
)
from tests.support.servers import ROOT, Server, manage, project_env, start_server, stop_server
from tests.support.subscribers import percentile

CHANNEL = "demo:deploy"
BACKENDS = {"postgres": "postgres", "sqlite": "polling"}


def usr2(server: Server) -> list[tuple[float, str]]:
    """Upgrade gunicorn in place: USR2, then TERM to the old master once the new workers have loaded the project."""
    master = server.process.pid
    old = workers_of(master)
    start = time.monotonic()
    os.kill(master, signal.SIGUSR2)
    sent = [(0.0, "USR2")]
    deadline = start + 60
    new_master = None
    while time.monotonic() < deadline:
        children = workers_of(master) - old
        if children:
            new_master = children.pop()
            workers = workers_of(new_master)
            # The drain hook logs this once a worker has loaded the project (django_realtime.gunicorn_server).
            loaded = set(map(int, re.findall(r"worker (\d+) will end its streams", server.log())))
            if len(workers) >= 2 and workers <= loaded:
                break
        time.sleep(0.05)
    else:
        raise AssertionError(f"the new master's workers did not load within 60 s:\n{server.log()[-3000:]}")
    # gunicorn ignores WINCH unless it runs with --daemon: a TERM to the old master stops it and its workers.
    os.kill(master, signal.SIGTERM)
    sent.append((time.monotonic() - start, f"TERM to the old master (the new one: {new_master})"))
    return sent


def running(pid: int) -> bool:
    """Return whether process *pid* runs (a zombie, exited but not yet reaped, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def watch_exits(pids: set[int], gone_at: dict[int, float], stop: threading.Event) -> None:
    """Note in *gone_at* when each of *pids* exits, until all have or *stop* is set."""
    while not stop.is_set() and len(gone_at) < len(pids):
        for pid in pids - set(gone_at):
            if not running(pid):
                gone_at[pid] = time.monotonic()
        time.sleep(0.02)


def report(outcome: Outcome, args: argparse.Namespace, exits: list[float], busy: float, background: float) -> None:
    if args.server == "daphne":
        print(f"rolling restart: two daphne instances, TERM to each in turn, {args.database}")
        print(f"  source: {args.source or 'this tree'}")
    else:
        hook = "without the drain hook" if args.no_hook else "with the drain hook"
        print(f"rolling restart: {args.signal}, {hook}, gunicorn gevent x{args.workers}, {args.database}")
    print(f"  {len(outcome.subscribers)} subscribers, {outcome.published} events at {args.rate:g}/s")
    print(f"  signals (s after the first): {', '.join(f'{name} at {t:.2f}' for t, name in outcome.signals)}")
    print(f"  lost {outcome.lost()}, duplicated {outcome.duplicated()}, out of order {outcome.out_of_order()}")
    problems = outcome.problems()
    if problems:
        print(f"  PROBLEMS ({len(problems)}): " + "; ".join(problems[:5]))
    for kind in (Subscriber, WebSocketSubscriber):
        pool = [s for s in outcome.subscribers if isinstance(s, kind)]
        if pool:
            print(f"  {'SSE' if kind is Subscriber else 'WebSocket'} ({len(pool)}):")
            report_breaks(Outcome(pool, outcome.published, outcome.signals, outcome.signalled_at), args.server)
    gone = ", ".join(f"{t:.2f}" for t in exits) if exits else "none seen"
    print(f"  old {'instances' if args.server == 'daphne' else 'workers'} gone (s after the signal): {gone}")
    print(f"  machine: {background:.2f} cores busy before the run, {busy:.2f} during it (the run included)")


def report_breaks(outcome: Outcome, server: str) -> None:
    """Print how the streams ended and came back; under daphne each instance's stop counts on its own."""
    breaks = outcome.breaks()
    hows = Counter(b.how for b in breaks)
    downs = []
    hops = []
    for subscriber in outcome.subscribers:
        mine = [b for b in subscriber.breaks if b.at >= outcome.signalled_at]
        if not mine:
            continue
        hops.append(len(mine))
        if server == "daphne":  # a stop per instance, seconds apart: each break is one
            downs += [float("inf") if b.down is None else b.down for b in mine]
            continue
        last = mine[-1].live_at
        downs.append(float("inf") if last is None else last - mine[0].at)
    reconnects = sorted(b.live_at - outcome.signalled_at for b in breaks if b.live_at is not None)
    ends = sorted(b.at - outcome.signalled_at for b in breaks)
    busiest = max(Counter(int(t * 10) for t in reconnects).values()) if reconnects else 0
    latencies = [x for s in outcome.subscribers for x in s.latencies]
    print(f"  stream ends after the signal: {len(breaks)} ({dict(hows)}); per subscriber {Counter(hops)}")
    unit = "break" if server == "daphne" else "subscriber"
    if downs:
        print(
            f"  down (end of its stream to a stream that stays), per {unit}: p50 {percentile(downs, 0.5):.3f} s,"
            f" p99 {percentile(downs, 0.99):.3f} s, max {max(downs):.3f} s"
        )
    if ends and reconnects:
        print(
            f"  ends from {ends[0]:.3f} to {ends[-1]:.3f} s after the signal; reconnects (live) from"
            f" {reconnects[0]:.3f} to {reconnects[-1]:.3f} s; most in one 100 ms: {busiest}"
        )
    if latencies:
        print(
            f"  publish to receive over the whole run: p50 {percentile(latencies, 0.5) * 1000:.1f} ms,"
            f" p99 {percentile(latencies, 0.99) * 1000:.1f} ms, max {max(latencies) * 1000:.0f} ms"
        )


def main() -> None:
    parser = options.parser("bench.rolling_restart", __doc__)
    parser.add_argument("--database", choices=sorted(BACKENDS), default="postgres")
    parser.add_argument("--server", choices=["gunicorn", "daphne"], default="gunicorn")
    parser.add_argument("--websocket-share", type=float, default=0.5, help="daphne: the share of WebSocket subscribers")
    parser.add_argument("--source", type=Path, help="daphne: run the servers from this source tree")
    parser.add_argument("--signal", choices=["hup", "usr2"], default="hup")
    parser.add_argument("--subscribers", type=int, default=200)
    options.add(parser, "rate", "seconds")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--graceful-timeout", type=float, default=30.0)
    parser.add_argument("--no-hook", action="store_true", help="run gunicorn without the drain hook (as before it)")
    parser.add_argument("--log", type=Path, help="copy the server's log there")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="rolling-") as tmp, fresh_database(args.database, Path(tmp), "roll") as url:
        directory = Path(tmp)
        env = {**project_env(url), "REALTIME_BACKEND": BACKENDS[args.database]}
        manage(env, "migrate", "--verbosity", "0")
        if args.server == "daphne":
            run_daphne(args, env, directory)
            return
        extra = gunicorn_args(
            directory, workers=args.workers, graceful_timeout=args.graceful_timeout, hook=not args.no_hook
        )
        before = machine_busy()
        time.sleep(2)
        background = (machine_busy() - before) / 2
        server = start_server("gunicorn-gevent", env, directory / "server.log", extra)
        publisher = PacedPublisher(env, CHANNEL, args.rate, int(args.rate * args.seconds), directory / "pub.stderr")
        try:
            old = workers_of(server.process.pid)
            gone_at: dict[int, float] = {}
            watching = threading.Event()
            watcher = threading.Thread(target=watch_exits, args=(old, gone_at, watching), daemon=True)
            watcher.start()
            started, busy_start = time.monotonic(), machine_busy()
            outcome = asyncio.run(
                run_restart(
                    server,
                    publisher,
                    channel=CHANNEL,
                    subscribers=args.subscribers,
                    signal_after=args.seconds / 2,
                    send_signals=usr2 if args.signal == "usr2" else hup,
                    settle=args.graceful_timeout + 5,
                )
            )
            busy = (machine_busy() - busy_start) / (time.monotonic() - started)
            watcher.join(args.graceful_timeout + 5)
            exits = sorted(t - outcome.signalled_at for t in gone_at.values())
        finally:
            watching.set()
            publisher.kill()
            stop_server(server)
            if args.log:
                args.log.write_text(server.log())
        report(outcome, args, exits, busy, background)


def run_daphne(args: argparse.Namespace, env: dict[str, str], directory: Path) -> None:
    """Two daphne instances behind a balancer, SSE and WebSocket subscribers, TERM to each instance in turn."""
    before = machine_busy()
    time.sleep(2)
    background = (machine_busy() - before) / 2
    pair = DaphnePair(env, directory, cwd=args.source.resolve() if args.source else ROOT)
    publisher = PacedPublisher(env, CHANNEL, args.rate, int(args.rate * args.seconds), directory / "pub.stderr")
    websockets = round(args.subscribers * args.websocket_share)
    pool = [pair.sse_subscriber(CHANNEL) for _ in range(args.subscribers - websockets)]
    pool += [pair.websocket_subscriber(CHANNEL) for _ in range(websockets)]
    try:
        started, busy_start = time.monotonic(), machine_busy()
        outcome = asyncio.run(
            run_restart(
                pair.servers["a"],
                publisher,
                channel=CHANNEL,
                subscribers=len(pool),
                signal_after=args.seconds / 3,
                send_signals=pair.restart_in_turn,
                settle=args.graceful_timeout + 5,
                pool=pool,
            )
        )
        busy = (machine_busy() - busy_start) / (time.monotonic() - started)
    finally:
        publisher.kill()
        pair.stop()
        if args.log:
            args.log.write_text(pair.log())
    exits = [seconds for _, seconds, _ in pair.exits]
    report(outcome, args, exits, busy, background)


if __name__ == "__main__":
    main()
