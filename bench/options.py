"""What the bench runners share: their common options, the CPU meter of a phase, the results files.

Each runner declares its own options and takes the common ones from here
with the defaults it wants (``add(parser, "events", "rate", events=200)``),
so that ``--drain`` or ``--out`` means one thing, said one way, in every
runner.  A :class:`Meter` reads what a phase cost from /proc: the measured
processes' CPU (user and system), the whole machine's busy CPU, and the wall
time.  ``write_results`` puts a run's JSON (and its Markdown report) under
``--out``, named by the time the run started.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.databases import POSTGRES_ADMIN
from tests.support.processes import cpu_times, machine_busy
from tests.support.servers import ROOT

#: The common options: flag, argparse keywords, and help (with ``{default}`` filled in).
OPTIONS: dict[str, tuple[str, dict[str, Any], str]] = {
    "events": ("--events", {"type": int, "default": 200}, "events published per run (default: {default})"),
    "rate": ("--rate", {"type": float, "default": 20.0}, "events per second (default: {default:g})"),
    "seconds": ("--seconds", {"type": float, "default": 30.0}, "seconds the publishers publish (default: {default:g})"),
    "warmup_events": ("--warmup-events", {"type": int, "default": 20}, "events sent to warm-up streams first"),
    "idle": ("--idle", {"type": float, "default": 3.0}, "seconds streams sit idle before RSS is read"),
    "drain": ("--drain", {"type": float, "default": 10.0}, "seconds to wait for delivery after the last event"),
    "client_processes": (
        "--client-processes",
        {"type": int, "default": 2},
        "processes holding the client streams",
    ),
    "max_background": (
        "--max-background",
        {"type": float, "default": 0.25},
        "before each run, wait (up to 10 minutes) until the machine uses at most this many cores (default: {default})",
    ),
    "backend": ("--backend", {"default": "polling"}, "REALTIME BACKEND of our server (default: {default})"),
    "repeat": ("--repeat", {"type": int, "default": 1}, "runs of each case (default: {default})"),
    "tree": ("--tree", {}, "run the package and the demo of this source tree (a git worktree of another commit)"),
    "postgres": ("--postgres", {"default": POSTGRES_ADMIN}, "PostgreSQL to create and drop databases on ({default})"),
    "out": ("--out", {"type": Path, "default": ROOT / "bench" / "results"}, "results directory"),
}


def parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """Return the argument parser of ``python -m`` *prog*, described by the first paragraph of its *doc*."""
    return argparse.ArgumentParser(prog=f"python -m {prog}", description=(doc or "").split("\n\n")[0])


def add(parser: argparse.ArgumentParser, *names: str, **defaults: Any) -> None:
    """Add the common options *names* (keys of OPTIONS) to *parser*, with the runner's own *defaults*."""
    for name in names:
        flag, keywords, help_text = OPTIONS[name]
        keywords = {**keywords, **({"default": defaults.pop(name)} if name in defaults else {})}
        parser.add_argument(flag, **keywords, help=help_text.format(default=keywords.get("default")))
    if defaults:
        raise TypeError(f"defaults for options not added: {', '.join(defaults)}")


def counts(text: str) -> list[int]:
    """Return the numbers of a comma-separated option (``--clients 1000,100``)."""
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise SystemExit(f"{text!r}: not comma-separated whole numbers") from None


@dataclass
class Cost:
    """What a phase cost: CPU seconds of each measured process (user, system), the machine's, the wall's."""

    cpu: list[tuple[float, float]]
    machine_seconds: float
    wall: float

    @property
    def cpu_used(self) -> tuple[float, float]:
        """Return the user and system CPU seconds of all the measured processes."""
        return sum(user for user, _ in self.cpu), sum(system for _, system in self.cpu)

    @property
    def per_process(self) -> list[float]:
        return [user + system for user, system in self.cpu]


class Meter:
    """Read the CPU of *pids* and of the whole machine, and the wall clock, at ``start()`` and ``stop()``."""

    def __init__(self, pids: Iterable[int]) -> None:
        self.pids = list(pids)
        self.start()

    def start(self) -> None:
        self._cpu = [cpu_times(pid) for pid in self.pids]
        self._machine = machine_busy()
        self._wall = time.monotonic()

    def stop(self) -> Cost:
        cpu = [cpu_times(pid) for pid in self.pids]
        used = [(end[0] - start[0], end[1] - start[1]) for start, end in zip(self._cpu, cpu, strict=True)]
        return Cost(used, machine_busy() - self._machine, time.monotonic() - self._wall)

    def cpu_seconds(self) -> float:
        """Return the measured processes' CPU seconds (user and system) since ``start()``."""
        return sum(self.stop().cpu_used)


def stamp(prog: str) -> str:
    """Return the name of a run of *prog* started now: its results' file name without the suffix."""
    return time.strftime("%Y%m%d-%H%M%S") + ("" if prog == "bench.run" else "-" + prog.rsplit(".", 1)[-1])


def write_results(out: Path, name: str, payload: dict[str, Any], markdown: str | None = None) -> None:
    """Write *payload* as ``out/name.json`` (and *markdown* as ``out/name.md``, printed); say where."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(payload, indent=2, default=str))
    if markdown is None:
        print(f"results written to {out / name}.json")
        return
    (out / f"{name}.md").write_text(markdown)
    print("\n" + markdown)
    print(f"results written to {out / name}.{{json,md}}")
