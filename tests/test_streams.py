import asyncio
import collections
import json
import re
import threading
import time
import types

import pytest
from django.db import connection, transaction
from django.test import override_settings

from django_realtime import metrics, publish
from django_realtime.budget import FREE, PIECE
from django_realtime.cursor import Cursor
from django_realtime.hub import drain, get_hub
from django_realtime.retention import prune
from django_realtime.sse.responses import event_bytes
from django_realtime.streams import (
    FIRST_ROWS,
    RESUME,
    STAY,
    WRITE,
    Follower,
    Parking,
    _end_of,
    afollow,
    follow,
    reset_item,
)
from tests.test_hub import store_behind_the_hubs_back
from tests.threads import publish_and_close

pytestmark = pytest.mark.django_db(transaction=True)

INPROCESS = {"BACKEND": "inprocess"}


def take(batches, count, timeout=5.0):
    """Take *count* events from a follow() iterator, ignoring keepalives, within *timeout* seconds.

    The deadline is checked between batches: give the iterator a short keepalive.
    """
    deadline = time.monotonic() + timeout
    items = []
    while len(items) < count:
        assert time.monotonic() < deadline, f"{len(items)} of {count} events within {timeout}s: {items}"
        items.extend(next(batches))
    return items


def ready_hub():
    hub = get_hub()
    assert hub.ensure_ready()
    return hub


def test_without_a_cursor_only_live_events_arrive():
    publish("a", "old")
    hub = ready_hub()
    batches = follow(hub, frozenset({"a"}), None, keepalive=0.05)
    assert next(batches) == []  # the stream has started: "now" is the hub's horizon at this moment
    new = publish("a", "new")
    assert [item.id for item in take(batches, 1)] == [new.id]


def test_replay_resumes_after_the_cursor_in_order_then_goes_live():
    ids = [publish("a", n).id for n in range(5)]
    publish("b", "other")
    hub = ready_hub()
    batches = follow(hub, frozenset({"a"}), ids[1], keepalive=5)
    assert [item.id for item in take(batches, 3)] == ids[2:]
    live = publish("a", "live")
    assert [item.id for item in take(batches, 1)] == [live.id]


def test_no_gap_and_no_duplicate_when_events_arrive_during_replay():
    with override_settings(REALTIME={**INPROCESS, "BUFFER_SIZE": 5}):
        ids = [publish("a", n).id for n in range(50)]
        hub = ready_hub()
        batches = follow(hub, frozenset({"a"}), ids[0], keepalive=5)
        got = take(batches, 10)
        stop = threading.Event()
        more = []

        def publisher():
            for n in range(40):
                more.append(publish("a", n).id)
            connection.close()
            stop.set()

        thread = threading.Thread(target=publisher)
        thread.start()
        thread.join(30)
        got += take(batches, 49 + 40 - len(got))
        assert [item.id for item in got] == ids[1:] + more


def test_keepalive_is_an_empty_batch():
    hub = ready_hub()
    batches = follow(hub, frozenset({"a"}), None, keepalive=0.05)
    assert next(batches) == []


def test_events_of_other_channels_do_not_postpone_the_keepalive():
    with override_settings(REALTIME=INPROCESS):
        hub = ready_hub()
        batches = follow(hub, frozenset({"quiet"}), None, keepalive=0.3)
        stop = threading.Event()

        def chatter():
            while not stop.wait(0.02):
                publish("busy", 1)
            connection.close()

        thread = threading.Thread(target=chatter)
        thread.start()
        try:
            assert next(batches) == []
        finally:
            stop.set()
            thread.join(5)


def test_a_cursor_from_the_future_gets_a_reset_then_live_events():
    publish("a", 1)
    hub = ready_hub()
    batches = follow(hub, frozenset({"a"}), 10**12, keepalive=5)
    (reset,) = next(batches)
    assert reset.event == "reset" and reset.id == hub.horizon
    assert json.loads(reset.data_json) == {
        "reason": "unknown",
        "last_event_id": str(10**12),
        "resume_id": str(hub.horizon),
        "channels": ["a"],
    }
    assert f"id: {hub.horizon}\nevent: reset\n".encode() in event_bytes(reset)
    live = publish("a", 2)
    assert [item.id for item in take(batches, 1)] == [live.id]


def test_a_cursor_older_than_the_retained_history_gets_a_reset_then_what_is_left():
    ids = [publish("a", n).id for n in range(5)]
    other = publish("b", "kept")
    prune(older_than=None, grace=0, keep=2)
    hub = ready_hub()
    reset, *rest = next(follow(hub, frozenset({"a", "b"}), ids[0], keepalive=5))
    assert json.loads(reset.data_json) == {
        "reason": "expired",
        "last_event_id": str(ids[0]),
        "resume_id": str(ids[0]),
        "channels": ["a"],
    }
    assert reset.id == ids[0]
    assert [item.id for item in rest] == [ids[3], ids[4], other.id]


def test_a_stream_that_falls_behind_a_prune_is_told_once():
    with override_settings(REALTIME={**INPROCESS, "BUFFER_SIZE": 2}):
        hub = ready_hub()
        start = hub.horizon
        ids = [publish("a", n).id for n in range(12)]
        for _ in range(500):
            if hub.horizon >= ids[-1]:
                break
            time.sleep(0.01)
        prune(older_than=None, grace=0, keep=3)
        batches = follow(hub, frozenset({"a"}), start, keepalive=0.05)
        got = []
        while (batch := next(batches)) != []:
            got += batch
        assert [item.event for item in got].count("reset") == 1
        assert [item.id for item in got if item.event != "reset"] == ids[-3:]


def test_a_cursor_at_the_prune_mark_still_resumes_without_reset():
    ids = [publish("a", n).id for n in range(5)]
    prune(older_than=None, grace=0, keep=2)
    hub = ready_hub()
    items = next(follow(hub, frozenset({"a"}), ids[2], keepalive=5))
    assert [item.id for item in items] == ids[3:]


def test_a_cursor_the_hub_has_not_read_yet_is_not_mistaken_for_an_unknown_one():
    """A client may resume on this process with an id another process already served."""
    with override_settings(REALTIME=INPROCESS):
        hub = ready_hub()
        elsewhere = store_behind_the_hubs_back("a", "elsewhere")  # no wake-up here
        assert hub.horizon < elsewhere.id
        batches = follow(hub, frozenset({"a"}), elsewhere.id, keepalive=5)
        live = publish("a", "live")
        assert [item.id for item in take(batches, 1)] == [live.id]


def test_streams_hold_no_database_connection_while_waiting():
    for n in range(3):
        publish("a", n)
    hub = ready_hub()
    connection.ensure_connection()
    batches = follow(hub, frozenset({"a"}), 0, keepalive=0.05)
    take(batches, 3)
    assert connection.connection is None


def test_afollow_replays_and_goes_live_on_asyncio():
    ids = [publish("a", n).id for n in range(3)]
    hub = ready_hub()

    async def main():
        batches = afollow(hub, frozenset({"a"}), ids[0], keepalive=5)
        got = [item.id for item in await anext(batches)]
        loop = asyncio.get_running_loop()
        live = await loop.run_in_executor(None, publish_and_close, "a", "live")
        while len(got) < 3:
            got += [item.id for item in await anext(batches)]
        await batches.aclose()
        return got, live.id

    got, live = asyncio.run(main())
    assert got == ids[1:] + [live]


def test_afollow_sends_keepalives():
    hub = ready_hub()

    async def main():
        batches = afollow(hub, frozenset({"a"}), None, keepalive=0.05)
        first = await anext(batches)
        await batches.aclose()
        return first

    assert asyncio.run(main()) == []


def test_keepalives_ride_on_the_hubs_ticks_when_they_are_frequent_enough():
    with override_settings(REALTIME={**INPROCESS, "KEEPALIVE": 0.2}):
        hub = ready_hub()
        assert hub.tick == 0.1
        batches = follow(hub, frozenset({"a"}), None, keepalive=0.2)
        started = time.monotonic()
        assert next(batches) == []
        assert next(batches) == []
        assert time.monotonic() - started < 2


def test_a_stream_with_a_lifetime_ends_after_it_and_a_resume_misses_nothing():
    hub = ready_hub()
    start = hub.horizon
    batches = follow(hub, frozenset({"a"}), start, keepalive=5, lifetime=0.5)
    first = publish("a", 1)
    assert [item.id for item in take(batches, 1)] == [first.id]
    started = time.monotonic()
    second = publish("a", 2)  # delivered before the end: a stream ends only with nothing left to send
    rest = [item.id for batch in batches for item in batch]  # runs to the end of the stream
    assert time.monotonic() - started < 2
    assert rest == [second.id]
    third = publish("a", 3)
    resumed = follow(hub, frozenset({"a"}), rest[-1], keepalive=5)
    assert [item.id for item in take(resumed, 1)] == [third.id]


def test_a_stream_whose_lifetime_is_over_before_its_replay_still_sends_the_replay_then_ends():
    """A lifetime ends a stream only once it has nothing more to send: not before its catch-up from the log.

    The stream's client gets no id before the catch-up, so it would come
    back with the same cursor: a stream cut there would send nothing, for ever.
    """
    ids = [publish("a", n).id for n in range(3)]  # before the hub starts: only the log has them
    hub = ready_hub()
    batches = follow(hub, frozenset({"a"}), 0, keepalive=5, lifetime=1e-9)  # over by the first step
    assert [item.id for batch in batches for item in batch] == ids


def test_an_async_stream_whose_lifetime_is_over_before_its_replay_still_sends_the_replay_then_ends():
    ids = [publish("a", n).id for n in range(3)]
    hub = ready_hub()

    async def main():
        batches = afollow(hub, frozenset({"a"}), 0, keepalive=5, lifetime=1e-9)
        return [item.id async for batch in batches for item in batch]

    assert asyncio.run(main()) == ids


def test_an_async_stream_with_a_lifetime_ends_after_it():
    hub = ready_hub()

    async def main():
        started = time.monotonic()
        batches = [batch async for batch in afollow(hub, frozenset({"a"}), None, keepalive=5, lifetime=0.3)]
        return batches, time.monotonic() - started

    batches, took = asyncio.run(main())
    assert batches == [] and 0.25 < took < 2


def test_a_waiting_stream_ends_with_its_parting_when_the_hub_drains():
    hub = ready_hub()
    batches = follow(hub, frozenset({"a"}), hub.horizon, keepalive=5, parting=lambda: "retry")
    first = publish("a", 1)
    assert [item.id for item in take(batches, 1)] == [first.id]
    threading.Timer(0.3, hub.drain).start()  # while the stream waits for its next event
    started = time.monotonic()
    assert list(batches) == ["retry"]
    assert time.monotonic() - started < 2


def test_a_stream_opened_while_the_process_drains_catches_up_then_ends():
    hub = ready_hub()
    start = hub.horizon
    first = publish("a", 1)
    assert hub.fresh_cursor(5) is not None  # the hub has read it: the stream has it to send
    drain()
    rest = list(follow(hub, frozenset({"a"}), start, keepalive=5, parting=lambda: "retry"))
    assert [item.id for item in rest[0]] == [first.id]
    assert rest[1:] == ["retry"]


def test_an_async_stream_opened_while_the_process_drains_catches_up_then_ends_with_its_parting():
    hub = ready_hub()
    start = hub.horizon
    first = publish("a", 1)
    assert hub.fresh_cursor(5) is not None
    drain()

    async def main(parting):
        return [batch async for batch in afollow(hub, frozenset({"a"}), start, keepalive=5, parting=parting)]

    rest = asyncio.run(main(lambda: "retry"))
    assert [item.id for item in rest[0]] == [first.id]
    assert rest[1:] == ["retry"]
    assert len(asyncio.run(main(None))) == 1, "without a parting it just ends"


def test_a_reset_names_the_cursor_to_resume_from_pending_ids_included():
    resume = Cursor(12, ((9, 10),))
    reset = reset_item("expired", Cursor(5), resume, ["a", "b"])
    assert (reset.id, reset.channel, reset.event, reset.cursor) == (12, "", "reset", resume)
    assert reset.cursor_text == "12~9-10", "a resume from the reset still gets 9 and 10 when they commit"
    assert json.loads(reset.data_json) == {
        "reason": "expired",
        "last_event_id": "5",
        "resume_id": "12~9-10",
        "channels": ["a", "b"],
    }


def test_a_cursor_at_the_newest_stored_event_the_hub_has_not_read_yet_gets_no_reset():
    from tests.test_hub import bare_hub

    newest = publish("a", 1)  # stored, and read by another process's hub: this one is still at 10
    hub = bare_hub(min(10, newest.id - 1))
    assert Follower(hub, frozenset({"a"}), Cursor(newest.id), keepalive=None).start() == []
    [reset] = Follower(hub, frozenset({"a"}), Cursor(newest.id + 1), keepalive=None).start()
    assert reset.event == "reset", "above anything the log ever held: a cursor from another database"


def test_a_lifetime_ends_a_stream_after_a_tenth_less_at_most_never_later():
    ends = [_end_of(10.0, 100.0) for _ in range(200)]
    assert all(109.0 <= end <= 110.0 for end in ends)
    assert max(ends) - min(ends) > 0.5, "spread, so that streams opened together do not all end together"


def test_a_hub_made_once_the_process_drains_drains_too():
    drain()  # before this process had a hub: a worker told to stop before its first stream
    assert ready_hub().draining


def test_a_stream_leaves_the_views_connection_once_the_view_has_returned():
    hub = ready_hub()
    with transaction.atomic():  # ATOMIC_REQUESTS: release_connections() in the view skips this connection
        connection.ensure_connection()
        batches = follow(hub, frozenset({"a"}), None, keepalive=0.05, first=b"prelude")
        assert next(batches) == b"prelude"
    assert connection.connection is not None
    assert next(batches) == []
    assert connection.connection is None


def test_events_pruned_before_the_hub_read_them_give_a_reset_not_a_silent_gap():
    with override_settings(REALTIME={**INPROCESS, "KEEPALIVE": 120}):  # the hub reads only when poked
        hub = ready_hub()
        start = hub.horizon
        batches = follow(hub, frozenset({"a"}), start, keepalive=0.2)
        unread = [store_behind_the_hubs_back("a", n) for n in range(3)]  # a hub that is behind
        prune(older_than=None, grace=0, keep=1)  # another process prunes two of them
        hub.poke()
        items = take(batches, 2)
    assert items[0].event == "reset"
    assert json.loads(items[0].data_json)["reason"] == "expired"
    assert [item.id for item in items[1:]] == [unread[2].id]


# Catching up in pieces (django_realtime/budget.py) --------------------------


def test_a_backlog_in_the_buffer_comes_in_pieces_of_about_piece_bytes_and_whole():
    hub = ready_hub()
    start = hub.horizon
    sent = [publish("big", "x" * 10_000).id for _ in range(30)]  # 300 KB
    publish("other", 1)
    wait_until(lambda: hub.horizon > sent[-1])
    batches = follow(hub, frozenset({"big"}), start, keepalive=60)
    pieces = [next(batches) for _ in range(5)]
    assert [len(piece) for piece in pieces] == [7, 7, 7, 7, 2], "64 KiB of data a piece, the crossing event included"
    assert [item.id for piece in pieces for item in piece] == sent, "in order, none twice, none lost"
    batches.close()


def test_pieces_of_several_channels_are_cut_in_id_order_and_lose_nothing():
    hub = ready_hub()
    start = hub.horizon
    sizes = [30_000, 1_000, 5_000, 40_000, 200]
    sent = [publish(f"c{n % 3}", "x" * sizes[n % len(sizes)]).id for n in range(40)]
    wait_until(lambda: hub.horizon >= sent[-1])
    batches = follow(hub, frozenset({"c0", "c1", "c2"}), start, keepalive=60)
    got = []
    while len(got) < len(sent):
        piece = next(batches)
        assert sum(len(item.data_json) for item in piece[:-1]) < 64 * 1024, "no piece goes on past PIECE bytes"
        got += [item.id for item in piece]
    assert got == sent
    batches.close()


def test_a_backlog_read_from_the_log_comes_in_pieces_too():
    sent = [publish("old", "y" * 10_000).id for _ in range(30)]
    hub = ready_hub()  # starts after them: they are only in the log
    batches = follow(hub, frozenset({"old"}), sent[0] - 1, keepalive=60)
    pieces = [next(batches) for _ in range(5)]
    assert [item.id for piece in pieces for item in piece] == sent
    assert max(len(piece) for piece in pieces) <= 7
    batches.close()


def test_a_stream_waits_for_the_memory_budget_and_then_goes_on():
    hub = ready_hub()
    start = hub.horizon
    sent = [publish("big", "x" * 20_000).id for _ in range(8)]
    wait_until(lambda: hub.horizon >= sent[-1])
    hub.budget.take(hub.budget.total, timeout=0)  # every byte lent elsewhere
    got = []
    thread = threading.Thread(target=lambda: got.extend(next(follow(hub, frozenset({"big"}), start, 60))))
    thread.start()
    thread.join(0.3)
    assert thread.is_alive() and not got, "the piece is not built while the budget is spent"
    hub.budget.give(hub.budget.total)
    thread.join(5)
    assert [item.id for item in got] == sent[:4]
    assert hub.budget.lent == 0


def test_a_stream_whose_wait_for_the_budget_times_out_ends_cleanly():
    hub = ready_hub()
    hub.read_timeout = 0.2
    start = hub.horizon
    publish("big", "x" * 20_000)
    publish("big", "x" * 20_000)
    wait_until(lambda: hub.horizon > start + 1)
    hub.budget.take(hub.budget.total, timeout=0)
    assert list(follow(hub, frozenset({"big"}), start, 60)) == [], "it ends; its client resumes later"
    hub.budget.give(hub.budget.total)


def test_follow_pays_for_its_log_reads_and_gives_back_what_it_held():
    sent = [publish("big", "x" * 20_000).id for _ in range(8)]  # before the hub: a catch-up from the log
    hub = ready_hub()
    stream = follow(hub, frozenset({"big"}), 0, keepalive=0.05)
    got = next(stream)
    held = hub.budget.lent
    got += next(stream)
    assert next(stream) == [], "a keepalive: the stream went round once more, holding nothing"
    stream.close()
    assert [item.id for item in got] == sent
    assert held > 0, "the read's bytes, lent until the server took the piece"
    assert hub.budget.lent == 0


def test_a_stream_marks_the_chunk_the_server_holds_and_clears_the_mark_while_it_waits():
    hub = ready_hub()
    mark = types.SimpleNamespace(since=0.0)
    batches = follow(hub, frozenset({"a"}), None, keepalive=60, first="hello", write=mark)
    before = time.monotonic()
    assert next(batches) == "hello"
    assert before <= mark.since <= time.monotonic(), "held since it was handed over"
    for _ in range(2):
        got = []
        waiting = threading.Thread(target=lambda got=got: got.extend(next(batches)), daemon=True)
        waiting.start()
        wait_until(lambda: mark.since == 0.0)  # taken by the server: the stream waits, nothing held
        before = time.monotonic()
        event = publish("a", 1)
        waiting.join(5)
        assert [item.id for item in got] == [event.id]
        assert before <= mark.since <= time.monotonic()
    batches.close()


def test_a_stream_from_below_the_hubs_floor_on_a_quiet_channel_waits_after_its_catch_up():
    """A catch-up that finds nothing of the stream's channels does not end it: its client would come
    back with the same cursor, catch up to nothing and be ended again, for as long as the channel is quiet."""
    publish("other", 1)  # before the hub: the hub's floor is above cursor 0
    hub = ready_hub()

    async def main():
        stream = afollow(hub, frozenset({"quiet"}), 0, keepalive=0.05)
        got = [await anext(stream) for _ in range(2)]
        await stream.aclose()
        return got

    assert asyncio.run(main()) == [[], []], "keepalives: the stream goes on"
    batches = follow(hub, frozenset({"quiet"}), 0, keepalive=0.05)
    assert next(batches) == [] and next(batches) == []
    event = publish("quiet", 1)
    assert [item.id for item in take(batches, 1)] == [event.id]


def test_a_stream_with_a_lifetime_keeps_its_keepalives_and_ends_with_a_coarse_one_too():
    hub = ready_hub()
    fine = list(follow(hub, frozenset({"a"}), None, keepalive=0.05, lifetime=0.5))
    assert len(fine) >= 3 and not any(fine), "keepalives every 0.05 s until the end, not one at the end"
    started = time.monotonic()
    assert list(follow(hub, frozenset({"a"}), None, keepalive=60, lifetime=0.3)) == []
    assert time.monotonic() - started < 2


def test_afollow_pays_for_its_pieces_and_gives_back_what_it_held():
    hub = ready_hub()
    start = hub.horizon
    sent = [publish("big", "x" * 20_000).id for _ in range(8)]
    wait_until(lambda: hub.horizon >= sent[-1])

    async def main():
        stream = afollow(hub, frozenset({"big"}), start, 60)
        first = await stream.__anext__()
        held = hub.budget.lent
        second = await stream.__anext__()
        await stream.aclose()
        return first, held, second

    first, held, second = asyncio.run(main())
    assert [item.id for item in first + second] == sent
    assert held == 4 * len(json.dumps("x" * 20_000)), "the first piece's bytes, lent until the server took it"
    assert hub.budget.lent == 0


def wait_until(check, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline
        time.sleep(0.01)


# The asyncio driver, case by case as the threads' one ------------------------------------


def test_afollow_gives_a_cursor_from_the_future_a_reset_then_live_events():
    publish("a", 1)
    hub = ready_hub()

    async def main():
        batches = afollow(hub, frozenset({"a"}), 10**12, keepalive=5)
        first = await anext(batches)
        live = await asyncio.get_running_loop().run_in_executor(None, publish_and_close, "a", 2)
        second = await anext(batches)
        await batches.aclose()
        return first, second, live

    (reset,), second, live = asyncio.run(main())
    assert reset.event == "reset" and json.loads(reset.data_json)["reason"] == "unknown"
    assert [item.id for item in second] == [live.id]


def test_afollow_reads_a_backlog_from_the_log_in_pieces_and_gives_back_every_byte_it_held():
    sent = [publish("old", "y" * 10_000).id for _ in range(30)]
    hub = ready_hub()  # starts after them: they are only in the log

    async def main():
        batches = afollow(hub, frozenset({"old"}), sent[0] - 1, keepalive=0.05)
        got = []
        while len(got) < len(sent):
            got += [item.id for item in await anext(batches)]
        live = await asyncio.get_running_loop().run_in_executor(None, publish_and_close, "old", "small")
        while live.id not in got:  # a piece too small to pay for
            got += [item.id for item in await anext(batches)]
        assert await anext(batches) == []  # a keepalive: the stream went round once more
        await batches.aclose()
        return got, live.id

    got, live = asyncio.run(main())
    assert got == sent + [live]
    assert hub.budget.lent == 0


def test_afollow_ends_at_an_event_it_cannot_encode_after_sending_those_before_it():
    hub = ready_hub()
    start = hub.horizon
    ids = [publish("a", data).id for data in ("ok", "bad", "after")]
    wait_until(lambda: hub.horizon >= ids[-1])

    def encode(batch):
        if any(item.data_json == '"bad"' for item in batch):
            raise ValueError("cannot be encoded")
        return [item.id for item in batch]

    async def main():
        return [chunk async for chunk in afollow(hub, frozenset({"a"}), start, keepalive=5, encode=encode)]

    assert asyncio.run(main()) == [[ids[0]]]


def published_and_buffered(hub, *data):
    ids = [publish("a", value).id for value in data]
    wait_until(lambda: hub.horizon >= ids[-1])
    return ids


def encoder(refuse):
    """Return an encoder of batches to their ids that raises for a batch *refuse* says no to."""

    def encode(batch):
        if refuse(batch):
            raise ValueError("cannot be encoded")
        return [item.id for item in batch]

    return encode


def test_a_stream_ends_at_an_event_it_cannot_encode_and_logs_which(caplog):
    hub = ready_hub()
    start = hub.horizon
    ids = published_and_buffered(hub, "ok", "bad", "after")
    encode = encoder(lambda batch: any(item.data_json == '"bad"' for item in batch))
    assert list(follow(hub, frozenset({"a"}), start, keepalive=5, encode=encode)) == [[ids[0]]]
    (record,) = [record for record in caplog.records if "cannot be encoded" in record.getMessage()]
    assert record.getMessage() == f"django_realtime ends a stream at event {ids[1]} of a: it cannot be encoded"
    assert isinstance(record.exc_info[1], ValueError), "the encoder's error is logged with its traceback"


def test_a_stream_whose_first_event_of_a_batch_cannot_be_encoded_sends_nothing_more():
    hub = ready_hub()
    start = hub.horizon
    published_and_buffered(hub, "bad", "after")
    encode = encoder(lambda batch: any(item.data_json == '"bad"' for item in batch))
    assert list(follow(hub, frozenset({"a"}), start, keepalive=5, encode=encode)) == [], "not even an empty chunk"


def test_a_batch_whose_events_each_encode_after_all_is_sent_whole_and_the_stream_ends():
    """An encoder that fails once (a transient error): the events, each found encodable, go as one batch."""
    hub = ready_hub()
    start = hub.horizon
    ids = published_and_buffered(hub, "one", "two")
    failures = [ValueError("once")]

    def refuse(batch):
        return len(batch) > 1 and bool(failures) and bool(failures.pop())

    got = list(follow(hub, frozenset({"a"}), start, keepalive=5, encode=encoder(refuse)))
    assert got == [ids]


def test_a_catch_up_is_not_reset_by_a_prune_of_another_channel():
    from django_realtime.models import PruneMark

    hub = ready_hub()
    start = hub.horizon
    ids = published_and_buffered(hub, "one", "two")
    PruneMark.objects.create(channel="b", pruned_through=ids[-1])
    follower = Follower(hub, frozenset({"a"}), Cursor(start), keepalive=None)
    got = [(item.id, item.channel, item.event, item.data_json) for item in follower.catch_up()]
    assert got == [(ids[0], "a", "message", '"one"'), (ids[1], "a", "message", '"two"')], "no reset: the events"


def test_a_catch_up_sends_what_the_hubs_cursor_covers_with_its_pending_ids_in_each_cursor():
    from tests.test_hub import bare_hub, feed

    ids = [publish("a", n).id for n in range(3)]
    hub = bare_hub(ids[0] - 1)
    feed(hub, (ids[0], "a", "message", "0"), (ids[2], "a", "message", "2"))  # the middle one still in flight
    follower = Follower(hub, frozenset({"a"}), Cursor(ids[0] - 1), keepalive=None)
    got = [(item.id, item.cursor_text) for item in follower.catch_up()]
    assert got == [(ids[0], str(ids[0])), (ids[2], f"{ids[2]}~{ids[1]}")], (
        "a resume from the last still gets the middle"
    )


def test_a_catch_up_tells_of_a_prune_once_and_goes_on_reading():
    from django_realtime.models import PruneMark

    hub = ready_hub()
    ids = published_and_buffered(hub, *range(FIRST_ROWS + 3))
    PruneMark.objects.create(channel="a", pruned_through=ids[0])  # the first deleted, unread by the client
    follower = Follower(hub, frozenset({"a"}), Cursor(ids[0] - 1), keepalive=None)
    first, second = follower.catch_up(), follower.catch_up()
    assert [item.event for item in first].count("reset") == 1 and first[0].event == "reset"
    assert [item.id for item in first[1:] + second] == ids, "told once; every event still stored after it"


def catch_up_lengths(hub, cursor):
    """Return how many events each catch-up of a stream from *cursor* reads, until it has the hub's cursor."""
    follower = Follower(hub, frozenset({"a"}), cursor, keepalive=None)
    lengths = []
    for _ in range(8):
        lengths.append(len(follower.catch_up()))
        if follower.seq is not None:  # it has all the hub's cursor covers: on from the hub's arrivals
            return lengths
    raise AssertionError(f"not caught up after 8 catch-ups of {lengths} events")


def test_a_catch_up_doubles_its_rows_while_pieces_fill_by_rows():
    hub = ready_hub()
    start = hub.horizon
    published_and_buffered(hub, *range(FIRST_ROWS * 4))
    assert catch_up_lengths(hub, Cursor(start)) == [FIRST_ROWS, 2 * FIRST_ROWS, FIRST_ROWS]


def test_a_catch_up_asks_for_the_rows_that_filled_a_piece_by_bytes_then_doubles():
    hub = ready_hub()
    start = hub.horizon
    published_and_buffered(hub, "x" * PIECE, *range(6))
    assert catch_up_lengths(hub, Cursor(start)) == [1, 1, 2, 3]


def test_afollow_whose_wait_for_the_budget_times_out_ends_cleanly_and_says_where(caplog):
    hub = ready_hub()
    hub.read_timeout = 0.2
    start = hub.horizon
    publish("big", "x" * 20_000)
    publish("big", "x" * 20_000)
    wait_until(lambda: hub.horizon > start + 1)
    hub.budget.take(hub.budget.total, timeout=0)

    async def main():
        return [batch async for batch in afollow(hub, frozenset({"big", "also"}), start, 60)]

    assert asyncio.run(main()) == [], "it ends; its client resumes later"
    hub.budget.give(hub.budget.total)
    assert re.search(
        r"ends a stream of also, big at [0-9~,-]+: the event log cannot be read, or no memory", caplog.text
    )
    (record,) = [record for record in caplog.records if "ends a stream of" in record.getMessage()]
    assert record.exc_info and record.exc_info[0] is not None, "the log says why: the database's error"


def _arrived(hub, seq, timeout=5.0):
    """Wait until the hub has taken in events after *seq*."""
    deadline = time.monotonic() + timeout
    while hub.seq <= seq:
        assert time.monotonic() < deadline, "the event did not reach the hub"
        time.sleep(0.01)


@override_settings(REALTIME=INPROCESS)
def test_a_parked_streams_wake_ups_deliver_the_plain_case_and_hand_the_rest_back():
    """Caught up, follow() yields its Parking; a wake-up writes a small batch or a keepalive itself, and hands a
    piece that needs the budget back to the loop, which delivers it first."""
    hub = ready_hub()
    parking = Parking()
    parking.enabled = True
    batches = follow(hub, frozenset({"a"}), None, keepalive=60, parking=parking)
    assert next(batches) is parking, "a caught-up stream under a server that parks waits parked"
    assert parking.wake(time.monotonic(), {}) == (STAY, None)
    seq = hub.seq
    small = publish("a", "small")
    _arrived(hub, seq)
    action, batch = parking.wake(time.monotonic(), {})
    assert action == WRITE and [item.id for item in batch] == [small.id]
    assert parking.wake(time.monotonic(), {}) == (STAY, None), "a written batch is not written again"
    seq = hub.seq
    large = publish("a", "x" * (FREE + 1))
    _arrived(hub, seq)
    action, batch = parking.wake(time.monotonic(), {})
    assert action == RESUME and [item.id for item in batch] == [large.id]
    assert [item.id for item in batches.send(batch)] == [large.id], "the loop delivers the batch handed back"
    assert next(batches) is parking
    action, keepalive = parking.wake(time.monotonic() + 61, {})
    assert (action, keepalive) == (WRITE, [])


def _parked(hub, channels, encode, count):
    """Return *count* streams of *channels*, each its follow() iterator and its Parking, parked (caught up)."""
    streams = []
    for _ in range(count):
        parking = Parking()
        parking.enabled = True
        batches = follow(hub, channels, None, keepalive=60, encode=encode, parking=parking)
        assert next(batches) is parking
        streams.append((batches, parking))
    return streams


@override_settings(REALTIME=INPROCESS)
def test_the_parked_streams_of_a_group_at_one_seq_share_one_batch_encoded_once_and_each_is_counted():
    """One wake-up of a group: the first stream collects and encodes, the others at its seq take its chunk, and
    each moves on as if it had made it (the next wake-up brings each the next event, once)."""
    hub = ready_hub()
    encoded = []

    def encode(batch):
        encoded.append([item.id for item in batch])
        return b"".join(b"id:%d\n" % item.id for item in batch)

    sent = collections.deque()
    counted = metrics.Counted(encode, sent)
    streams = _parked(hub, frozenset({"a"}), counted, 3)
    seq = hub.seq
    first = publish("a", "one")
    _arrived(hub, seq)
    shared = {}
    chunks = [parking.wake(time.monotonic(), shared) for _, parking in streams]
    assert chunks == [(WRITE, b"id:%d\n" % first.id)] * 3
    assert len({id(chunk) for _, chunk in chunks}) == 1, "the same bytes, made once"
    assert encoded == [[first.id]], "encoded once for the group"
    assert list(sent) == [(1, len(chunks[0][1]))] * 3, "counted as written for each stream"
    assert {parking.follower.seq for _, parking in streams} == {hub.seq}
    assert {parking.follower.cursor for _, parking in streams} == {hub.cursor}
    seq = hub.seq
    second = publish("a", "two")
    _arrived(hub, seq)
    shared = {}
    assert [parking.wake(time.monotonic(), shared) for _, parking in streams] == [(WRITE, b"id:%d\n" % second.id)] * 3
    assert [parking.wake(time.monotonic(), {}) for _, parking in streams] == [(STAY, None)] * 3, "nothing twice"


@override_settings(REALTIME=INPROCESS)
def test_a_parked_stream_takes_no_batch_made_before_the_hub_changed_or_one_its_start_cursor_filters():
    hub = ready_hub()
    (_, early), (_, late), (_, started) = _parked(hub, frozenset({"a"}), _batch_ids, 3)
    seq = hub.seq
    first = publish("a", "one")
    _arrived(hub, seq)
    # A stream that started from a client's cursor sends only what that cursor does not cover: its own batch.
    started.follower.start_at = Cursor(first.id)
    shared = {}
    assert early.wake(time.monotonic(), shared) == (WRITE, [first.id])
    assert started.wake(time.monotonic(), shared) == (STAY, None), "its cursor covers the event: nothing to send"
    seq = hub.seq
    second = publish("a", "two")
    _arrived(hub, seq)
    # Same seq as the batch made before the event arrived, but the hub has changed: collect again.
    assert late.wake(time.monotonic(), shared) == (WRITE, [first.id, second.id])


def _batch_ids(batch):
    return [item.id for item in batch]


@override_settings(REALTIME=INPROCESS)
def test_a_parked_stream_is_handed_back_at_the_drain_and_near_its_lifetimes_end():
    hub = ready_hub()
    parking = Parking()
    parking.enabled = True
    batches = follow(hub, frozenset({"a"}), None, keepalive=60, lifetime=600, parking=parking, first=b"")
    assert next(batches) == b""
    assert next(batches) is parking
    now = time.monotonic()
    assert parking.wake(now, {}) == (STAY, None)
    assert parking.wake(parking.end - 2 * hub.tick, {}) == (RESUME, None), "parked past the time its wait would end it"
    drain()
    assert parking.wake(now, {}) == (RESUME, None)
    assert next(batches, None) is None, "the loop the drain resumes does not end (no parting here)"


@override_settings(REALTIME=INPROCESS)
def test_a_stream_whose_server_does_not_park_never_yields_its_parking():
    hub = ready_hub()
    parking = Parking()  # -k gevent, threads: never enabled
    batches = follow(hub, frozenset({"a"}), None, keepalive=60, parking=parking)
    got = []
    waiter = threading.Thread(target=lambda: got.append(next(batches)))
    waiter.start()
    time.sleep(0.2)  # into its wait
    item = publish("a", "live")
    waiter.join(5)
    assert got and got[0] is not parking, "a stream its server does not park yielded its Parking"
    assert [event.id for event in got[0]] == [item.id]
