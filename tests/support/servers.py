"""Run the demo project under real servers, for the end-to-end tests.

A server runs as a subprocess in a process group of its own, on a free
loopback port, its output kept in a log file that a failing test shows.
Events are published as a deployment publishes them: by ``manage.py``
commands in processes of their own.  Streams are read by httpx-sse, a parser
that shares no code with django_realtime, on a thread per stream, so that
every wait has a deadline and a test can disconnect for real.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import ServerSentEvent, connect_sse
from httpx_sse._api import _iter_sse_lines
from httpx_sse._decoders import SSEDecoder

from django_realtime.cursor import Cursor
from tests.support.processes import free_port, memory_kb, only_worker, signal_group, stop_group

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
MANAGE = [sys.executable, "manage.py"]

#: Seconds a server may take to answer its first request.
START_TIMEOUT = 30.0
#: Seconds a manage.py command may run.
COMMAND_TIMEOUT = 60.0

#: Command lines of the servers under test; ``{port}`` is filled in.
SERVER_COMMANDS: dict[str, list[str]] = {
    # A short graceful timeout, as open streams never end by themselves; no
    # control socket, which would be one path in $HOME for every gunicorn.
    "gunicorn-gevent": [
        str(BIN / "gunicorn"),
        *("-k", "gevent", "-w", "1", "-b", "127.0.0.1:{port}"),
        *("--graceful-timeout", "1", "--no-control-socket"),
        "testproject.wsgi",
    ],
    # The package's own gevent worker: each stream waits in a small greenlet of its own.
    "gunicorn-realtime": [
        str(BIN / "gunicorn"),
        *("-k", "django_realtime.gunicorn_worker.GeventWorker", "-w", "1", "-b", "127.0.0.1:{port}"),
        *("--graceful-timeout", "1", "--no-control-socket"),
        "testproject.wsgi",
    ],
    "daphne": [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", "{port}", "testproject.asgi:application"],
    # daphne comes first in INSTALLED_APPS, so runserver serves ASGI.
    "runserver": [*MANAGE, "runserver", "127.0.0.1:{port}", "--noreload"],
    # The other ASGI servers Django teams deploy on (docs/deployment.md).
    # Its h11 protocol, as without uvicorn[standard] (tests/test_asgi_streams.py runs its httptools one too).
    "uvicorn": [
        str(BIN / "uvicorn"),
        *("--host", "127.0.0.1", "--port", "{port}", "--http", "h11"),
        "testproject.asgi:application",
    ],
    "gunicorn-uvicorn": [
        str(BIN / "gunicorn"),
        *("-k", "uvicorn_worker.UvicornWorker", "-w", "1", "-b", "127.0.0.1:{port}"),
        *("--graceful-timeout", "1", "--no-control-socket"),
        "testproject.asgi:application",
    ],
    "hypercorn": [str(BIN / "hypercorn"), "-b", "127.0.0.1:{port}", "testproject.asgi:application"],
    "granian": [
        str(BIN / "granian"),
        *("--interface", "asgi", "--host", "127.0.0.1", "--port", "{port}", "--workers", "1"),
        "testproject.asgi:application",
    ],
}


def project_env(database_url: str, **overrides: str | None) -> dict[str, str]:
    """Return the environment of the demo project's servers and commands on *database_url*.

    Each of *overrides* sets a variable, or with None leaves it out (unset,
    even if this process has it).
    """
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "testproject.settings",
        "DATABASE_URL": database_url,
        # Cross-process delivery needs a backend that reads the log; say so
        # rather than inherit whatever the shell has.
        "REALTIME_BACKEND": "polling",
        # Keepalives every second make disconnects (noticed on a failed
        # write under WSGI) quick.
        "REALTIME_KEEPALIVE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def json_text(data: Any) -> str:
    """Return *data* as one line of JSON, raw UTF-8 where UTF-8 can carry it."""
    text = json.dumps(data, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: only its \\uXXXX escape travels
        text = json.dumps(data)
    return text


# Commands ---------------------------------------------------------------


def manage(env: dict[str, str], *args: str, input: str | None = None) -> str:
    """Run ``manage.py *args``; return its standard output, or fail showing its standard error."""
    result = subprocess.run(
        [*MANAGE, *args],
        cwd=ROOT,
        env=env,
        input=input,
        capture_output=True,
        encoding="utf-8",
        timeout=COMMAND_TIMEOUT,
    )
    if result.returncode != 0:
        raise AssertionError(f"manage.py {args[0]} exited with status {result.returncode}:\n{result.stderr}")
    return result.stdout


def publish_event(env: dict[str, str], channel: str, data: Any, *, event: str | None = None) -> str:
    """Publish one event with ``manage.py publish_event CHANNEL JSON``; return its id."""
    args = ["publish_event", channel, json_text(data)]
    if event is not None:
        args += ["--event", event]
    return manage(env, *args).strip()


def publish_lines(env: dict[str, str], channel: str, docs: Sequence[Any], *, event: str | None = None) -> list[str]:
    """Publish *docs* with ``publish_event --stdin``, one JSON document a line; return their ids."""
    args = ["publish_event", channel, "--stdin"]
    if event is not None:
        args += ["--event", event]
    ids = manage(env, *args, input="".join(json_text(doc) + "\n" for doc in docs)).split()
    assert len(ids) == len(docs), f"publish_event printed {ids} for {len(docs)} documents"
    return ids


_END = object()


class CommandProcess:
    """A manage.py command kept running: write lines to its stdin, wait for lines of its stdout."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.args = args
        self._stderr = tempfile.TemporaryFile("w+", encoding="utf-8")
        self.process = subprocess.Popen(
            [*MANAGE, *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            encoding="utf-8",
        )
        self._lines: queue.Queue[Any] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name=f"manage.py {args[0]} stdout", daemon=True)
        self._reader.start()

    def __enter__(self) -> CommandProcess:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close(check=exc_type is None)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            # Stamped here, on arrival, so that a busy test thread does not
            # count against the server.
            self._lines.put((line.rstrip("\n"), time.monotonic()))
        self._lines.put(_END)

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read()

    def write_line(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def read_line(self, *, prefix: str = "", timeout: float = 30.0) -> tuple[str, float]:
        """Return the next output line starting with *prefix*, and when it was printed."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                item = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"manage.py {self.args[0]} printed no line within {timeout}s") from None
            if item is _END:
                self._lines.put(_END)
                self.process.wait(COMMAND_TIMEOUT)
                raise AssertionError(
                    f"manage.py {self.args[0]} exited with status {self.process.returncode}:\n{self.stderr()}"
                )
            if item[0].startswith(prefix):
                return item

    def close(self, *, check: bool = True) -> None:
        """End the command by closing its stdin; with *check*, fail unless it exits cleanly."""
        assert self.process.stdin is not None
        try:
            self.process.stdin.close()
        except BrokenPipeError:
            pass
        try:
            self.process.wait(COMMAND_TIMEOUT if check else 5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(5)
        assert self.process.stdout is not None
        self.process.stdout.close()
        try:
            if check and self.process.returncode != 0:
                raise AssertionError(
                    f"manage.py {self.args[0]} exited with status {self.process.returncode}:\n{self.stderr()}"
                )
        finally:
            self._stderr.close()


class Publisher(CommandProcess):
    """``manage.py publish_event CHANNEL --stdin`` kept open: publish now, without a process start."""

    def __init__(self, env: dict[str, str], channel: str, *, event: str | None = None) -> None:
        args = ["publish_event", channel, "--stdin"]
        if event is not None:
            args += ["--event", event]
        super().__init__(env, *args)

    def send(self, data: Any) -> tuple[str, float]:
        """Publish *data*; return its id and the moment the command printed that id."""
        self.write_line(json_text(data))
        return self.read_line()


# Databases --------------------------------------------------------------


def copy_sqlite(source: Path, target: Path) -> None:
    """Copy a SQLite database, write-ahead log included."""
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)


# Servers ----------------------------------------------------------------


class Server:
    """A server process of the demo project on a loopback port of its own, and what tests need to talk to it.

    ``start()`` returns once it answers HTTP; ``stop()`` (SIGTERM) and
    ``kill()`` (SIGKILL, as a crash) end its whole process group; ``start()``
    again brings it back on the same port, where clients reconnect, its
    output appended to the same log.  It imports the package and the demo
    from *cwd*: another source tree (a ``git worktree`` of an older commit)
    for a benchmark that compares two.
    """

    def __init__(
        self,
        kind: str,
        env: dict[str, str],
        log_path: Path,
        extra_args: Sequence[str] = (),
        *,
        cwd: Path = ROOT,
        port: int | None = None,
    ) -> None:
        self.kind = kind
        self.env = env
        self.log_path = log_path
        self.extra_args = list(extra_args)
        self.cwd = cwd
        self.port = port if port is not None else free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self._started = False
        self._stopped = False  # by stop() or kill(): its pid, reaped, may be another's by now

    def __repr__(self) -> str:
        return f"<Server {self.kind} {self.url}>"

    @property
    def origin(self) -> str:
        """Return the Origin of the site's own pages."""
        return self.url

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/"

    def events_url(self) -> str:
        return f"{self.url}/events/"

    def command(self) -> list[str]:
        command = [part.format(port=self.port) for part in SERVER_COMMANDS[self.kind]]
        command[-1:-1] = self.extra_args  # before the application, after the options
        return command

    def start(self, *, wait: bool = True) -> None:
        """Start the server; with *wait*, return once it answers HTTP (see ``wait_until_answering``)."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError(f"{self!r} already runs")
        with self.log_path.open("ab" if self._started else "wb") as log:
            self.process = subprocess.Popen(
                self.command(),
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._started, self._stopped = True, False
        if wait:
            try:
                self.wait_until_answering()
            except BaseException:
                self.stop()
                raise

    def wait_until_answering(self) -> None:
        """Poll the server until it answers any HTTP request, failing if it dies or takes too long."""
        deadline = time.monotonic() + START_TIMEOUT
        with httpx.Client(timeout=1.0) as client:
            while True:
                self.check_alive()
                try:
                    # No channel: a 400 that needs neither the database nor the hub.
                    client.get(self.events_url())
                    return
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise AssertionError(
                            f"{self.kind} did not answer within {START_TIMEOUT}s:\n{self.log()}"
                        ) from None
                    time.sleep(0.05)

    def stop(self) -> None:
        """Stop the server's process group: SIGTERM, then SIGKILL for whatever outlives STOP_TIMEOUT."""
        if self.process is not None and not self._stopped:
            self._stopped = True
            stop_group(self.process)

    def kill(self) -> None:
        """Kill the server's whole process group at once, as a crash or the OOM killer does."""
        if self.process is not None and not self._stopped:
            self._stopped = True
            stop_group(self.process, signal.SIGKILL)

    def check_alive(self) -> None:
        if self.process is None or self.process.poll() is not None:
            status = None if self.process is None else self.process.returncode
            raise AssertionError(f"{self.kind} exited with status {status}:\n{self.log()}")

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    def log(self, start: int = 0) -> str:
        """Return the server's output from byte *start* on."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(start)
                return log.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, text: str, timeout: float) -> None:
        """Wait until the server's log holds *text*."""
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not in the server log after {timeout}s:\n{self.log()[-3000:]}")
            time.sleep(0.05)

    def memory_kb(self, field: str = "VmRSS") -> int:
        """Return a memory figure of the server process from /proc (VmRSS, VmHWM: its peak)."""
        assert self.process is not None
        return memory_kb(self.process.pid, field)

    def worker_pid(self, timeout: float = 10.0) -> int:
        """Return the pid that serves requests: gunicorn's one worker (waited for), else the server itself."""
        assert self.process is not None
        if self.kind.startswith("gunicorn"):
            return only_worker(self.process.pid, timeout)
        return self.process.pid

    def connect(self, **kwargs: Any) -> Any:
        """Open a WebSocket to /ws/ with this server's own Origin, as a page of the site would."""
        from websockets.sync.client import connect

        return connect(self.ws_url, origin=kwargs.pop("origin", self.origin), open_timeout=10, **kwargs)


def start_server(
    kind: str,
    env: dict[str, str],
    log_path: Path,
    extra_args: Sequence[str] = (),
    cwd: Path = ROOT,
    port: int | None = None,
) -> Server:
    """Start a server of *kind* on *port* (by default a free one); return once it answers HTTP."""
    server = Server(kind, env, log_path, extra_args, cwd=cwd, port=port)
    server.start()
    return server


def stop_server(server: Server) -> None:
    """Stop the server's process group (``Server.stop``)."""
    server.stop()


def stop_servers(servers: Iterable[Server]) -> None:
    """Stop *servers* side by side: SIGTERM to every group first, then each in turn."""
    servers = list(servers)
    for server in servers:
        if server.process is not None and not server._stopped:
            signal_group(server.process, signal.SIGTERM)
    for server in servers:
        server.stop()


@contextmanager
def running_server(kind: str, env: dict[str, str], log_path: Path, extra_args: Sequence[str] = ()) -> Iterator[Server]:
    """Run a server of *kind* for the duration of the block."""
    server = start_server(kind, env, log_path, extra_args)
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def running_servers(kinds: Sequence[str], env: dict[str, str], directory: Path) -> Iterator[dict[str, Server]]:
    """Start a server of each kind at once (logs ``directory/<kind>.log``); stop them all afterwards."""
    servers = {kind: Server(kind, env, directory / f"{kind}.log") for kind in kinds}
    try:
        for server in servers.values():
            server.start(wait=False)
        for server in servers.values():
            server.wait_until_answering()
        yield servers
    finally:
        stop_servers(servers.values())


# Streams ----------------------------------------------------------------


class EventStream:
    """An SSE connection read by httpx-sse on a thread of its own.

    Like ``EventSource`` it skips events without data (the ``retry:``
    prelude), and it sends ``Last-Event-ID`` only if told to: reconnecting is
    the test's business.  ``close()`` disconnects for real, shutting the
    socket down as a closing browser tab does.
    """

    def __init__(
        self,
        url: str,
        *,
        params: Sequence[tuple[str, str]] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        self.url = url
        self.params = list(params)
        self.headers = dict(headers or {})
        self.response: httpx.Response | None = None
        self.retry: int | None = None
        self.error: BaseException | None = None
        #: time.monotonic() of each comment line (keepalive) received.
        self.comments: list[float] = []
        self._events: queue.Queue[Any] = queue.Queue()
        self._answered = threading.Event()
        self._prelude = threading.Event()
        self._closing = False
        self._socket: socket.socket | None = None
        self._thread = threading.Thread(target=self._read, name=f"SSE {url}", daemon=True)

    def __repr__(self) -> str:
        return f"<EventStream {self.url} {self.params} {self.headers}>"

    def __enter__(self) -> EventStream:
        try:
            self.open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close()

    def start(self) -> None:
        """Connect, on the stream's thread; see ``wait_ready``."""
        self._thread.start()

    def open(self, timeout: float = 10.0) -> None:
        self.start()
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Wait for a 200 ``text/event-stream`` response and its first bytes, the ``retry:`` prelude."""
        if not self._answered.wait(timeout):
            raise AssertionError(f"{self!r}: no response within {timeout}s")
        if self.response is None:
            raise AssertionError(f"{self!r}: request failed: {self.error!r}") from self.error
        content_type = self.response.headers.get("content-type", "")
        if self.response.status_code != 200 or not content_type.startswith("text/event-stream"):
            raise AssertionError(f"{self!r}: got {self.response.status_code} {content_type}, not an event stream")
        if not self._prelude.wait(timeout):
            raise AssertionError(f"{self!r}: no retry: field within {timeout}s (error: {self.error!r})")

    def _read(self) -> None:
        try:
            # Plain HTTP on loopback: verify=False spares loading the CA
            # bundle, some 60 ms per client.
            with httpx.Client(timeout=httpx.Timeout(10.0, read=30.0), verify=False) as client:
                with connect_sse(client, "GET", self.url, params=self.params, headers=dict(self.headers)) as source:
                    self.response = source.response
                    self._socket = source.response.extensions["network_stream"].get_extra_info("socket")
                    self._answered.set()
                    if not source.response.headers.get("content-type", "").startswith("text/event-stream"):
                        return
                    for sse in self._events_of(source.response):
                        if sse.retry is not None:
                            self.retry = sse.retry
                            self._prelude.set()
                        if sse.data:
                            self._events.put((sse, time.monotonic()))
        except Exception as exc:  # handed to the test thread, which reports it
            if not self._closing:
                self.error = exc
        finally:
            self._answered.set()
            self._events.put(_END)

    def _events_of(self, response: httpx.Response) -> Iterator[ServerSentEvent]:
        """Decode *response* as ``EventSource.iter_sse()`` does, noting the time of each comment line too."""
        decoder = SSEDecoder()
        for line in _iter_sse_lines(response):
            line = line.rstrip("\n")
            if line.startswith(":"):
                self.comments.append(time.monotonic())
            sse = decoder.decode(line)
            if sse is not None:
                yield sse

    def next_timed(self, timeout: float = 5.0) -> tuple[ServerSentEvent, float]:
        """Return the next event and the monotonic time it arrived."""
        try:
            item = self._events.get(timeout=max(0.0, timeout))
        except queue.Empty:
            raise AssertionError(f"{self!r}: no event within {timeout:.1f}s") from None
        if item is _END:
            self._events.put(_END)
            raise AssertionError(f"{self!r}: the stream ended (error: {self.error!r})") from self.error
        return item

    def next(self, timeout: float = 5.0) -> ServerSentEvent:
        """Return the next event, waiting at most *timeout* seconds."""
        return self.next_timed(timeout)[0]

    def take(self, count: int, timeout: float = 5.0) -> list[ServerSentEvent]:
        """Return the next *count* events, all within *timeout* seconds."""
        deadline = time.monotonic() + timeout
        return [self.next(deadline - time.monotonic()) for _ in range(count)]

    def until(self, match: Callable[[ServerSentEvent], bool], timeout: float = 5.0) -> list[ServerSentEvent]:
        """Return the events up to and including the first that *match* accepts."""
        deadline = time.monotonic() + timeout
        received = []
        while True:
            received.append(self.next(deadline - time.monotonic()))
            if match(received[-1]):
                return received

    def until_id(self, event_id: str, timeout: float = 5.0) -> list[ServerSentEvent]:
        """Return the events up to and including the one with id *event_id* (its cursor may name ids in flight)."""
        return self.until(lambda sse: bool(sse.id) and str(Cursor.event_id(sse.id)) == event_id, timeout)

    def during(self, seconds: float) -> list[ServerSentEvent]:
        """Return whatever events arrive in the next *seconds*."""
        deadline = time.monotonic() + seconds
        received = []
        while (left := deadline - time.monotonic()) > 0:
            try:
                item = self._events.get(timeout=left)
            except queue.Empty:
                break
            if item is _END:
                self._events.put(_END)
                raise AssertionError(f"{self!r}: the stream ended (error: {self.error!r})") from self.error
            received.append(item[0])
        return received

    def ended(self, timeout: float) -> bool:
        """Return whether the server ended the stream within *timeout* seconds."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def close(self) -> None:
        """Disconnect, and wait for the reading thread to finish."""
        self._closing = True
        if not self._thread.is_alive():
            return
        if self._socket is not None:
            try:
                self._socket.shutdown(socket.SHUT_RDWR)
            except OSError:  # already closed by the other end
                pass
        self._thread.join(10)
