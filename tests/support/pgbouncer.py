"""A PgBouncer of the test's own, in transaction mode, in front of the shared PostgreSQL.

Its configuration, log and pid file are in a directory of its own; it
listens on a free loopback port, runs in a process group of its own and is
ended by its pid.  PgBouncer refuses to run as root: as root it runs as the
``postgres`` user (or ``nobody``), which owns its directory.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.processes import free_port
from tests.support.services import POSTGRES, unavailable

HOST = "127.0.0.1"
#: Seconds PgBouncer may take to accept connections, and to exit after SIGTERM before its group is killed.
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0

CONFIG = """\
[databases]
* = host={pg_host} port={pg_port}

[pgbouncer]
listen_addr = {host}
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {directory}/userlist.txt
pool_mode = transaction
max_client_conn = 200
default_pool_size = 20
ignore_startup_parameters = extra_float_digits,options
logfile = {directory}/pgbouncer.log
"""


def require_pgbouncer() -> str:
    """Return the path of pgbouncer; skip the test if it is not installed (in CI, fail)."""
    path = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if os.access("/usr/sbin/pgbouncer", os.X_OK) else None)
    if path is None:
        unavailable("pgbouncer is not installed", remedy="install it (Debian: apt-get install pgbouncer)")
    return path


class PgBouncer:
    """A pgbouncer process in transaction mode; ``url(database)`` reaches *database* through it."""

    def __init__(self) -> None:
        self.binary = require_pgbouncer()
        self.directory = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PgBouncer:
        self.start()
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgres://postgres@{HOST}:{self.port}/{database}"

    def log(self) -> str:
        path = self.directory / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> None:
        config = self.directory / "pgbouncer.ini"
        fields = {"host": HOST, "port": self.port, "directory": self.directory}
        config.write_text(CONFIG.format(pg_host=POSTGRES[0], pg_port=POSTGRES[1], **fields))
        (self.directory / "userlist.txt").write_text('"postgres" ""\n')
        command = [self.binary, str(config)]
        if os.geteuid() == 0:
            user = _unprivileged_user()
            for path in [self.directory, *self.directory.iterdir()]:
                os.chown(path, user.pw_uid, user.pw_gid)
            command = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", *command]
        with (self.directory / "stdout.log").open("wb") as out:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                output = (self.directory / "stdout.log").read_text(errors="replace")
                raise AssertionError(f"pgbouncer exited with {self.process.returncode}:\n{output}\n{self.log()}")
            try:
                socket.create_connection((HOST, self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(f"pgbouncer did not listen within {START_TIMEOUT} s:\n{self.log()}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _unprivileged_user() -> pwd.struct_passwd:
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise AssertionError("pgbouncer refuses to run as root, and there is no postgres or nobody user to run it as")
