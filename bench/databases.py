"""Fresh databases for benchmark runs: a new SQLite file, or a new PostgreSQL database dropped afterwards."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

#: The PostgreSQL server and an existing database to connect to while creating and dropping others.
POSTGRES_ADMIN = "postgres://postgres@127.0.0.1:5432/test"


@contextlib.contextmanager
def fresh_database(
    kind: str, workdir: Path, slug: str, admin_url: str = POSTGRES_ADMIN, connection_limit: int | None = None
) -> Iterator[str]:
    """Yield the DATABASE_URL of a new, empty database of *kind* ("sqlite" or "postgres").

    A PostgreSQL database is created with ``CREATE DATABASE`` over an
    autocommit connection to *admin_url*, and dropped on exit, with any
    session still connected to it (a server killed mid-query, say).  With
    *connection_limit*, it belongs to a new role of the same name, not a
    superuser, that may hold at most that many connections (``CONNECTION
    LIMIT``; superusers ignore it), and the URL logs in as that role: a
    benchmark that opens a connection per request cannot then take every
    connection of a shared server.  The role is dropped with the database.
    """
    if kind == "sqlite":
        yield f"sqlite:///{workdir / (slug + '-' + uuid.uuid4().hex[:6] + '.sqlite3')}"
        return
    if kind != "postgres":
        raise ValueError(f"unknown database kind {kind!r}: sqlite or postgres")
    import psycopg
    from psycopg import sql

    name = f"realtime_bench_{slug.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
    parts = urlsplit(admin_url)
    netloc = parts.netloc if connection_limit is None else f"{name}@{parts.netloc.rpartition('@')[2]}"
    url = urlunsplit(parts._replace(path="/" + name, netloc=netloc))
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as admin:
        if connection_limit is not None:
            admin.execute(
                sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER CONNECTION LIMIT {}").format(
                    sql.Identifier(name), sql.Literal(connection_limit)
                )
            )
        try:
            owner = sql.SQL(" OWNER {}").format(sql.Identifier(name)) if connection_limit is not None else sql.SQL("")
            admin.execute(sql.SQL("CREATE DATABASE {}{}").format(sql.Identifier(name), owner))
            try:
                yield url
            finally:
                # FORCE (PostgreSQL 13+) ends the sessions still connected to it.
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        finally:
            if connection_limit is not None:
                admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
