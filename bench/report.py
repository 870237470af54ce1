"""Turn raw measurements into figures, and figures into a markdown report."""

from __future__ import annotations

import math
import os
import platform
import subprocess
import sys
import time
from array import array
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.servers import ROOT, Target


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def summarise(
    *,
    target: Target,
    clients: int,
    warm: dict,
    opened: dict,
    cpu_open: float,
    rss_idle0: int,
    rss_idle_n: int,
    cpu_used: tuple[float, float],
    wall: float,
    rate: float,
    status: dict,
    results: dict,
    log: str,
    stats: dict | None = None,
    machine_seconds: float | None = None,
    background: float | None = None,
) -> dict[str, Any]:
    latencies: array = results.pop("latencies")
    ordered = sorted(latencies)
    streams = opened["opened"]
    delivered = results["received"]
    return {
        "target": asdict(target),
        "clients": clients,
        "warmup_streams": warm["opened"],
        "streams": streams,
        "open_failures": opened["failed"],
        "open_errors": opened["errors"],
        "open_seconds": round(opened["seconds"], 2),
        "cpu_ms_per_open": round(cpu_open * 1e3 / streams, 3) if streams else None,
        "rss_idle0_kb": rss_idle0,
        "rss_idle_n_kb": rss_idle_n,
        "kb_per_stream": round((rss_idle_n - rss_idle0) / streams, 1) if streams else None,
        "events": results["expected"] // streams if streams else 0,
        "rate": round(rate, 2),
        "delivered": delivered,
        "expected": results["expected"],
        "lost": results["expected"] - delivered,
        "streams_with_loss": results["streams_with_loss"],
        "duplicates": results["duplicates"],
        "unexpected": results["unexpected"],
        "dropped_connections": results["dropped_connections"],
        "p50_ms": round(percentile(ordered, 0.50) * 1e3, 1),
        "p90_ms": round(percentile(ordered, 0.90) * 1e3, 1),
        "p99_ms": round(percentile(ordered, 0.99) * 1e3, 1),
        "max_ms": round(ordered[-1] * 1e3, 1) if ordered else math.nan,
        "cpu_seconds": round(sum(cpu_used), 2),
        # Share of one core the server used over the phase: near 1, it is saturated.
        "server_cores": round(sum(cpu_used) / wall, 2) if wall else None,
        "cpu_user_seconds": round(cpu_used[0], 2),
        "cpu_sys_seconds": round(cpu_used[1], 2),
        "us_per_event": round(sum(cpu_used) * 1e6 / delivered, 1) if delivered else None,
        "us_per_event_sys": round(cpu_used[1] * 1e6 / delivered, 1) if delivered else None,
        "phase_seconds": round(wall, 2),
        # Cores the client processes used over the phase: far below their count means they kept up.
        "client_cores": round(results["client_cpu_seconds"] / wall, 2) if wall else None,
        # Cores the whole machine used over the phase (/proc/stat): server, clients, publisher,
        # database, and anything else running; and before the run, with none of ours running.
        "machine_cores": round(machine_seconds / wall, 2) if wall and machine_seconds is not None else None,
        "background_cores": round(background, 2) if background is not None else None,
        "log": log,
        **({"server_stats": stats} if stats is not None else {}),
    }


def name(run: dict) -> str:
    target = run["target"]
    return f"{target['name']}, publish {target['publisher']}"


def line(run: dict) -> str:
    if "error" in run:
        return f"   {name(run)}, {run['clients']} clients: FAILED ({run['error']})"
    return (
        f"   {run['streams']}/{run['clients']} streams; p50 {run['p50_ms']} ms, p99 {run['p99_ms']} ms; "
        f"{run['kb_per_stream']} KB/stream; {run['us_per_event']} us/event; lost {run['lost']}; "
        f"{run['rate']} events/s; server {run['server_cores']} cores, clients {run['client_cores']} cores, "
        f"machine {run.get('machine_cores')} cores (before: {run.get('background_cores')})"
    )


def _version(python: str, package: str) -> str:
    code = f"import importlib.metadata as m; print(m.version({package!r}))"
    done = subprocess.run([python, "-c", code], capture_output=True, text=True)
    return done.stdout.strip() or "absent"


def git_state(tree: Path = ROOT) -> str:
    """Return the commit of the source tree *tree*, marked when its package's files differ from it."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=tree, capture_output=True, text=True)
        return done.stdout.strip()

    dirty = git("status", "--porcelain", "--", "django_realtime")
    return git("rev-parse", "--short", "HEAD") + (" + uncommitted changes in django_realtime/" if dirty else "")


def machine(
    args: Any,
    argv: list[str],
    targets: list[Target],
    prog: str = "bench.run",
    packages: tuple[str, ...] = ("django", "gunicorn", "gevent"),
) -> dict[str, Any]:
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    versions = {pkg: _version(sys.executable, pkg) for pkg in packages}
    for python in sorted({t.python for t in targets if t.python != sys.executable}):
        for pkg in ("django-eventstream", "daphne", "uvicorn", "django"):
            versions[f"peer {pkg}"] = _version(python, pkg)
    servers = {f"{t.name} ({t.publisher})": " ".join([Path(t.python).name, "-m", *t.server_argv]) for t in targets}
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "package": git_state(),
        # Other source trees the targets run django_realtime from (Target.tree).
        "trees": {tree: git_state(Path(tree)) for tree in sorted({t.tree for t in targets if t.tree})},
        "cpu": f"{cpu}, {os.cpu_count()} cores",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": versions,
        "command": f"python -m {prog} " + " ".join(argv[1:]),
        "servers": servers,
        "options": {k: str(v) for k, v in vars(args).items()},
    }


def _ratio(ours: Any, peer: Any) -> str:
    if not ours or not peer:
        return "n/a"
    return f"{ours / peer:.2f}"


def header(meta: dict) -> list[str]:
    """Return the report's first lines: when, where, what was measured, with which command."""
    trees = "".join(f"; {tree} at {state}" for tree, state in meta.get("trees", {}).items())
    return [
        f"Run {meta['date']} on {meta['cpu']}, Linux {meta['kernel']}, Python {meta['python']}; "
        f"django-realtime at {meta['package']}{trees}.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) + ".",
        f"Command: `{meta['command']}`",
    ]


def markdown(meta: dict, runs: list[dict]) -> str:
    out = [
        *header(meta),
        "",
        "| server | publisher | streams | p50 / p99 / max ms | KB per idle stream "
        "| CPU µs per delivered event (of which sys) | lost / expected | events/s achieved "
        "| server / clients / machine cores busy | CPU ms per stream opened |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        if "error" in run:
            out.append(
                f"| {run['target']['name']} | {run['target']['publisher']} | {run['clients']} "
                f"| failed: {run['error']} | | | | | | |"
            )
            continue
        out.append(
            f"| {run['target']['name']} | {run['target']['publisher']} | {run['streams']:,} "
            f"| {run['p50_ms']} / {run['p99_ms']} / {run['max_ms']} | {run['kb_per_stream']} "
            f"| {run['us_per_event']} ({run['us_per_event_sys']}) | {run['lost']:,} / {run['expected']:,} "
            f"| {run['rate']} | {run['server_cores']} / {run['client_cores']} / {run.get('machine_cores')} "
            f"| {run['cpu_ms_per_open']} |"
        )
    ok = [run for run in runs if "error" not in run]
    ours = [r for r in ok if r["target"]["key"] == "ours"]
    peers = [r for r in ok if r["target"]["key"] != "ours"]
    if ours and peers:
        out += [
            "",
            "Ratios ours / other (below 1: ours is lower, i.e. better), same client count:",
            "",
            "| ours | other | streams | p50 | p99 | KB per stream | CPU per event |",
            "|---|---|---|---|---|---|---|",
        ]
        for mine in ours:
            for peer in peers:
                if peer["clients"] != mine["clients"]:
                    continue
                out.append(
                    f"| publish {mine['target']['publisher']} | {peer['target']['name']} | {mine['clients']:,} "
                    f"| {_ratio(mine['p50_ms'], peer['p50_ms'])} | {_ratio(mine['p99_ms'], peer['p99_ms'])} "
                    f"| {_ratio(mine['kb_per_stream'], peer['kb_per_stream'])} "
                    f"| {_ratio(mine['us_per_event'], peer['us_per_event'])} |"
                )
    stats = [run for run in ok if run.get("server_stats")]
    if stats:
        out += ["", "Reported by the servers after the run:", ""]
        out += [f"- {name(run)}, {run['streams']:,} streams: {run['server_stats']}" for run in stats]
    out += ["", "Servers:", ""] + [f"- {k}: `{v}`" for k, v in meta["servers"].items()]
    return "\n".join(out) + "\n"
