"""Run the demo project under real servers for the WebSocket end-to-end tests.

Each server is a subprocess in a session of its own, on a free loopback
port, with its output in a log file that a failing test shows.  The
processes use ``tests.ws_settings`` (the demo's settings with tighter limits)
on a SQLite file migrated beforehand; events from "another process" are
published with ``manage.py publish_event``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.support.servers import manage

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SETTINGS = "tests.ws_settings"

#: Seconds a server may take to accept connections.
START_TIMEOUT = 30.0
#: Seconds a server may take to exit after SIGTERM before it is killed.
STOP_TIMEOUT = 10.0
#: Seconds a test waits for one message.
RECEIVE_TIMEOUT = 10.0


def free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def project_env(database_url: str) -> dict[str, str]:
    """Return the environment of the servers and commands, on *database_url*."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": SETTINGS,
        "DATABASE_URL": database_url,
        # Cross-process delivery needs a backend that reads the log.
        "REALTIME_BACKEND": "polling",
        "PYTHONUNBUFFERED": "1",
    }


def publish_lines(env: dict[str, str], channel: str, docs: list[object]) -> list[str]:
    """Publish *docs* from another process with ``publish_event --stdin``; return their ids."""
    lines = "".join(json.dumps(doc) + "\n" for doc in docs)
    ids = manage(env, "publish_event", channel, "--stdin", input=lines).split()
    assert len(ids) == len(docs), f"publish_event printed {len(ids)} ids for {len(docs)} documents"
    return ids


@dataclass
class Server:
    """A running server process."""

    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/"

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float) -> None:
        """Wait until the server's log holds *text*."""
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not in the server log after {timeout}s:\n{self.log()[-3000:]}")
            time.sleep(0.05)

    def memory_kb(self, field: str) -> int:
        """Return a memory figure of the server process from /proc (VmRSS, VmHWM: its peak)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name == field:
                return int(value.split()[0])
        raise AssertionError(f"no {field} in /proc/{self.process.pid}/status")

    def connect(self, **kwargs) -> ClientConnection:
        """Open a WebSocket to /ws/ with this server's own Origin, as a page of the site would."""
        return connect(self.ws_url, origin=kwargs.pop("origin", self.origin), open_timeout=10, **kwargs)


def _wait_until_listening(server: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if server.process.poll() is not None:
            raise AssertionError(f"the server exited with status {server.process.returncode}:\n{server.log()}")
        try:
            socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"the server did not listen within {START_TIMEOUT}s:\n{server.log()}") from None
            time.sleep(0.05)


@contextmanager
def running(command: list[str], env: dict[str, str], log_path: Path) -> Iterator[Server]:
    """Run *command* (``{port}`` filled in) until the block ends."""
    port = free_port()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [part.format(port=port) for part in command],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(port, process, log_path)
    try:
        _wait_until_listening(server)
        yield server
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(STOP_TIMEOUT)


def daphne(*options: str) -> list[str]:
    """Return the command line of daphne serving the demo, with *options*."""
    return [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", "{port}", *options, "testproject.asgi:application"]


def runserver() -> list[str]:
    """Return the command line of ``manage.py runserver`` (daphne's, as daphne is first in INSTALLED_APPS)."""
    return [sys.executable, "manage.py", "runserver", "127.0.0.1:{port}", "--noreload"]


# Client side --------------------------------------------------------------


def send(ws: ClientConnection, message: object) -> None:
    ws.send(message if isinstance(message, str | bytes) else json.dumps(message))


def receive(ws: ClientConnection, timeout: float = RECEIVE_TIMEOUT) -> dict:
    return json.loads(ws.recv(timeout=timeout))


def request(ws: ClientConnection, message: object) -> dict:
    send(ws, message)
    return receive(ws)


def subscribe(ws: ClientConnection, channel: str, last_id: str | None = None) -> dict:
    message = {"type": "subscribe", "channel": channel}
    if last_id is not None:
        message["last_id"] = last_id
    reply = request(ws, message)
    assert reply["type"] == "subscribed", reply
    return reply


def take_events(ws: ClientConnection, count: int) -> list[dict]:
    """Receive *count* messages and check that they are events."""
    messages = [receive(ws) for _ in range(count)]
    assert all(m["type"] == "event" for m in messages), messages
    return messages


def close_code(exc: ConnectionClosed) -> int:
    """Return the close code the server sent, or 1006 when the connection ended without one."""
    return exc.rcvd.code if exc.rcvd is not None else 1006
