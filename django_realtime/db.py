"""The package's handling of database connections, apart from the queries: release them, interrupt a read.

An idle stream holds no connection (``release_connections``); a read that
another thread is blocked on returns at once when the socket under it is
shut down (``shut_down_socket``).
"""

from __future__ import annotations

import os
import socket

from django.db import connections


def release_connections() -> None:
    """Close this thread's database connections, so an idle stream holds none."""
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close()


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
