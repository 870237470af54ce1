"""The SSE slow-client watchdog (sse/watchdog.py): it cuts a write blocked past SSE_SEND_TIMEOUT, on the hub's ticks."""

from __future__ import annotations

import threading
import time

import pytest
from django.test import override_settings

from django_realtime.hub import get_hub
from django_realtime.sse.watchdog import WRITE_CHECK, Watchdog, get_watchdog

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_write_blocked_past_the_timeout_is_cut_once_and_counted():
    watchdog = Watchdog(send_timeout=1.0)
    cuts = []
    stuck = watchdog.watch(lambda: cuts.append("stuck"))
    busy = watchdog.watch(lambda: cuts.append("busy"))
    idle = watchdog.watch(lambda: cuts.append("idle"))
    assert stuck is not None and busy is not None and idle is not None
    now = time.monotonic()
    stuck.since = now - 1.5  # the server has held its chunk for 1.5 s
    busy.since = now - 0.5  # for less than the timeout
    # idle.since stays 0: between two chunks, waiting for an event, not for the client
    watchdog.check(now)
    watchdog.check(now + 0.1)
    assert cuts == ["stuck"]
    assert watchdog.slow_clients == 1


def test_a_stream_that_ended_is_no_longer_watched():
    watchdog = Watchdog(send_timeout=1.0)
    cuts = []
    write = watchdog.watch(lambda: cuts.append("cut"))
    assert write is not None
    write.since = time.monotonic() - 5
    watchdog.unwatch(write)
    watchdog.check(time.monotonic())
    assert cuts == [] and watchdog.slow_clients == 0


def test_without_a_send_timeout_nothing_is_watched():
    assert Watchdog(send_timeout=None).watch(lambda: None) is None


def test_the_hubs_ticker_runs_its_watchdog():
    with override_settings(REALTIME={"BACKEND": "inprocess", "KEEPALIVE": 0.4, "SSE_SEND_TIMEOUT": 0.2}):
        hub = get_hub()
        assert hub.ensure_ready()
        watchdog = get_watchdog(hub)
        assert get_watchdog(hub) is watchdog  # one per hub
        cut = threading.Event()
        write = watchdog.watch(cut.set)
        assert write is not None
        write.since = time.monotonic()  # a chunk the client never takes
        assert cut.wait(5 * (WRITE_CHECK + 0.2)), "the watchdog never ran on the hub's ticks"
        assert watchdog.slow_clients == 1
        watchdog.unwatch(write)


def test_a_new_hub_gets_a_new_watchdog_with_the_settings_of_then():
    with override_settings(REALTIME={"BACKEND": "inprocess", "SSE_SEND_TIMEOUT": 3.0}):
        first = get_watchdog(get_hub())
        assert first.send_timeout == 3.0
    with override_settings(REALTIME={"BACKEND": "inprocess", "SSE_SEND_TIMEOUT": None}):
        second = get_watchdog(get_hub())
        assert second is not first and second.send_timeout is None
