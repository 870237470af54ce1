"""Processes the tests and benches start, and what Linux's /proc says of them.

Whatever a test or a bench starts runs in a process group of its own
(``start_new_session=True``), so that stopping it stops its children too
(gunicorn's forked workers), and ends by its pid, never by a name.
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

#: Seconds a process group may take to exit after its first signal before it is killed.
STOP_TIMEOUT = 10.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """Return a loopback TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def signal_group(process: subprocess.Popen, signum: int) -> None:
    """Send *signum* to *process*'s group (it leads one: ``start_new_session``), if any is left."""
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass


def stop_group(process: subprocess.Popen, first: int = signal.SIGTERM, grace: float = STOP_TIMEOUT) -> None:
    """Stop *process*'s group: *first*, then SIGKILL for whatever outlives *grace* seconds or its leader."""
    signal_group(process, first)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        pass
    # Workers that outlived their master, or a master that ignored the first signal.
    signal_group(process, signal.SIGKILL)
    process.wait()


def workers_of(master: int) -> set[int]:
    """Return the pids of the processes whose parent is *master*: gunicorn's workers."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == master:
                found.add(int(entry))
    return found


def only_worker(master: int, timeout: float = 0.0) -> int:
    """Return the pid of *master*'s one worker, waiting up to *timeout* seconds for it to be forked."""
    deadline = time.monotonic() + timeout
    while len(workers := workers_of(master)) != 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    if len(workers) != 1:
        raise RuntimeError(f"expected one worker under {master}, found {sorted(workers)}")
    return workers.pop()


def memory_kb(pid: int, field: str = "VmRSS") -> int:
    """Return a figure of *pid*'s /proc status: a memory figure in KiB (VmRSS; VmHWM, its peak), or Threads."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == field:
            return int(value.split()[0])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def steady_memory_kb(pid: int, reads: int = 5, pause: float = 0.2) -> int:
    """Return the median of *reads* VmRSS reads of *pid*, *pause* seconds apart."""
    values = []
    for _ in range(reads):
        values.append(memory_kb(pid))
        time.sleep(pause)
    return int(statistics.median(values))


def cpu_times(pid: int) -> tuple[float, float]:
    """Return the user and system CPU seconds of *pid* (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def machine_busy() -> float:
    """Return the CPU seconds the whole machine has spent busy (all cores, all processes) since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle and iowait
    return (sum(fields[:8]) - idle) / CLK_TCK


class ScriptProcess:
    """A ``python -m MODULE ARGS`` helper of the tests, in a group of its own: lines on stdin, lines on stdout.

    Its standard error goes to *stderr_path*, which a failure shows.
    """

    def __init__(self, module: str, args: Sequence[str], env: dict[str, str], stderr_path: Path, cwd: Path) -> None:
        self.stderr_path = stderr_path
        with stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", module, *args],
                cwd=cwd,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                encoding="utf-8",
                start_new_session=True,
            )

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def go(self) -> None:
        """Tell it to start (it waits for a ``go`` line once it is ready)."""
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def kill(self) -> None:
        """Kill its process group if it still runs, and release its pipes."""
        if self.process.poll() is None:
            signal_group(self.process, signal.SIGKILL)
        self.process.wait()
        self._reaped()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                try:
                    pipe.close()
                except BrokenPipeError:
                    pass

    def _reaped(self) -> None:
        """Let a subclass finish reading its output before its pipes close."""
