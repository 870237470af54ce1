"""A private redis-server for tests that stop Redis or kill its clients.

The Redis on 127.0.0.1:6379 is shared by everything on the machine, so a
test that shuts it down, or runs ``CLIENT KILL``, would break whoever else
uses it.  Such a test starts its own server instead: on a free loopback
port, persisting nothing, in a process group of its own, ended by its pid.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.processes import free_port, stop_group
from tests.support.services import unavailable

HOST = "127.0.0.1"
#: Seconds redis-server may take to answer PING, and to exit after SIGTERM before its group is killed.
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


def require_redis_server() -> str:
    """Return the path of redis-server; skip the test if it is not installed (in CI, fail)."""
    path = shutil.which("redis-server")
    if path is None:
        unavailable("redis-server is not installed", remedy="install it (Debian: apt-get install redis-server)")
    return path


def pings(port: int) -> bool:
    """Return whether a Redis on *port* answers PING."""
    try:
        with socket.create_connection((HOST, port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """A redis-server of the test's own; ``stop()`` then ``start()`` restarts it on the same port."""

    def __init__(self, directory: Path | None = None) -> None:
        self._scratch = None if directory is not None else tempfile.TemporaryDirectory(prefix="redis-")
        self.directory = Path(directory if directory is not None else self._scratch.name)
        self.log_path = self.directory / "redis-server.log"
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.stop()
        if self._scratch is not None:
            self._scratch.cleanup()

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self) -> None:
        """Start the server, on a free port the first time and on the same port after that; wait for PING."""
        executable = require_redis_server()
        if self.process is not None:
            raise RuntimeError(f"redis-server already runs on port {self.port}")
        first = self.port is None
        for _ in range(3 if first else 1):
            port = free_port() if first else self.port
            if self._run(executable, port):
                self.port = port
                return
        raise AssertionError(f"redis-server did not start on port {port}:\n{self.log()}")

    def _run(self, executable: str, port: int) -> bool:
        """Start redis-server on *port*; return whether it answers PING, False if it exits first."""
        command = [executable, "--port", str(port), "--bind", HOST, "--daemonize", "no"]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                cwd=self.directory,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not pings(port):
            if self.process.poll() is not None:  # another process took the port since free_port()
                self.process = None
                return False
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"redis-server did not answer PING within {START_TIMEOUT}s:\n{self.log()}")
            time.sleep(0.02)
        return True

    def stop(self) -> None:
        """End the server by its pid: SIGTERM, then SIGKILL of its group for whatever outlives STOP_TIMEOUT."""
        process, self.process = self.process, None
        if process is None:
            return
        stop_group(process, grace=STOP_TIMEOUT)

    def restart(self, downtime: float) -> None:
        """Stop the server, leave it down for *downtime* seconds, and start it again on the same port."""
        self.stop()
        time.sleep(downtime)
        self.start()

    def client(self):
        """Return a redis-py client of this server."""
        import redis

        return redis.Redis(host=HOST, port=self.port, socket_timeout=5, socket_connect_timeout=5)
