"""The package's handling of database connections, apart from the queries: release, interrupt, run released.

An idle stream holds no connection (``release_connections``); a query that
another thread runs can be made to fail now (``interrupt``), by shutting the
socket down under it (``shut_down_socket``), where a cancel request to a
server that does not answer would wait; and async code runs the ORM on a
worker thread that closes its connections after it (``run_released``), as
``channels.db.database_sync_to_async`` does for Channels.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.db import connections

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

logger = logging.getLogger("django_realtime")


def release_connections() -> None:
    """Close this thread's database connections, so an idle stream holds none."""
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close()


def forget_connections() -> None:
    """Close this thread's database connections and drop their wrappers, for a thread that will wait long.

    Under gevent each greenlet is a thread to Django: a stream that touched
    the database (a presence join, a catch-up) would keep a closed
    ``DatabaseWrapper`` (3 KB, more with DEBUG's query log) for its whole
    life.  The next query, if any, makes a new one.
    """
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close()
            del connections[conn.alias]


def shut_down_socket(fd: int) -> None:
    """Shut down the socket behind file descriptor *fd*, which another thread may be blocked on.

    Its blocked read or write returns at once with "connection closed",
    which a cancel request (a new connection to a server that does not
    answer) would not.  A duplicate of *fd* is shut down, not *fd* itself
    closed, so the owner's descriptor stays valid until it closes it.
    """
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:  # already closed
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.close()


def interrupt(connection: BaseDatabaseWrapper) -> None:
    """Make a query that another thread runs on *connection* fail now, where the driver allows it."""
    raw = getattr(connection, "connection", None)
    if raw is None:
        return  # not connected yet: a connect can only be abandoned
    try:
        if connection.vendor == "sqlite":
            raw.interrupt()
        elif connection.vendor in ("postgresql", "mysql"):
            fd = raw.fileno() if connection.vendor == "postgresql" else _mysql_fd(raw)
            if fd is not None:
                shut_down_socket(fd)
    except Exception:  # best effort: the caller gives up on the query anyway
        logger.debug("django_realtime could not interrupt a query", exc_info=True)


def _mysql_fd(raw: object) -> int | None:
    get = getattr(raw, "fileno", None)
    return get() if callable(get) else None


async def run_released(func: Any, *args: Any, **kwargs: Any) -> Any:
    """Run *func* on a worker thread and close that thread's database connections after it."""
    return await sync_to_async(_released, thread_sensitive=False)(func, *args, **kwargs)


def _released(func: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return func(*args, **kwargs)
    finally:
        release_connections()
