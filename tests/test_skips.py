"""GAP_TIMEOUT, where no commit-order rule exists: a skipped id is recorded, and every process and replay agree.

The timeout rule is the one for databases django_realtime knows no rule for
(and for MySQL without the PROCESS privilege); it is tested here on MariaDB,
a real database with concurrent transactions, through ``TimeoutTailer``.
"""

import json
import time
from datetime import timedelta
from functools import partial

import pytest
from django.db import connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_realtime import publish, skips
from django_realtime.cursor import Cursor
from django_realtime.eventlog import Item, read_page
from django_realtime.eventlog.timeout import TimeoutTailer
from django_realtime.models import Event, SkippedIds
from django_realtime.websocket.consumer import event_text
from tests.held import Held as HeldOpen
from tests.held import log_on_mariadb, read_until

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "mysql"])

GAP_TIMEOUT = 0.4

Held = partial(HeldOpen, using="mysql")


@pytest.fixture(autouse=True)
def _log_on_mariadb(settings):
    yield from log_on_mariadb(settings, GAP_TIMEOUT)


def stored_resets():
    return [
        (event.channel, json.loads(event.data_json))
        for event in Event.objects.using("mysql").filter(event="reset").order_by("id")
    ]


def test_the_missing_runs_of_ids_leave_out_present_and_recorded_ones():
    assert skips.missing([2, 3, 7], 0, 9, []) == [(1, 1), (4, 6), (8, 9)]
    assert skips.missing([2, 3, 7], 0, 9, [(4, 5), (9, 12)]) == [(1, 1), (6, 6), (8, 8)]
    assert skips.missing([5], 4, 5, []) == []


def test_a_stepped_over_id_is_recorded_and_another_process_steps_over_it_at_once(settings):
    first = TimeoutTailer("mysql")
    horizon = first.start_horizon()
    held = Held()
    later = publish("c", "later").id
    assert first.read(horizon) == ([], horizon), "the timeout rule holds back behind the gap"
    assert read_until(first, horizon, [later])[0] >= GAP_TIMEOUT
    [(first_id, last_id)] = recorded_runs()  # below held.id: other tests' rows, deleted
    assert last_id == held.id
    # Another process's hub, with a GAP_TIMEOUT it would wait a long time
    # for, takes the record for proof: no wait, the same events.
    settings.REALTIME = {**settings.REALTIME, "GAP_TIMEOUT": 60.0}
    # (Its read is given 10 s, a sixth of that GAP_TIMEOUT: a loaded CI machine is slow, not that slow.)
    read_until(TimeoutTailer("mysql"), horizon, [later], timeout=10.0)
    held.end(commit=False)


def test_an_event_that_commits_after_its_id_was_stepped_over_is_left_out_everywhere_and_resets_its_channel():
    tailer = TimeoutTailer("mysql")
    horizon = tailer.start_horizon()
    held = Held(lambda: publish("late", "held").id)
    later = publish("c", "later").id
    read_until(tailer, horizon, [later])
    held.end(commit=True)  # later than GAP_TIMEOUT: its id is recorded as skipped
    assert Event.objects.using("mysql").filter(id=held.id).exists()

    [(channel, reset)] = stored_resets()
    assert channel == "late"
    assert reset["reason"] == "late" and reset["channels"] == ["late"]
    assert reset["last_event_id"] == str(held.id - 1)
    reset_id = int(reset["resume_id"])
    # Live: the hub that stepped over it delivers the reset, in order, not the late event.
    read_until(tailer, Cursor(later), [reset_id])
    # Replays, from this process's log reads and a new process's hub, agree.
    assert [item.id for item in read_page("mysql", ["late", "c"], horizon.top, reset_id)[0]] == [later, reset_id]
    fresh = TimeoutTailer("mysql")
    read_until(fresh, horizon, [later, reset_id])
    # Over WebSockets the stored reset is a reset message of the channel.
    reset_row = Event.objects.using("mysql").get(id=reset_id)
    message = json.loads(event_text("late", Item(reset_id, "late", "reset", reset_row.data_json)))
    assert message == {
        "type": "reset",
        "channel": "late",
        "reason": "late",
        "last_id": str(held.id - 1),
        "resume_id": str(reset_id),
    }


def test_a_row_that_commits_while_its_run_is_being_recorded_gets_its_reset_from_the_recorder():
    committed = publish("raced", "in time").id  # committed before the record lands, after the read that missed it
    skips.record("mysql", [(committed, committed)])
    assert [channel for channel, _ in stored_resets()] == ["raced"]
    assert read_page("mysql", ["raced"], committed - 1, committed + 10)[0][0].event == "reset"


def test_only_a_long_transaction_is_looked_up_after_commit(settings):
    def lookups(seconds):
        with CaptureQueriesContext(connections["mysql"]) as queries:
            with transaction.atomic(using="mysql"):
                publish("c", "quick")
                time.sleep(seconds)
        return [query["sql"] for query in queries if SkippedIds._meta.db_table in query["sql"]]

    assert lookups(0) == []
    assert len(lookups(GAP_TIMEOUT / 2)) == 1


def age(event_id, minutes=5):
    Event.objects.using("mysql").filter(id=event_id).update(created=timezone.now() - timedelta(minutes=minutes))


def recorded_runs():
    return list(SkippedIds.objects.using("mysql").values_list("first", "last"))


def test_a_hub_that_starts_while_a_publish_is_in_flight_waits_for_it():
    # The ids below an old event (other tests' rows, deleted) are dead by
    # the timeout rule: only the one in flight is waited for.
    age(publish("c", "old").id)
    held = Held()
    later = publish("c", "later").id
    tailer = TimeoutTailer("mysql")
    assert tailer.start_horizon(wait=False) == Cursor(later)
    assert not tailer.settled_start()
    held.end(commit=True)  # within GAP_TIMEOUT
    assert tailer.settled_start()
    assert [item.id for item in read_page("mysql", ["c"], held.id - 1, later)[0]] == [held.id, later]
    assert not skips.covered(held.id, recorded_runs())


def test_a_hub_that_starts_past_an_old_gap_records_it_at_once():
    with transaction.atomic(using="mysql"):
        dead = publish("c", "rolled back").id
        transaction.set_rollback(True, using="mysql")
    later = publish("c", "later").id
    age(later)
    tailer = TimeoutTailer("mysql")
    tailer.start_horizon(wait=False)
    assert tailer.settled_start()
    assert skips.covered(dead, recorded_runs())
    assert not skips.covered(later, recorded_runs())


def test_retention_drops_old_runs_below_every_stored_event_only():
    kept = publish("c", "kept").id
    SkippedIds.objects.using("mysql").bulk_create(
        [
            SkippedIds(first=kept - 3, last=kept - 2, recorded=timezone.now() - timedelta(days=2)),
            SkippedIds(first=kept - 1, last=kept - 1),
            SkippedIds(first=kept + 1, last=kept + 1, recorded=timezone.now() - timedelta(days=2)),
        ]
    )
    assert skips.prune("mysql") == 1
    assert sorted(SkippedIds.objects.using("mysql").values_list("first", flat=True)) == [kept - 1, kept + 1]
