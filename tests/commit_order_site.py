"""The commit-order site: the demo under real servers on a fresh database, and transactions held open on it.

Shared by the commit-order tests against servers (tests/test_commit_order_servers.py)
and clients (tests/test_commit_order_clients.py), which import the ``site`` and
``publisher`` fixtures as ``site_fixture`` and ``publisher_fixture`` (so that no
test argument shadows an imported name).  ``site`` runs gunicorn (gevent) and
daphne on a fresh PostgreSQL or MariaDB database, once per module that uses
it; ``publisher`` drives tests/held_publisher.py, which holds publishing
transactions open on command.
"""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest

from tests.support.mariadb_database import scratch_mariadb
from tests.support.postgres_database import scratch_database
from tests.support.servers import ROOT, manage, project_env, start_server, stop_server
from tests.support.services import POSTGRES, require_mariadb

#: Seconds within which a committed event must arrive: far longer than delivery takes, far shorter than
#: the transactions held open here (they stay open until the test ends them).
ARRIVAL = 10.0


@contextmanager
def postgres_url() -> Iterator[str]:
    with scratch_database("realtime_order") as (name, _admin):
        yield f"postgres://postgres@{POSTGRES[0]}:{POSTGRES[1]}/{name}"


@contextmanager
def mariadb_url() -> Iterator[str]:
    require_mariadb()
    with scratch_mariadb("realtime_order") as url:
        yield url


#: (database, wake-up backend): PostgreSQL's own LISTEN/NOTIFY; MariaDB polled.
SETUPS = {"postgres": (postgres_url, "postgres"), "mariadb": (mariadb_url, "polling")}


@pytest.fixture(scope="module", params=list(SETUPS), name="site")
def site_fixture(request, tmp_path_factory):
    """The demo under gunicorn (gevent) and daphne on a fresh database; yields (env, {kind: server})."""
    make_url, backend = SETUPS[request.param]
    directory = tmp_path_factory.mktemp(f"order-{request.param}")
    with ExitStack() as stack:
        url = stack.enter_context(make_url())
        env = {**project_env(url), "REALTIME_BACKEND": backend}
        manage(env, "migrate", "--verbosity", "0")
        servers = {}
        for kind in ("gunicorn-gevent", "daphne"):
            servers[kind] = start_server(kind, env, directory / f"{kind}.log")
            stack.callback(stop_server, servers[kind])
        yield env, servers


class HeldPublisher:
    """tests/held_publisher.py in a process of its own, driven line by line."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.held_publisher"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        assert self.answer("ready") == "ready"

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.strip())
        self.lines.put("")

    def answer(self, prefix: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            if not line:
                raise AssertionError(f"the held publisher exited:\n{self.process.stderr.read()}")  # type: ignore[union-attr]
            if line.startswith(prefix):
                return line

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def begin(self, name: str, channel: str) -> int:
        self.send(f"begin {name} {channel}")
        return int(self.answer(f"begun {name} ").split()[2])

    def end(self, name: str, *, commit: bool = True) -> None:
        self.send(f"{'commit' if commit else 'rollback'} {name}")
        self.answer(f"{'committed' if commit else 'rolled back'} {name}")

    def publish(self, channel: str) -> int:
        self.send(f"publish {channel}")
        return int(self.answer("published ").split()[1])

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture(name="publisher")
def publisher_fixture(site):
    """A HeldPublisher on the site's database."""
    env, _ = site
    held = HeldPublisher(env)
    yield held
    held.close()
