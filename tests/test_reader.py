"""The hub's reader is supervised: one that dies or hangs is replaced, and keepalive ticks never wait for it."""

import threading
import time

import pytest
from django.test import override_settings

from django_realtime import publish
from django_realtime.cursor import Cursor
from django_realtime.eventlog.tailers import SerialTailer
from django_realtime.hub import MAX_STUCK_READERS, get_hub
from tests.test_hub import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

FAST = {"READ_TIMEOUT": 0.3, "POLL_INTERVAL": 0.05, "KEEPALIVE": 0.4}


class Ended(BaseException):
    """Not an Exception: what no ``except Exception`` of the reader catches (as SystemExit or a bug in gevent)."""


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_reader_that_dies_is_replaced_and_delivery_goes_on(monkeypatch):
    with override_settings(REALTIME=FAST):
        hub = get_hub()
        assert hub.ensure_ready()
        read = SerialTailer.read
        deaths = []

        def die_once(self, horizon):
            if not deaths:
                deaths.append(threading.current_thread())
                raise Ended
            return read(self, horizon)

        monkeypatch.setattr(SerialTailer, "read", die_once)
        first = publish("a", 1)
        wait_for(hub, first.id, timeout=5)
        assert deaths and not deaths[0].is_alive()
        assert hub.replaced == 1
        assert hub.ensure_ready(0)
        assert hub.status()["reader"] == "running"


def test_a_hung_read_is_given_up_ticks_go_on_and_the_error_is_exposed(monkeypatch):
    with override_settings(REALTIME=FAST):
        hub = get_hub()
        assert hub.ensure_ready()
        group = hub.join(frozenset({"a"}))
        release = threading.Event()
        read = SerialTailer.read

        def hang(self, horizon):
            release.wait(10)
            return read(self, horizon)

        monkeypatch.setattr(SerialTailer, "read", hang)
        event = publish("a", 1)
        deadline = time.monotonic() + 5
        while hub.replaced < MAX_STUCK_READERS and time.monotonic() < deadline:
            time.sleep(0.05)
        # Every reader hangs, and the hub keeps waking its streams for their keepalives.
        woken = group.wakeups
        time.sleep(4 * hub.tick)
        assert group.wakeups >= woken + 2
        assert isinstance(hub.error, TimeoutError)
        assert not hub.healthy()
        assert hub.replaced == MAX_STUCK_READERS  # a bounded number of readers is left blocked
        monkeypatch.setattr(SerialTailer, "read", read)
        release.set()
        wait_for(hub, event.id, timeout=5)
        deadline = time.monotonic() + 5
        while not hub.healthy() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert hub.healthy(), hub.status()
        hub.leave(group)


def test_a_replaced_reader_changes_nothing():
    hub = get_hub()
    assert hub.ensure_ready()
    before = hub.cursor
    start = before.top
    old = hub._reader
    with hub._lock:
        new = hub._replace_reader("hung")
    new.start()
    rows = [(start + 1, "a", "message", "1")]
    assert not hub.append(rows, before, Cursor(start + 1), source=old)
    assert hub.horizon == start
    assert hub.append(rows, before, Cursor(start + 1), source=hub._reader)
    assert hub.horizon == start + 1


def test_a_tailer_held_back_at_a_gap_is_warned_of_once_per_wait_apart_from_pending_ids(monkeypatch, caplog):
    from django_realtime import reader
    from django_realtime.eventlog.postgres import PostgresTailer
    from django_realtime.reader import Reader

    monkeypatch.setattr(reader, "WAITING_WARNING", 0.0)

    class Host:
        using = "default"
        cursor = Cursor(10, ((5, 5),))

    tailer = PostgresTailer("default")
    monkeypatch.setattr(reader, "tailer_for", lambda using: tailer)
    monkeypatch.setattr(PostgresTailer, "pending_report", lambda self: {"publishers": ["pid 7"]})
    watcher = Reader(Host())
    tailer.waiting_since = time.monotonic() - 1
    watcher._warn_if_held_back()
    assert caplog.text.count("publishing transactions have been open") == 1
    assert "holds back every channel" not in caplog.text, "pending ids hold nothing back"
    tailer.held_back = True
    watcher._warn_if_held_back()
    watcher._warn_if_held_back()
    assert caplog.text.count("holds back every channel") == 1, "once per wait, though the ids were warned of already"
    assert caplog.text.count("publishing transactions have been open") == 1
