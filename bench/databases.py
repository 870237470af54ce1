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


@contextlib.contextmanager
def private_postgres(workdir: Path, max_connections: int = 100) -> Iterator[str]:
    """Run a PostgreSQL server of its own on loopback for the duration; yield its admin URL.

    For a benchmark that may open more connections than a shared server
    can spare: every attempt, even one its role's ``CONNECTION LIMIT``
    refuses, holds a server slot while it logs in, so a thousand at once
    make the server refuse everyone's ("too many clients already").  The
    cluster is created with ``initdb`` in *workdir* (as ``nobody`` when
    run as root: PostgreSQL refuses root), with *max_connections*, and is
    stopped with its process group.
    """
    import os
    import shutil
    import subprocess
    import tempfile
    import time

    import psycopg

    from bench.servers import spawn, stop
    from tests.support.processes import free_port

    initdb = shutil.which("initdb") or next(Path("/usr/lib/postgresql").glob("*/bin/initdb"), None)
    if initdb is None:
        raise RuntimeError("initdb not found: install PostgreSQL's server binaries, or give a server's URL")
    bindir = Path(initdb).resolve().parent
    # Not under *workdir*, which may be a 0700 TemporaryDirectory that nobody cannot enter.
    parent = Path(tempfile.mkdtemp(prefix="django-realtime-bench-pg-"))
    parent.chmod(0o711)
    data = parent / "data"
    data.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(data, "nobody", "nogroup" if _group_exists("nogroup") else "nobody")
        as_user = ["runuser", "-u", "nobody", "--"]
    subprocess.run(
        [*as_user, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    port = free_port()
    argv = [*as_user, str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(data)]
    argv += ["-c", "listen_addresses=127.0.0.1", "-c", f"max_connections={max_connections}"]
    log = workdir / f"postgres-{parent.name}.log"
    proc = spawn(argv, dict(os.environ), log)
    url = f"postgres://postgres@127.0.0.1:{port}/postgres"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(url, connect_timeout=2).close()
                break
            except psycopg.OperationalError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the private PostgreSQL did not start; see {log}") from None
                time.sleep(0.2)
        yield url
    finally:
        stop(proc)
        shutil.rmtree(parent, ignore_errors=True)


def _group_exists(name: str) -> bool:
    import grp

    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True
