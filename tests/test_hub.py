import asyncio
import threading

import pytest
from django.db import connection
from django.test import override_settings

from django_realtime import publish
from django_realtime.hub import Hub, get_hub, poke_local_hub
from django_realtime.models import Event

pytestmark = pytest.mark.django_db(transaction=True)

INPROCESS = {"BACKEND": "inprocess"}


def store_behind_the_hubs_back(channel, data="x"):
    """Insert a row as another process would: no notification reaches this hub."""
    return Event.objects.create(channel=channel, data_json=f'"{data}"')


def wait_for(hub, cursor, timeout=5.0):
    """Wait until the hub's horizon passes *cursor*."""
    for _ in range(int(timeout / 0.01)):
        signal = hub.signal
        if hub.horizon >= cursor:
            return
        signal.wait(0.01)
    raise AssertionError(f"hub horizon {hub.horizon} never reached {cursor}")


def test_hub_starts_at_the_newest_event_and_buffers_what_comes_after():
    old = publish("a", 0)
    hub = get_hub()
    assert hub.ensure_ready()
    assert hub.floor == hub.horizon == old.id
    new = publish("a", 1)
    wait_for(hub, new.id)
    items, cursor = hub.collect(frozenset({"a"}), old.id)
    assert [(item.id, item.data_json) for item in items] == [(new.id, "1")]
    assert items[0].sse == f"id: {new.id}\nevent: message\ndata: 1\n\n".encode()
    assert cursor == new.id


def test_collect_filters_by_channel_and_moves_the_cursor_past_other_channels():
    hub = get_hub()
    hub.ensure_ready()
    start = hub.horizon
    ids = {name: publish(name, name).id for name in ["a", "b", "c"]}
    wait_for(hub, ids["c"])
    items, cursor = hub.collect(frozenset({"a", "c"}), start)
    assert [item.id for item in items] == [ids["a"], ids["c"]]
    assert cursor == ids["c"]
    assert hub.collect(frozenset({"a"}), cursor) == ([], cursor)


def test_polling_backend_sees_events_stored_by_another_process():
    with override_settings(REALTIME={"POLL_INTERVAL": 0.05}):
        hub = get_hub()
        hub.ensure_ready()
        event = store_behind_the_hubs_back("a")
        wait_for(hub, event.id, timeout=2)


def test_inprocess_backend_hears_only_local_pokes():
    with override_settings(REALTIME=INPROCESS):
        hub = get_hub()
        hub.ensure_ready()
        event = store_behind_the_hubs_back("a")
        signal = hub.signal
        assert not signal.wait(0.3)
        assert hub.horizon < event.id
        poke_local_hub()
        wait_for(hub, event.id)


def test_a_publish_wakes_waiting_threads():
    with override_settings(REALTIME=INPROCESS):
        hub = get_hub()
        hub.ensure_ready()
        woken = []
        ready = threading.Barrier(4)

        def waiter():
            signal = hub.signal
            ready.wait()
            woken.append(signal.wait(5))

        threads = [threading.Thread(target=waiter) for _ in range(3)]
        for thread in threads:
            thread.start()
        ready.wait()
        publish("a", 1)
        for thread in threads:
            thread.join(5)
        assert woken == [True, True, True]


def test_a_publish_wakes_asyncio_waiters():
    with override_settings(REALTIME=INPROCESS):
        hub = get_hub()
        hub.ensure_ready()

        async def main():
            signals = [hub.async_signal() for _ in range(3)]
            assert len({id(signal) for signal in signals}) == 1, "one future per loop, shared"
            await asyncio.get_running_loop().run_in_executor(None, publish, "a", 1)
            await asyncio.wait_for(asyncio.gather(*signals), 5)

        asyncio.run(main())
        connection.close()


def test_buffer_keeps_the_newest_events_and_reports_when_a_cursor_fell_out():
    with override_settings(REALTIME={**INPROCESS, "BUFFER_SIZE": 3}):
        hub = get_hub()
        hub.ensure_ready()
        start = hub.horizon
        ids = [publish("a", n).id for n in range(10)]
        wait_for(hub, ids[-1])
        assert hub.floor > start
        assert hub.collect(frozenset({"a"}), start) == (None, start)
        items, _ = hub.collect(frozenset({"a"}), hub.floor)
        assert [item.id for item in items] == [i for i in ids if i > hub.floor]


def test_hub_retries_after_a_database_error(caplog):
    with override_settings(REALTIME={"POLL_INTERVAL": 0.05}):
        hub = get_hub()
        hub.ensure_ready()
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE django_realtime_event RENAME TO realtime_away")
        try:
            for _ in range(200):
                if hub.error is not None:
                    break
                threading.Event().wait(0.01)
            assert hub.error is not None
        finally:
            with connection.cursor() as cursor:
                cursor.execute("ALTER TABLE realtime_away RENAME TO django_realtime_event")
        event = store_behind_the_hubs_back("a")
        wait_for(hub, event.id, timeout=10)
        for _ in range(500):
            if hub.error is None:
                break
            threading.Event().wait(0.01)
        assert hub.error is None


def test_hub_is_per_process_and_recreated_after_a_fork(monkeypatch):
    hub = get_hub()
    assert get_hub() is hub
    import django_realtime.hub as module

    monkeypatch.setattr(module.os, "getpid", lambda: -1)
    assert get_hub() is not hub
    assert isinstance(get_hub(), Hub)


def test_buffer_is_bounded_in_bytes_too():
    with override_settings(REALTIME={**INPROCESS, "BUFFER_BYTES": 10_000}):
        hub = get_hub()
        hub.ensure_ready()
        ids = [publish("a", "x" * 1000).id for n in range(30)]
        wait_for(hub, ids[-1])
        assert hub._bytes <= 10_000
        items, _ = hub.collect(frozenset({"a"}), hub.floor)
        assert [item.id for item in items] == [i for i in ids if i > hub.floor]
