"""Find the PostgreSQL and Redis services the tests use, or say why they are absent."""

import os
import socket
from typing import NoReturn

import pytest

POSTGRES = ("127.0.0.1", 5432)
#: MariaDB's address: REALTIME_TEST_MARIADB ("host:port") names another server, such as the
#: private one .ci/run starts for a test run beside another (INNODB_TRX, which the hubs read, lists
#: every transaction of the server's, so two runs on one server hold back each other's ids).
_MARIADB_HOST, _, _MARIADB_PORT = os.environ.get("REALTIME_TEST_MARIADB", "127.0.0.1:3306").rpartition(":")
MARIADB = (_MARIADB_HOST, int(_MARIADB_PORT))
REDIS = ("127.0.0.1", 6379)
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def answers(address) -> bool:
    try:
        socket.create_connection(address, timeout=1).close()
    except OSError:
        return False
    return True


def require(address, name):
    """Skip the test if the service is absent; in CI, fail instead: CI must run them."""
    if answers(address):
        return
    unavailable(f"{name} is not answering on {address[0]}:{address[1]}", remedy="start it to run this test")


def mysql_driver() -> bool:
    """Return whether mysqlclient, the driver Django's MySQL backend uses, is installed."""
    try:
        import MySQLdb  # noqa: F401
    except ImportError:
        return False
    return True


def require_mariadb() -> None:
    """Skip the test unless MariaDB answers and mysqlclient is installed (in CI, fail instead)."""
    require(MARIADB, "MariaDB")
    if not mysql_driver():
        unavailable(
            "mysqlclient is not installed",
            remedy="pip install mysqlclient (it needs pkg-config and libmariadb-dev) to run this test",
        )


def unavailable(message: str, *, remedy: str | None = "install it to run this test") -> NoReturn:
    """Skip the test, saying what is missing (*message*) and what to do (*remedy*, if not said); in CI, fail."""
    if os.environ.get("CI"):
        pytest.fail(f"{message}, and CI must run every test")
    pytest.skip(message if remedy is None else f"{message}: {remedy}")
