"""What the package can tell of the gunicorn worker it runs in: whether each stream takes an OS thread.

gunicorn's ``sync`` worker (its default) serves one request at a time: one
stream holds the whole worker process, which answers nothing else until the
stream ends, and gunicorn kills a worker busy longer than ``--timeout``.
``gthread`` gives each stream one of its ``--threads``, the same threads
that serve the pages.  Streams need ``-k gevent`` (docs/deployment.md).

``manage.py check --deploy`` runs outside gunicorn: it sees only the
``GUNICORN_CMD_ARGS`` environment variable, and a command line overrides
it.  A worker knows for sure: gunicorn's arbiter puts ``gunicorn/<version>``
in each request's ``SERVER_SOFTWARE``, the gthread worker sets
``wsgi.multithread``, and gunicorn's gevent worker patches the standard
library's sockets before it loads the application.

``post_worker_init`` is a gunicorn server hook for ``gunicorn.conf.py``: it
ends a stopping worker's streams cleanly, each with a spread ``retry:``
(docs/deployment.md, restarts and deploys).
"""

from __future__ import annotations

import shlex
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

#: What each of gunicorn's worker classes that serve a WSGI stream on an OS thread costs a stream.
THREADED = {
    "sync": "gunicorn's sync worker serves one request at a time: each event stream holds a whole worker "
    "process, which answers nothing else while it lasts, and is killed after --timeout",
    "gthread": "gunicorn's gthread worker serves each event stream on one of its --threads, the threads "
    "that serve pages too: as many open tabs as threads and the worker answers nothing else",
}
#: What to do about it.
HINT = "Serve streams with gunicorn -k gevent (pip install gevent), or with an ASGI server (docs/deployment.md)."


def patched() -> bool:
    """Return whether gevent has patched this process's sockets, as gunicorn's gevent worker does."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and bool(monkey.is_module_patched("socket"))


def threaded_worker(environ: Mapping[str, Any]) -> str | None:
    """Return ``"sync"`` or ``"gthread"`` if gunicorn serves the WSGI request *environ* on an OS thread, else None."""
    if not str(environ.get("SERVER_SOFTWARE", "")).startswith("gunicorn/") or patched():
        return None
    return "gthread" if environ.get("wsgi.multithread") else "sync"


def parse_cmd_args(cmd_args: str) -> tuple[Any, set[str]] | None:
    """Return gunicorn's configuration from *cmd_args* (``GUNICORN_CMD_ARGS``) and the names of the settings it gives.

    Parsed by gunicorn's own parser, as gunicorn parses it; None where
    gunicorn is not installed or the text does not parse.  A setting the
    text does not give is the command line's, which a check cannot see.
    """
    try:
        from gunicorn.config import Config
    except ImportError:
        return None
    config = Config()
    try:
        args, _ = config.parser().parse_known_args(shlex.split(cmd_args))
        given = {name: value for name, value in vars(args).items() if value is not None and name != "args"}
        for name, value in given.items():
            config.set(name.lower(), value)
    except (SystemExit, ValueError, TypeError):  # a bad value (argparse exits); an open quote (shlex)
        return None
    return config, set(given)


def configured_worker(cmd_args: str) -> str | None:
    """Return ``"sync"`` or ``"gthread"`` if *cmd_args* (``GUNICORN_CMD_ARGS``) chooses that worker class, else None.

    Only a worker class (``-k``, ``--worker-class``) or ``--threads`` given
    there counts: without them the command line decides.
    """
    parsed = parse_cmd_args(cmd_args)
    if parsed is None or not parsed[1] & {"worker_class", "threads"}:
        return None
    worker_class = parsed[0].worker_class_str
    return worker_class if worker_class in THREADED else None


def configured_worker_connections(cmd_args: str) -> int | None:
    """Return the ``--worker-connections`` *cmd_args* gives, unless it chooses a threaded worker (which ignores it)."""
    parsed = parse_cmd_args(cmd_args)
    if parsed is None or "worker_connections" not in parsed[1] or configured_worker(cmd_args) is not None:
        return None
    return int(parsed[0].worker_connections)


#: Seconds between two looks of the drain hook at whether its worker was told to stop.
DRAIN_POLL = 0.05
#: Seconds within which every gevent worker told to stop has stopped accepting (it looks once a second).
OTHERS_STOP_ACCEPTING = 1.2


def post_worker_init(worker: Any) -> None:
    """gunicorn's server hook: end the worker's SSE streams cleanly once it is told to stop.

    Put ``from django_realtime.gunicorn_server import post_worker_init`` in
    ``gunicorn.conf.py`` (or call it from a ``post_worker_init`` of yours).
    On a ``HUP``, a ``USR2`` upgrade or a ``TERM``, gunicorn tells each old
    worker to stop (``worker.alive`` turns false) and waits up to
    ``--graceful-timeout`` for its requests, which a stream never ends:
    without this the worker drops them all at once when that time is up, mid
    response, and their clients all come back together.  With it, once the
    worker has stopped accepting connections, each stream sends what it
    has, then a spread ``retry:`` (SHUTDOWN_RETRY), and ends; the worker
    exits as soon as its streams have.  gunicorn gives workers no hook at
    that moment, so a thread (a greenlet under gevent) watches the flag.
    """
    thread = threading.Thread(target=_drain_when_stopped, args=(worker,), name="django-realtime-drain", daemon=True)
    thread.start()
    worker.log.info("django_realtime: worker %s will end its streams cleanly when told to stop", worker.pid)


def _drain_when_stopped(worker: Any) -> None:
    while worker.alive:
        time.sleep(DRAIN_POLL)
    told = time.monotonic()
    _wait_until_not_accepting(worker)
    # The other old workers, told at the same moment, each stop accepting at a tick of their own
    # within a second: a reconnect must not land on one of them either.
    time.sleep(max(0.0, told + OTHERS_STOP_ACCEPTING - time.monotonic()))
    from .hub import drain

    worker.log.info("django_realtime: worker %s stops: its streams end, each with a spread retry:", worker.pid)
    drain()


def _wait_until_not_accepting(worker: Any, most: float = 3.0) -> None:
    """Wait until *worker* has closed its listening sockets: its next heartbeat, at most *most* seconds.

    gunicorn's gevent worker looks at ``alive`` once a second, beating
    (``worker.tmp.notify()``) before each look; once it sees it false it
    stops accepting, then beats.  A stream that ended before that would have
    its reconnect accepted by this stopping worker, and be told to go once
    more; meanwhile the streams stay live here.
    """
    tmp: Any = getattr(worker, "tmp", None)
    if tmp is None:
        return
    try:
        beat = tmp.last_update()
    except OSError:  # its file closed: the worker is past serving
        return
    deadline = time.monotonic() + most
    while time.monotonic() < deadline:
        time.sleep(DRAIN_POLL)
        try:
            if tmp.last_update() != beat:
                return
        except OSError:
            return
