"""The gap-safe tailer on MariaDB (InnoDB), step by step: the commit-order trap without GAP_TIMEOUT."""

import threading
import time
from functools import partial

import pytest
from django.db import connections, transaction

from django_realtime import publish
from django_realtime.cursor import Cursor
from django_realtime.eventlog import tailer_for
from django_realtime.eventlog.innodb import INNODB_TRX_CACHE, InnoDBTailer, Sighting
from django_realtime.eventlog.timeout import TimeoutTailer
from tests.held import Held as HeldOpen
from tests.held import ids, log_on_mariadb, read_until, settle_until
from tests.support.mariadb_database import scratch_mariadb
from tests.support.services import MARIADB

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "mysql"])

#: Far longer than the InnoDB rule needs (INNODB_TRX_CACHE plus a recheck or two): a
#: tailer that waited GAP_TIMEOUT out instead, or skipped, fails the test.
GAP_TIMEOUT = 30.0


@pytest.fixture(autouse=True)
def _log_on_mariadb(settings):
    yield from log_on_mariadb(settings, GAP_TIMEOUT)


#: A publishing transaction held open on this module's database.
Held = partial(HeldOpen, using="mysql")


def test_mariadb_gets_the_innodb_tailer():
    assert isinstance(tailer_for("mysql"), InnoDBTailer)


def test_an_event_above_an_open_transaction_is_read_at_once_and_the_held_one_when_it_commits():
    tailer = tailer_for("mysql")
    start = tailer.start_horizon()
    held = Held()
    later = publish("c", "later").id
    rows, cursor = tailer.read(start)
    assert ids(rows) == [later], "the later commit waits for nobody"
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:  # many looks at INNODB_TRX: the open transaction keeps its id pending
        tailer._next_check = 0.0
        rows, cursor = tailer.read(cursor)
        assert rows == [] and not cursor.covers(held.id), "an id was taken for dead while its transaction is open"
        time.sleep(0.02)
    assert tailer.recheck_after is not None
    held.end(commit=True)
    _, cursor = read_until(tailer, cursor, [held.id])
    # Ids of other tests' rolled-back rows may sit below: they settle as dead.
    settle_until(tailer, cursor, Cursor(later), timeout=5.0)


def test_a_rolled_back_id_leaves_the_cursor_in_a_fraction_of_a_second_not_gap_timeout():
    tailer = tailer_for("mysql")
    start = tailer.start_horizon()
    held = Held()
    later = publish("c", "later").id
    _, cursor = read_until(tailer, start, [later])
    held.end(commit=False)
    assert settle_until(tailer, cursor, Cursor(later), timeout=2.0) < 2.0
    assert tailer.recheck_after is None


def test_a_transaction_that_stays_open_past_gap_timeout_is_still_delivered(settings):
    settings.REALTIME = {**settings.REALTIME, "GAP_TIMEOUT": 0.2}
    tailer = tailer_for("mysql")
    start = tailer.start_horizon()
    held = Held()
    later = publish("c", "later").id
    _, cursor = read_until(tailer, start, [later])
    time.sleep(1.0)  # five GAP_TIMEOUTs: the timeout rule would have skipped the held id
    tailer._next_check = 0.0
    rows, cursor = tailer.read(cursor)
    assert rows == [] and not cursor.covers(held.id)
    held.end(commit=True)
    read_until(tailer, cursor, [held.id])


def test_innodb_trx_is_never_read_from_a_cache_older_than_the_read_that_saw_the_gap():
    """Another reader of INNODB_TRX every 20 ms keeps InnoDB from refreshing its cache of it."""
    hammering = threading.Event()
    stop = threading.Event()

    def hammer():
        try:
            with connections["mysql"].cursor() as cursor:
                while not stop.is_set():
                    cursor.execute("SELECT COUNT(*) FROM information_schema.INNODB_TRX")
                    cursor.fetchall()
                    hammering.set()
                    time.sleep(0.02)
        finally:
            connections["mysql"].close()

    tailer = tailer_for("mysql")
    cursor = tailer.start_horizon()
    reader = threading.Thread(target=hammer)
    reader.start()
    try:
        assert hammering.wait(5)
        held = Held()  # begun after the cache's last refresh: a stale cache does not list it
        later = publish("c", "later").id
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            tailer._next_check = 0.0
            rows, cursor = tailer.read(cursor)
            assert not cursor.covers(held.id), "a gap was settled from a cache that did not list its transaction"
            time.sleep(0.01)
        assert cursor.covers(later)
    finally:
        stop.set()
        reader.join(10)
    held.end(commit=True)
    read_until(tailer, cursor, [held.id])


def test_a_transaction_open_in_another_database_of_the_server_holds_back_no_id():
    """INNODB_TRX lists the whole server's transactions: another database's are not this log's."""
    import MySQLdb

    with scratch_mariadb("realtime_other") as url:
        other = MySQLdb.connect(
            host=MARIADB[0], port=MARIADB[1], user="root", database=url.rsplit("/", 1)[1], connect_timeout=5
        )
        try:
            statement = other.cursor()
            statement.execute("CREATE TABLE t (id INT PRIMARY KEY AUTO_INCREMENT) ENGINE=InnoDB")
            other.autocommit(False)
            statement.execute("INSERT INTO t () VALUES ()")  # written, and left open: InnoDB lists it
            tailer = tailer_for("mysql")
            start = tailer.start_horizon()
            held = Held()
            later = publish("c", "later").id
            _, cursor = read_until(tailer, start, [later])
            held.end(commit=False)
            assert settle_until(tailer, cursor, Cursor(later), timeout=2.0) < 2.0
        finally:
            other.rollback()
            other.close()


def test_a_long_read_only_statement_elsewhere_does_not_keep_a_dead_id_pending():
    before = publish("c", "before").id
    tailer = tailer_for("mysql")
    start = tailer.start_horizon()
    started = threading.Event()

    def report():
        try:
            with connections["mysql"].cursor() as cursor:
                started.set()
                # Autocommit and read-only, on the log's table: InnoDB lists it, and it cannot draw an id.
                cursor.execute("SELECT SLEEP(3) FROM django_realtime_event WHERE id >= %s LIMIT 1", [before])
        finally:
            connections["mysql"].close()

    reading = threading.Thread(target=report)
    reading.start()
    assert started.wait(5)
    time.sleep(0.2)
    try:
        held = Held()
        later = publish("c", "later").id
        held.end(commit=False)
        _, cursor = read_until(tailer, start, [later])
        assert settle_until(tailer, cursor, Cursor(later), timeout=2.0) < 2.0
    finally:
        reading.join(10)


def test_a_starting_tailer_waits_for_nobody_and_names_the_ids_in_flight():
    """A hub that starts while a publishing transaction is open serves at once (else: not until it ends)."""
    before = publish("c", "before").id
    held = Held()
    later = publish("c", "later").id
    started = time.monotonic()
    tailer = tailer_for("mysql")
    try:
        start = tailer.start_horizon(timeout=2.0)
    finally:
        took = time.monotonic() - started
        held.end(commit=True)
    assert took < 2.0
    assert start.top == later and start.covers(before) and not start.covers(held.id)
    _, cursor = read_until(tailer, start, [held.id])
    # Ids of other tests' rolled-back rows may sit below: they settle as dead with the held one's sighting.
    settle_until(tailer, cursor, Cursor(later), timeout=5.0)


def test_a_starting_tailer_waits_for_the_transactions_in_flight_when_too_many_ids_are_missing(monkeypatch):
    from django_realtime.eventlog import innodb

    monkeypatch.setattr(innodb, "START_WINDOW", 0)  # any id missing is one too many to name
    held = Held()
    result = {}

    def start():
        try:
            result["start"] = tailer_for("mysql").start_horizon()
        finally:
            connections["mysql"].close()

    later = publish("c", "later").id
    starting = threading.Thread(target=start)
    starting.start()
    starting.join(0.5)
    assert starting.is_alive(), "the hub started while an id below the newest was in flight, unnamed"
    held.end(commit=True)
    starting.join(10)
    assert result["start"] == Cursor(later)


def test_without_the_process_privilege_the_tailer_warns_and_waits_gap_timeout(settings, caplog, monkeypatch):
    from MySQLdb import OperationalError as DriverError

    settings.REALTIME = {**settings.REALTIME, "GAP_TIMEOUT": 0.3}

    def denied(self):
        from django.db.utils import OperationalError

        raise OperationalError(1227, "Access denied; you need (at least one of) the PROCESS privilege(s)") from (
            DriverError(1227, "denied")
        )

    monkeypatch.setattr(InnoDBTailer, "_list", denied)
    tailer = tailer_for("mysql")
    start = tailer.start_horizon()
    held = Held()
    later = publish("c", "later").id
    # The timeout rule: the held id is skipped after GAP_TIMEOUT, though it is still open.
    waited, _ = read_until(tailer, start, [later], timeout=3.0)
    assert waited >= 0.3
    held.end(commit=True)
    assert isinstance(tailer.fallback, TimeoutTailer)
    assert "grant the database user the PROCESS privilege" in caplog.text


def test_ids_that_go_missing_behind_a_pending_one_are_settled_with_it():
    """Without a second sighting, the rolled-back id would stay pending until one of its own settled."""
    tailer = tailer_for("mysql")
    start = tailer.start_horizon()
    held = Held()
    later1 = publish("c", "later1").id
    _, cursor = read_until(tailer, start, [later1])
    with transaction.atomic(using="mysql"):
        publish("c", "rolled back")  # a second gap, dead at once
        transaction.set_rollback(True, using="mysql")
    later2 = publish("c", "later2").id
    _, cursor = read_until(tailer, cursor, [later2])  # sees later2 above the pending sighting: takes another
    assert len(cursor.pending) == 2
    held.end(commit=False)
    assert settle_until(tailer, cursor, Cursor(later2), timeout=2.0) < 2.0


def list_fresh(tailer, lists):
    """Have *tailer* list INNODB_TRX until its list is newer than a sighting taken now.

    Another reader of INNODB_TRX in the last 0.1 s (a hub of an earlier
    test, another process) leaves InnoDB's cache stale: the list is then
    taken and shared, but tells a new sighting nothing.
    """
    sighting = Sighting(tailer.now())
    deadline = time.monotonic() + 10
    while True:
        before = len(lists)
        tailer._retry_at = 0.0
        tailer._update([sighting])
        assert len(lists) == before + 1, "the hub did not list INNODB_TRX itself"
        if sighting.open is not None:
            return
        assert time.monotonic() < deadline, "InnoDB's cache of INNODB_TRX stayed stale for 10 s"
        time.sleep(INNODB_TRX_CACHE + 0.05)


def test_the_hubs_of_several_processes_share_one_list_of_innodb_trx(monkeypatch):
    lists = []
    original = InnoDBTailer._list

    def counted(self):
        lists.append(self)
        return original(self)

    monkeypatch.setattr(InnoDBTailer, "_list", counted)
    first, second = tailer_for("mysql"), tailer_for("mysql")
    held = Held()
    try:
        publish("c", "later")
        waiting = Sighting(second.now())  # second's gap, seen before first lists
        list_fresh(first, lists)
        listed = len(lists)
        second._update([waiting])
        assert len(lists) == listed, "the second hub listed INNODB_TRX though a fresh list was shared"
        assert waiting.open and not waiting.ended  # the held transaction, from the shared list
    finally:
        held.end(commit=False)
    time.sleep(INNODB_TRX_CACHE + 0.1)
    list_fresh(first, lists)
    listed = len(lists)
    second._retry_at = 0.0
    second._update([waiting])
    assert len(lists) == listed
    assert set(lists) == {first}
    assert waiting.ended
