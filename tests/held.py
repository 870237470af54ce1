"""For the tailer tests: a publishing transaction held open on another thread (the commit-order trap),
reading a tailer until it gives the rows expected, and the log on MariaDB."""

import threading
import time

from django.db import connections, transaction

from django_realtime import publish


def published():
    return publish("c", "held").id


class Held:
    """Run *write* in a transaction on *using* on another thread, and hold the transaction open until end()."""

    def __init__(self, write=published, *, using):
        self.write = write
        self.using = using
        self.drawn, self.release, self.keep = threading.Event(), threading.Event(), True
        self.thread = threading.Thread(target=self._run)
        self.thread.start()
        assert self.drawn.wait(10)

    def _run(self):
        try:
            with transaction.atomic(using=self.using):
                self.id = self.write()
                self.drawn.set()
                self.release.wait(20)
                if not self.keep:
                    transaction.set_rollback(True, using=self.using)
        finally:
            connections[self.using].close()

    def end(self, *, commit):
        self.keep = commit
        self.release.set()
        self.thread.join(10)


def ids(rows):
    return [row[0] for row in rows]


def read_until(tailer, cursor, expected, timeout=5.0):
    """Read on from *cursor* until the rows read, in all, have the ids *expected*; return the seconds it took,
    and the cursor then."""
    start = time.monotonic()
    got = []
    while got != expected:
        rows, cursor = tailer.read(cursor)
        got += ids(rows)
        assert got == expected[: len(got)], f"read {got}, expected {expected}"
        assert time.monotonic() - start < timeout, f"read {got} for {timeout}s, expected {expected}"
        if got != expected:
            time.sleep(0.02)
    return time.monotonic() - start, cursor


def settle_until(tailer, cursor, expected, timeout=5.0):
    """Read on from *cursor*, nothing more to come, until the cursor is *expected* (dead ids settled);
    return the seconds it took."""
    start = time.monotonic()
    while cursor != expected:
        tailer._next_check = 0.0  # look at the evidence at each read, not every SETTLE_RECHECK
        rows, cursor = tailer.read(cursor)
        assert rows == [], f"read {ids(rows)} while waiting for the cursor {expected}"
        assert time.monotonic() - start < timeout, f"cursor {cursor} for {timeout}s, expected {expected}"
        if cursor != expected:
            time.sleep(0.02)
    return time.monotonic() - start


def log_on_mariadb(settings, gap_timeout):
    """Put the log on the MariaDB alias (skipping, or failing under CI, where MariaDB is missing); close it after."""
    from tests.support import services

    services.require_mariadb()
    settings.REALTIME = {
        "BACKEND": "inprocess",
        "DATABASE": "mysql",
        "PRUNE_INTERVAL": None,
        "GAP_TIMEOUT": gap_timeout,
    }
    yield
    connections["mysql"].close()
