import asyncio
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.db import connection
from django.test import override_settings

from django_realtime import publish
from django_realtime.cursor import Cursor
from django_realtime.hub import Hub, Seats, get_hub
from django_realtime.models import Event
from django_realtime.sse.responses import event_bytes
from tests.threads import publish_and_close

pytestmark = pytest.mark.django_db(transaction=True)

INPROCESS = {"BACKEND": "inprocess"}


def store_behind_the_hubs_back(channel, data="x"):
    """Insert a row as another process would: no notification reaches this hub."""
    event = Event(channel=channel, data_json=f'"{data}"')
    event._announced = True  # as if stored in another process: the post_save wake-up would reach only that one
    event.save()
    return event


def feed(hub, *rows):
    """Hand the hub rows as its reader would: new ones, in id order, the ids between them left pending."""
    before = hub.cursor
    return hub.append(list(rows), before, before.advanced([row[0] for row in rows]))


def wait_for(hub, cursor, timeout=5.0, poke=False):
    """Wait until the hub's horizon passes *cursor*; with *poke*, poke it as a tick would (its events
    may be of channels nobody follows: nothing wakes the hub for those)."""
    for _ in range(int(timeout / 0.01)):
        if hub.horizon >= cursor:
            return
        if poke:
            hub.poke()
        time.sleep(0.01)
    raise AssertionError(f"hub horizon {hub.horizon} never reached {cursor}")


def test_hub_starts_at_the_newest_event_and_buffers_what_comes_after():
    old = publish("a", 0)
    hub = get_hub()
    assert hub.ensure_ready()
    assert hub.floor_cursor == hub.cursor == Cursor(old.id)
    start = hub.seq
    new = publish("a", 1)
    wait_for(hub, new.id)
    items, seq, cursor = hub.collect(frozenset({"a"}), start)
    assert [(item.id, item.data_json) for item in items] == [(new.id, "1")]
    assert event_bytes(items[0]) == f"id: {new.id}\nevent: message\ndata: 1\n\n".encode()
    assert (seq, cursor) == (hub.seq, Cursor(new.id))


def test_collect_filters_by_channel_and_moves_the_cursor_past_other_channels():
    hub = get_hub()
    hub.ensure_ready()
    start = hub.seq
    ids = {name: publish(name, name).id for name in ["a", "b", "c"]}
    wait_for(hub, ids["c"])
    items, seq, cursor = hub.collect(frozenset({"a", "c"}), start)
    assert [item.id for item in items] == [ids["a"], ids["c"]]
    assert cursor == Cursor(ids["c"]) and seq == hub.seq
    assert hub.collect(frozenset({"a"}), seq) == ([], seq, cursor)


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
        group = hub.join(frozenset({"a"}))
        time.sleep(0.1)  # the read that joining a new channel asks for
        signal = group.signal
        event = store_behind_the_hubs_back("a")
        assert not signal.wait(0.3)
        assert hub.horizon < event.id
        hub.poke()
        wait_for(hub, event.id)


#: A keepalive so long that the hub's tick (every KEEPALIVE/2) never wakes anyone during a test.
QUIET = {**INPROCESS, "KEEPALIVE": 3600}


def test_a_publish_wakes_the_threads_of_its_channel_only():
    with override_settings(REALTIME=QUIET):
        hub = get_hub()
        hub.ensure_ready()
        groups = {name: hub.join(frozenset({name})) for name in ["a", "b"]}
        both = hub.join(frozenset({"a", "b"}))
        assert hub.join(frozenset({"a"})) is groups["a"], "streams of the same channels share a group"
        woken = {}
        ready = threading.Barrier(4)

        def waiter(name, group):
            signal = group.signal
            ready.wait()
            woken[name] = signal.wait(1)

        threads = [threading.Thread(target=waiter, args=item) for item in [*groups.items(), ("a+b", both)]]
        for thread in threads:
            thread.start()
        ready.wait()
        publish("a", 1)
        for thread in threads:
            thread.join(5)
        assert woken == {"a": True, "b": False, "a+b": True}
        assert (groups["a"].wakeups, groups["b"].wakeups, both.wakeups) == (1, 0, 1)


def test_a_batch_of_several_channels_wakes_a_stream_of_several_channels_once():
    with override_settings(REALTIME=QUIET):
        hub = get_hub()
        hub.ensure_ready()
        both = hub.join(frozenset({"a", "b"}))
        other = hub.join(frozenset({"c"}))
        start, top = hub.seq, hub.horizon
        feed(hub, (top + 1, "a", "message", "1"), (top + 2, "b", "message", "2"))
        assert (both.wakeups, other.wakeups) == (1, 0)
        items, _, _ = hub.collect(both.channels, start)
        assert [item.id for item in items] == [top + 1, top + 2]


def test_a_publish_wakes_the_asyncio_waiters_of_its_channel_only():
    with override_settings(REALTIME=QUIET):
        hub = get_hub()
        hub.ensure_ready()
        a, b = hub.join(frozenset({"a"})), hub.join(frozenset({"b"}))

        async def main():
            signals = [hub.async_signal(a) for _ in range(3)]
            assert len({id(signal) for signal in signals}) == 3, "a future per waiter, its own to cancel"
            other = hub.async_signal(b)
            await asyncio.get_running_loop().run_in_executor(None, publish_and_close, "a", 1)
            await asyncio.wait_for(asyncio.gather(*signals), 5)
            await asyncio.sleep(0.1)
            assert not other.done()

        asyncio.run(main())
        connection.close()
        assert (a.wakeups, b.wakeups) == (1, 0)


class Recorder:
    """A parked stream that records where its wake-ups run, and whose first wake-up may do something."""

    def __init__(self, first=None):
        self.threads = []
        self.first = first

    def wake(self, now, shared):
        self.threads.append(threading.current_thread())
        if len(self.threads) == 1 and self.first is not None:
            self.first()
        return True


def test_streams_parked_on_a_loop_are_woken_there_and_again_for_a_wake_up_they_missed():
    """A wake-up from another thread runs the loop's parked streams on the loop; one that comes while they run
    (not parked, it could not take them) has them run again before they park; a stale signal parks nothing."""
    hub = bare_hub()
    group = hub.join(frozenset({"a"}))
    loop = asyncio.new_event_loop()
    try:
        stale = group.signal
        missed = Recorder(first=lambda: hub._wake([group]))
        assert hub.park_on(loop, group, missed, group.signal)
        assert hub.parked() == 1
        waker = threading.Thread(target=hub._wake, args=([group],))
        waker.start()
        waker.join()
        assert missed.threads == [], "not run on the waking thread"
        loop.run_until_complete(asyncio.sleep(0.05))
        assert missed.threads == [threading.current_thread()] * 2, "run on the loop, and again for the missed one"
        assert hub.parked() == 1, "parked again"
        assert not hub.park_on(loop, group, Recorder(), stale), "woken since it looked: it must look again"
        assert hub.parked() == 1
    finally:
        loop.close()


GEVENT_SCRIPT = """
from gevent import monkey; monkey.patch_all()
import os, sys, time
import django
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
django.setup()
from django.conf import settings
settings.REALTIME = {"BACKEND": "inprocess", "KEEPALIVE": 3600}
from django.db import connection
from django.core.management import call_command
import gevent
from django_realtime.hub import get_hub
from django_realtime.sse.responses import event_bytes

def feed(*rows):
    before = hub.cursor
    hub.append(list(rows), before, before.advanced([row[0] for row in rows]))

settings.DATABASES["default"]["NAME"] = sys.argv[1]
call_command("migrate", verbosity=0)
hub = get_hub()
assert hub.ensure_ready()
woken = {}
def wait(name, count):
    group = hub.join(frozenset({name}))
    for _ in range(count):
        group.signal.wait()
        woken[name] = woken.get(name, 0) + 1
    hub.leave(group)
waiting = [gevent.spawn(wait, f"user:{n}", 2) for n in range(200)]
gevent.sleep(0.1)
start = hub.horizon
feed((start + 1, "user:7", "message", "1"))
gevent.sleep(0.1)
feed((start + 2, "user:7", "message", "2"), (start + 3, "user:9", "message", "3"))
gevent.sleep(0.1)
print(sorted(woken.items()))
gevent.killall(waiting)
"""


def test_under_gevent_an_event_wakes_only_the_greenlets_of_its_channel(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", GEVENT_SCRIPT, str(tmp_path / "db.sqlite3")],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[('user:7', 2), ('user:9', 1)]"


def test_a_tick_wakes_every_group_for_its_keepalives():
    with override_settings(REALTIME={**INPROCESS, "KEEPALIVE": 0.2}):
        hub = get_hub()
        hub.ensure_ready()
        groups = [hub.join(frozenset({f"user:{n}"})) for n in range(3)]
        time.sleep(0.5)
        assert all(group.wakeups >= 2 for group in groups)


def test_a_group_left_by_its_last_stream_is_forgotten():
    with override_settings(REALTIME=QUIET):
        hub = get_hub()
        hub.ensure_ready()
        first, second = hub.join(frozenset({"a"})), hub.join(frozenset({"a"}))
        hub.leave(first)
        assert hub.join(frozenset({"a"})) is second
        hub.leave(second)
        hub.leave(second)
        assert hub._groups == {} and hub._channels == {}


def test_the_backend_is_told_which_channels_streams_follow_and_the_reader_poked_for_a_new_one():
    """A wake-up for a channel no stream follows wakes nobody; a stream of a new channel reads what it missed."""
    hub = bare_hub()
    hub.take_poke()
    first = hub.join(frozenset({"a"}))
    assert hub.backend.followed == {"a"} and hub.take_poke()
    second = hub.join(frozenset({"a"}))
    assert not hub.take_poke(), "a channel followed already: nothing missed, no read"
    both = hub.join(frozenset({"a", "b"}))
    assert hub.backend.followed == {"a", "b"} and hub.take_poke()
    hub.leave(both)
    assert hub.backend.followed == {"a"}
    hub.leave(first)
    hub.leave(second)
    assert hub.backend.followed == set()


def test_the_channels_of_ended_streams_are_forgotten_once_their_events_leave_the_buffer():
    """Streams come and go, each on a channel of its own: the hub's state per channel stays within its buffer."""
    from django_realtime.streams import follow

    hub = bare_hub(10, buffer_size=4)
    open_streams = []
    for n in range(200):
        channel = f"user:{n}"
        stream = follow(hub, frozenset({channel}), hub.cursor, keepalive=3600)
        feed(hub, (11 + n, channel, "message", str(n)))
        assert [item.id for item in next(stream)] == [11 + n]
        if n % 2:
            # Ends while its event is still buffered: the channel goes when the event does.
            stream.close()
        else:
            # Ends after its event has left the buffer: the channel goes with the stream.
            open_streams.append(stream)
            if len(open_streams) > 10:
                open_streams.pop(0).close()
    for stream in open_streams:
        stream.close()
    groups, channels = len(hub._groups), len(hub._channels)
    assert groups == 0, f"{groups} waiter groups kept after every stream ended"
    assert channels <= 2 * hub.buffer_size, f"{channels} channels kept for 200 seen"


def test_a_channel_that_had_no_event_for_long_is_still_served_from_the_buffer():
    """A stream of a quiet channel whose cursor is far below the hub's floor needs no database read."""
    with override_settings(REALTIME={**QUIET, "BUFFER_SIZE": 3}):
        hub = get_hub()
        hub.ensure_ready()
        group = hub.join(frozenset({"user:1"}))
        start = hub.seq
        ids = [publish("user:2", n).id for n in range(10)]
        wait_for(hub, ids[-1], poke=True)
        assert hub.floor_seq > start
        assert hub.collect(group.channels, start) == ([], hub.seq, Cursor(ids[-1]))
        assert hub.collect(frozenset({"user:2"}), start)[0] is None
        assert hub.collect(frozenset({"user:3"}), start)[0] is None, "an unfollowed channel has no such record"


def test_buffer_keeps_the_newest_events_and_reports_when_a_cursor_fell_out():
    with override_settings(REALTIME={**INPROCESS, "BUFFER_SIZE": 3}):
        hub = get_hub()
        hub.ensure_ready()
        start = hub.seq
        ids = [publish("a", n).id for n in range(10)]
        wait_for(hub, ids[-1], poke=True)
        assert hub.floor_seq > start
        assert hub.collect(frozenset({"a"}), start)[0] is None
        items, _, _ = hub.collect(frozenset({"a"}), hub.floor_seq)
        assert [item.id for item in items] == [i for i in ids if i > hub.floor_cursor.top]
        assert hub.locate(frozenset({"a"}), Cursor(ids[0])) is None, "a cursor below the buffer: read the log"
        assert hub.locate(frozenset({"a"}), hub.floor_cursor) == hub.floor_seq


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


def test_a_seat_given_back_twice_is_given_back_once():
    """A stream's giver may run twice (an ASGI stream's end and its response's close): one seat comes back."""
    seats = Seats(1)
    assert seats.take()
    give = seats.giver()
    give()
    give()
    assert seats.taken == 0
    assert seats.take()
    assert not seats.take(), "one seat, as MAX_STREAMS says, not two"


def test_seats_count_every_stream_up_to_the_limit():
    seats = Seats(3)
    assert [seats.take() for _ in range(4)] == [True, True, True, False]
    assert seats.taken == 3
    seats.give()
    assert seats.take()
    assert not seats.take()


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
        wait_for(hub, ids[-1], poke=True)
        assert hub._bytes <= 10_000
        items, _, _ = hub.collect(frozenset({"a"}), hub.floor_seq)
        assert [item.id for item in items] == [i for i in ids if i > hub.floor_cursor.top]


def test_a_tick_is_spread_over_slices_and_wakes_each_group_once_per_tick():
    from django_realtime.backends.inprocess import InProcessBackend
    from django_realtime.hub import TICK_SLICES

    hub = Hub(InProcessBackend(), using="default", buffer_size=10, buffer_bytes=10_000, keepalive=16.0)
    groups = [hub.join(frozenset({f"user:{n}"})) for n in range(10 * TICK_SLICES)]
    now, woken_per_slice = 1000.0, []
    for _ in range(3 * TICK_SLICES):
        before = sum(group.wakeups for group in groups)
        hub._tick(now)
        woken_per_slice.append(sum(group.wakeups for group in groups) - before)
        now = hub._next_slice
    assert max(woken_per_slice) == 10, "no slice wakes more than its share"
    assert [group.wakeups for group in groups] == [3] * len(groups), "three ticks, each group woken once in each"


def test_a_few_groups_are_woken_once_per_tick_not_once_per_slice():
    from django_realtime.backends.inprocess import InProcessBackend
    from django_realtime.hub import TICK_SLICES

    hub = Hub(InProcessBackend(), using="default", buffer_size=10, buffer_bytes=10_000, keepalive=16.0)
    groups = [hub.join(frozenset({f"user:{n}"})) for n in range(3)]  # fewer groups than slices
    now = 1000.0
    for _ in range(3 * TICK_SLICES):
        hub._tick(now)
        now = hub._next_slice
    assert [group.wakeups for group in groups] == [3, 3, 3], "three ticks: three wake-ups each, not one a slice"


@pytest.mark.parametrize("write", ["create", "bulk_create"])
def test_events_stored_through_the_orm_wake_the_hub_after_commit(write):
    with override_settings(REALTIME=INPROCESS):  # only wake-ups reach the hub: no polling
        hub = get_hub()
        hub.ensure_ready()
        hub.join(frozenset({"a"}))  # a stream follows "a": its events wake the hub
        time.sleep(0.1)  # the read that joining asks for
        if write == "create":
            newest = Event.objects.create(channel="a", data_json='"orm"')
        else:
            newest = Event.objects.bulk_create([Event(channel="a", data_json=f'"{n}"') for n in range(3)])[-1]
        wait_for(hub, newest.id, timeout=1)


# Commit order: late events, and cursors from elsewhere ---------------------------


def bare_hub(top=10, buffer_size=100, **options):
    """A hub with no reader: the test hands it rows as its reader would."""
    from django_realtime.backends.inprocess import InProcessBackend

    hub = Hub(InProcessBackend(), using="default", buffer_size=buffer_size, buffer_bytes=10**6, **options)
    hub.started(Cursor(top))
    return hub


def late(hub, *rows):
    """Hand the hub rows that were pending: they committed late."""
    before = hub.cursor
    after = before
    for row in rows:
        after = after.without(row[0])
    return hub.append(list(rows), before, after)


def test_an_event_that_commits_late_arrives_after_later_ids_with_a_cursor_that_names_it():
    hub = bare_hub(10)
    start = hub.seq
    feed(hub, (12, "a", "message", "12"))  # 11 is in flight
    assert hub.cursor == Cursor(12, ((11, 11),))
    late(hub, (11, "a", "message", "11"))
    assert hub.cursor == Cursor(12)
    items, _, _ = hub.collect(frozenset({"a"}), start)
    assert [(item.id, item.cursor_text) for item in items] == [(12, "12~11"), (11, "11@12")]


def test_a_late_event_carries_a_cursor_that_leaves_the_ids_still_pending_uncovered():
    """A client that resumes from a late event must still get the events that commit after it."""
    hub = bare_hub(10)
    feed(hub, (11, "a", "message", "11"), (14, "a", "message", "14"))  # 12 and 13 pending
    late(hub, (12, "a", "message", "12"))
    items, _, _ = hub.collect(frozenset({"a"}), 0)
    cursor = items[-1].cursor
    assert items[-1].id == 12 and cursor.covers(12)
    assert not cursor.covers(13), "13 has not arrived: a resume from 12's cursor must still get it"


def test_a_dead_id_is_covered_from_its_batch_on():
    hub = bare_hub(10)
    feed(hub, (12, "a", "message", "12"))
    before = hub.cursor
    hub.append([(13, "a", "message", "13")], before, Cursor(13))  # 11 proved dead with this read
    items, _, _ = hub.collect(frozenset({"a"}), 1)
    assert [item.cursor_text for item in items] == ["13"]


def test_locate_finds_where_a_cursor_is_in_the_arrivals_or_says_to_read_the_log():
    hub = bare_hub(10)
    feed(hub, (12, "a", "message", "12"), (13, "b", "message", "13"))
    late(hub, (11, "a", "message", "11"))
    channels = frozenset({"a"})
    assert hub.locate(channels, Cursor(10)) == 0, "older than anything buffered, newer than the floor"
    assert hub.locate(channels, Cursor(12, ((11, 11),))) == 1, "after 12 arrived"
    assert hub.locate(channels, Cursor(13)) == hub.seq
    assert hub.locate(channels, Cursor(9)) is None, "below the floor: the log"


def follow_all(follower, now=0.0):
    from django_realtime.streams import DELIVER

    got = []
    while True:
        action, value = follower.step(now)
        if action != DELIVER or not value:
            return got
        got += value


def test_a_stream_resuming_from_another_process_cursor_gets_what_it_lacks_once():
    from django_realtime.streams import Follower

    hub = bare_hub(10)
    feed(hub, (12, "a", "message", "12"))  # here 11 is in flight
    # Another process saw 11 commit before this one did: its client's cursor covers 11 and 12.
    follower = Follower(hub, frozenset({"a"}), Cursor(12), keepalive=None)
    assert follow_all(follower) == []
    late(hub, (11, "a", "message", "11"))
    feed(hub, (13, "a", "message", "13"))
    got = follow_all(follower)
    assert [(item.id, item.cursor_text) for item in got] == [(13, "13")], "11 not twice"
    assert follower.start_at is None, "once the hub covers the client's cursor, no more filtering"


def test_a_stream_resuming_from_a_cursor_with_a_pending_id_gets_it_when_it_commits():
    from django_realtime.streams import Follower

    hub = bare_hub(10)
    feed(hub, (12, "a", "message", "12"))
    cursor = hub.cursor  # 12~11, as a client got it with event 12
    follower = Follower(hub, frozenset({"a"}), Cursor.parse(str(cursor)), keepalive=None)
    assert follow_all(follower) == []
    late(hub, (11, "a", "message", "11"))
    assert [(item.id, item.cursor_text) for item in follow_all(follower)] == [(11, "11@12")]


# The buffer's bounds -------------------------------------------------------------


def json_of_length(length):
    return '"' + "x" * (length - 2) + '"'


def buffered(hub, channel):
    """Return how many of *channel*'s newest events a stream reads from the buffer, not the log."""
    count = 0
    while hub.collect(frozenset({channel}), hub.seq - count - 1)[0] is not None:
        count += 1
    return count


def test_a_trim_keeps_the_newest_buffer_size_events():
    hub = bare_hub(10, buffer_size=4)
    for n in range(9):  # the ninth is past twice BUFFER_SIZE: a trim
        feed(hub, (11 + n, "c", "message", str(n)))
    assert buffered(hub, "c") == 4
    assert [item.id for item in hub.collect(frozenset({"c"}), hub.seq - 4)[0]] == [16, 17, 18, 19]


def test_a_trim_for_bytes_keeps_half_of_buffer_bytes_every_time():
    from django_realtime.backends.inprocess import InProcessBackend

    # An event of 100 bytes of JSON counts as 500 bytes (the encoded forms it will have, and the objects).
    hub = Hub(InProcessBackend(), using="default", buffer_size=100, buffer_bytes=5000)
    hub.started(Cursor(10))
    data = json_of_length(100)
    for n in range(11):  # 5,500 bytes: past BUFFER_BYTES, down to 2,500 or less
        feed(hub, (11 + n, "c", "message", data))
    assert buffered(hub, "c") == 5
    for n in range(6):  # and again: what the hub counts is what it holds
        feed(hub, (22 + n, "c", "message", data))
    assert buffered(hub, "c") == 5


def test_events_trimmed_from_the_buffer_are_freed():
    import gc

    from django_realtime.eventlog import Item

    hub = bare_hub(10, buffer_size=4)
    for n in range(27):  # trimmed four times, five events each time
        feed(hub, (11 + n, "trimmed", "message", str(n)))
    gc.collect()
    alive = sum(1 for thing in gc.get_objects() if isinstance(thing, Item) and thing.channel == "trimmed")
    assert alive <= 2 * hub.buffer_size, f"{alive} events of 27 still held by a buffer of {hub.buffer_size}"
    assert buffered(hub, "trimmed") >= hub.buffer_size


def test_a_piece_ends_once_its_data_reaches_piece_bytes():
    from django_realtime.budget import PIECE

    hub = bare_hub(10)
    start = hub.seq
    feed(hub, *[(11 + n, "c", "message", json_of_length(size)) for n, size in enumerate([PIECE // 2] * 2 + [10])])
    assert [item.id for item in hub.collect(frozenset({"c"}), start)[0]] == [11, 12], "PIECE bytes: a piece"
    start = hub.seq
    sizes = [PIECE // 2, PIECE // 2 - 1, 10]
    feed(hub, *[(14 + n, "c", "message", json_of_length(size)) for n, size in enumerate(sizes)])
    assert [item.id for item in hub.collect(frozenset({"c"}), start)[0]] == [14, 15, 16], "a byte short: one more"


def test_a_piece_of_several_channels_cut_by_bytes_ends_at_its_last_event_with_its_cursor():
    from django_realtime.budget import PIECE

    hub = bare_hub(10)
    start = hub.seq
    feed(hub, *[(11 + n, "cd"[n % 2], "message", json_of_length(PIECE // 4)) for n in range(6)])
    items, seq, cursor = hub.collect(frozenset({"c", "d"}), start)
    assert [item.id for item in items] == [11, 12, 13, 14], "PIECE bytes across the two channels"
    assert (seq, cursor) == (items[-1].seq, Cursor(14)), "the caller resumes after the piece's last event"
    items, seq, cursor = hub.collect(frozenset({"c", "d"}), seq)
    assert [item.id for item in items] == [15, 16] and (seq, cursor) == (hub.seq, hub.cursor)


def test_a_cursor_below_a_channels_prune_mark_is_sent_to_the_log():
    hub = bare_hub(10)
    before = hub.cursor
    hub.append([(13, "b", "message", "13")], before, Cursor(13), pruned={"a": 12})  # 11, 12 of "a" deleted
    assert hub.locate(frozenset({"a"}), Cursor(10)) is None, "its events above 10 are not all buffered: a reset"
    assert hub.locate(frozenset({"b"}), Cursor(10)) == 0


def test_locate_looks_past_a_channel_with_nothing_buffered():
    hub = bare_hub(10)
    # Names whose set puts the quiet channel first (the order of a set of str changes with the hash seed).
    busy, quiet = next(
        (busy, quiet)
        for busy in (f"busy{n}" for n in range(20))
        for quiet in (f"quiet{n}" for n in range(20))
        if next(iter(frozenset({busy, quiet}))) == quiet
    )
    channels = frozenset({busy, quiet})
    hub.join(channels)
    feed(hub, (11, busy, "message", "11"), (12, busy, "message", "12"))
    assert hub.locate(channels, Cursor(11)) == 1, "12 arrived after seq 1: the stream must still get it"


def test_rows_from_a_cursor_the_hub_has_moved_past_are_refused_and_change_nothing():
    hub = bare_hub(10)
    assert feed(hub, (11, "a", "message", "11")) is True, "taken: the reader goes on from its cursor"
    state = (hub.seq, hub.cursor)
    assert hub.append([(12, "a", "message", "12")], Cursor(10), Cursor(12)) is False, "read from 10: stale"
    assert (hub.seq, hub.cursor) == state
    assert hub.collect(frozenset({"a"}), 0)[0][-1].id == 11


def test_a_prune_wakes_every_stream_group_of_its_channel():
    hub = bare_hub(10)
    groups = [hub.join(frozenset({"a"})), hub.join(frozenset({"a", "b"}))]
    before = [group.wakeups for group in groups]
    hub.append([], hub.cursor, Cursor(12), pruned={"a": 12})  # 11 and 12 deleted unread
    assert [group.wakeups for group in groups] == [count + 1 for count in before], "each reads the log, and is told"
