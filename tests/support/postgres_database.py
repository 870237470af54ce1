"""A PostgreSQL database of a test's own on the shared server, dropped afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.support.services import POSTGRES, require, unavailable

SERVER = f"postgresql://postgres@{POSTGRES[0]}:{POSTGRES[1]}"


@contextmanager
def scratch_database(prefix: str) -> Iterator[tuple[str, Any]]:
    """Create a database named *prefix* and a random suffix; yield its name and an admin connection.

    The admin connection (autocommit, to the server's ``test`` database)
    stays open for the block.  Afterwards the connections to the new
    database, which only the test opened, are ended, and it is dropped.
    """
    require(POSTGRES, "PostgreSQL")
    import psycopg
    from psycopg import sql

    try:
        admin = psycopg.connect(f"{SERVER}/test", autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        unavailable(f"cannot connect to PostgreSQL as postgres to database test: {exc}", remedy=None)
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield name, admin
        finally:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                [name],
            )
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
