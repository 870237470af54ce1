"""A MariaDB database of a test's (or a benchmark's) own on the shared server, dropped afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager

from tests.support.services import MARIADB


@contextmanager
def scratch_mariadb(prefix: str) -> Iterator[str]:
    """Create a utf8mb4 database named *prefix* and a random suffix; yield its URL; drop it afterwards."""
    import MySQLdb

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = MySQLdb.connect(host=MARIADB[0], port=MARIADB[1], user="root", connect_timeout=5)
    admin.autocommit(True)
    with closing(admin):
        admin.cursor().execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
        try:
            yield f"mysql://root@{MARIADB[0]}:{MARIADB[1]}/{name}"
        finally:
            admin.cursor().execute(f"DROP DATABASE IF EXISTS {name}")
