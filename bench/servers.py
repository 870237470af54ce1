"""Start and stop the servers under test, and the publishers that feed them.

Every child process is started in a session of its own and registered, so
``stop_all()`` (called from the runner's ``finally``) kills whole process
groups: gunicorn's arbiter and its forked worker alike, even after Ctrl-C.
Process groups, free ports and what /proc says of a process (CPU, RSS) are
the test harness's (tests/support/processes.py): bench depends on it.

A target may run ``django_realtime`` and the demo project ``testproject``
from another source tree (a ``git worktree`` of an older commit, say) with
this checkout's ``bench`` and the same venv, so that two versions of the
package are measured in one run (:func:`workdir`).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from tests.support.processes import free_port, machine_busy, only_worker, stop_group

ROOT = Path(__file__).resolve().parent.parent

_running: list[subprocess.Popen] = []


@dataclass
class Target:
    """A server to measure: how to migrate it, start it and publish to it."""

    key: str  # "ours", "peer" or "floor"
    name: str
    python: str
    settings: str | None  # DJANGO_SETTINGS_MODULE; None: not a Django project, nothing to migrate
    server_argv: list[str]  # after "python -m", with {port} to fill in
    forks: bool  # gunicorn: measure the forked worker, not the arbiter
    publisher: str = "http"  # "http" (POST to the server) or "process" (bench.publisher)
    env: dict[str, str] = field(default_factory=dict)
    path: str = "/events/?channel=demo%3Abench"  # what each client opens
    transport: str = "sse"  # the clients: "sse" (bench.clients) or "ws" (bench.ws_clients)
    stats_path: str | None = None  # GET after the run; its JSON goes into the results
    tree: str | None = None  # run django_realtime from this source tree; None: from this checkout (ROOT)


def gunicorn_gevent(
    worker_connections: int = 2000, application: str = "bench.site.wsgi", worker_class: str = "gevent"
) -> list[str]:
    """Return the ``server_argv`` of one gunicorn gevent worker serving *application* (the bench site).

    *worker_class* is gunicorn's ``-k``: ``gevent``, or the package's
    ``django_realtime.gunicorn_worker.GeventWorker``.  No control socket:
    gunicorn 27's default is one per user, and runs may start two servers at once.
    """
    return [
        *("gunicorn", "-k", worker_class, "-w", "1", "--worker-connections", str(worker_connections)),
        *("--no-control-socket", "-b", "127.0.0.1:{port}", application),
    ]


#: What a target with a ``tree`` imports from it: the package, and the demo project its settings and URLs fit.
FROM_TREE = ("django_realtime", "testproject")


def workdir(target: Target) -> Path:
    """Return the directory *target*'s processes start in, first on their ``sys.path``.

    ROOT, or for a target with a ``tree``, a directory holding only
    symlinks to the tree's ``django_realtime`` and ``testproject``:
    ``python -m`` and gunicorn put the working directory first on
    ``sys.path``, ROOT comes next (for ``bench``), and the venv's editable
    install (a finder appended to ``sys.meta_path``) is never asked.
    """
    if target.tree is None:
        return ROOT
    tree = Path(target.tree).resolve()
    missing = [name for name in FROM_TREE if not (tree / name / "__init__.py").is_file()]
    if missing:
        raise ValueError(f"{target.tree} has no {', '.join(missing)}: not a source tree of the package")
    if tree == ROOT:
        return ROOT
    shim = Path(tempfile.gettempdir()) / f"django-realtime-bench-{hashlib.sha1(str(tree).encode()).hexdigest()[:10]}"
    shim.mkdir(exist_ok=True)
    for name in FROM_TREE:
        link = shim / name
        if not link.is_symlink() or link.resolve() != tree / name:
            link.unlink(missing_ok=True)
            link.symlink_to(tree / name, target_is_directory=True)
    return shim


def package_dir(target: Target) -> Path:
    """Return the directory *target*'s processes should import ``django_realtime`` from."""
    return Path(target.tree).resolve() / "django_realtime" if target.tree else ROOT / "django_realtime"


def environment(target: Target, database_url: str) -> dict[str, str]:
    env = {**os.environ, **target.env, "DATABASE_URL": database_url}
    if target.settings:
        env["DJANGO_SETTINGS_MODULE"] = target.settings
    first = [str(workdir(target))] if workdir(target) != ROOT else []
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [*first, str(ROOT), target.env.get("PYTHONPATH")]))
    return env


def migrate(target: Target, database_url: str) -> None:
    if not target.settings:
        return
    subprocess.run(
        [target.python, "-m", "django", "migrate", "-v0", "--no-input"],
        cwd=workdir(target),
        env=environment(target, database_url),
        check=True,
        timeout=180,
    )


def spawn(argv: list[str], env: dict[str, str], log: Path, cwd: Path = ROOT, **kwargs) -> subprocess.Popen:
    """Start *argv* in *cwd* in a new session, output to *log*, and remember it for stop_all()."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=kwargs.pop("stdout", out), stderr=out, start_new_session=True, **kwargs
        )
    _running.append(proc)
    return proc


def stop(proc: subprocess.Popen) -> None:
    """Kill *proc*'s whole process group: SIGINT (quick shutdown), then SIGKILL after 3 s or its leader."""
    if proc in _running:
        stop_group(proc, signal.SIGINT, 3.0)
        _running.remove(proc)


def stop_all() -> None:
    for proc in list(_running):
        stop(proc)


def start_server(target: Target, database_url: str, log: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    argv = [target.python, "-m", *(arg.format(port=port) for arg in target.server_argv)]
    return spawn(argv, environment(target, database_url), log, workdir(target)), port


@contextmanager
def measured_server(target: Target, database_url: str, log: Path) -> Iterator[tuple[int, int]]:
    """Run *target*'s server on *database_url* for the block; yield its port and the pid that serves.

    The block fails if that process was replaced meanwhile (its figures
    would mix two processes'); the server is stopped however it ends.
    """
    proc, port = start_server(target, database_url, log)
    try:
        wait_ready(proc, port)
        pid = measured_pid(target, proc)
        yield port, pid
        if measured_pid(target, proc) != pid:
            raise RuntimeError("the measured worker was replaced during the run")
    finally:
        stop(proc)


def wait_ready(proc: subprocess.Popen, port: int, timeout: float = 60) -> None:
    """Wait until GET /bench/ping/ answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode} before answering")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/bench/ping/")
            if conn.getresponse().status == 200:
                conn.close()
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"the server did not answer on port {port} within {timeout:.0f}s")


def get_json(port: int, path: str) -> dict:
    """GET *path* from the server on *port* and return its JSON."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {path} answered {response.status}")
        return json.loads(body)
    finally:
        conn.close()


def measured_pid(target: Target, proc: subprocess.Popen) -> int:
    """Return the pid that serves requests: gunicorn's single worker, else the server itself."""
    return only_worker(proc.pid) if target.forks else proc.pid


def wait_for_quiet(limit: float, patience: float = 600.0, sample: float = 2.0) -> float:
    """Wait until the machine uses at most *limit* cores (others' jobs: CI, other benchmarks); return the last reading.

    Gives up after *patience* seconds and returns the reading anyway: the
    run then goes on, and the report shows how busy the machine was.
    """
    deadline = time.monotonic() + patience
    while True:
        before = machine_busy()
        time.sleep(sample)
        busy = (machine_busy() - before) / sample
        if busy <= limit or time.monotonic() > deadline:
            return busy
        print(f"   the machine is busy ({busy:.2f} cores) with something else; waiting", flush=True)


class HttpPublisher:
    """Publish by POSTing to the server's /bench/publish/: publish() runs in the measured process."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def publish(self, seq: int, channel: str | None = None) -> None:
        query = f"seq={seq}" + (f"&channel={quote(channel)}" if channel else "")
        for attempt in (1, 2):
            try:
                self.conn.request("POST", f"/bench/publish/?{query}", body=b"")
                response = self.conn.getresponse()
                response.read()
                if response.status not in (200, 204):
                    raise RuntimeError(f"publish answered {response.status}")
                return
            except (http.client.HTTPException, ConnectionError):
                # A keep-alive connection the server closed: reconnect once.
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                if attempt == 2:
                    raise

    def close(self) -> None:
        self.conn.close()


class ProcessPublisher:
    """Publish from a separate long-lived process (bench.publisher): the cross-process case."""

    def __init__(self, target: Target, database_url: str, log: Path) -> None:
        self.proc = spawn(
            [target.python, "-m", "bench.publisher"],
            environment(target, database_url),
            log,
            workdir(target),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        ready, _, package = self.proc.stdout.readline().decode().strip().partition(" ")
        if ready != "ready":
            raise RuntimeError(f"bench.publisher did not start; see {log}")
        #: Where the publisher imported django_realtime from (the package directory, symlinks resolved).
        self.package = package

    def publish(self, seq: int, channel: str | None = None) -> int:
        """Publish seq *seq* and return the event's id (a cursor: ``lastEventId``)."""
        self.proc.stdin.write(f"{seq} {channel}\n".encode() if channel else f"{seq}\n".encode())
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        if not answer.startswith(b"ok"):
            raise RuntimeError(f"bench.publisher failed on seq {seq}: {answer!r}")
        return int(answer.split()[1])

    def close(self) -> None:
        self.proc.stdin.close()
        stop(self.proc)
