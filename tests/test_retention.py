import time
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from django_realtime import publish, retention
from django_realtime.models import Event, PruneMark
from django_realtime.retention import prune

pytestmark = pytest.mark.django_db


def age(event, **delta):
    Event.objects.filter(pk=event.pk).update(created=timezone.now() - timedelta(**delta))


def marks():
    return dict(PruneMark.objects.values_list("channel", "pruned_through"))


def test_prune_by_age_deletes_old_events_and_marks_their_channels():
    old_a, old_b = publish("a", 1), publish("b", 1)
    fresh = publish("a", 2)
    age(old_a, days=2)
    age(old_b, hours=25)
    assert prune(older_than=timedelta(days=1), keep=None) == {"by_age": 2, "by_count": 0}
    assert list(Event.objects.values_list("id", flat=True)) == [fresh.id]
    assert marks() == {"a": old_a.id, "b": old_b.id}


def test_prune_by_count_keeps_the_newest_n_of_each_channel():
    a = [publish("a", n).id for n in range(5)]
    b = [publish("b", n).id for n in range(2)]
    assert prune(older_than=None, grace=0, keep=2) == {"by_age": 0, "by_count": 3}
    assert sorted(Event.objects.values_list("id", flat=True)) == sorted(a[3:] + b)
    assert marks() == {"a": a[2]}


def test_prune_one_channel_only():
    a = [publish("a", n).id for n in range(3)]
    b = [publish("b", n).id for n in range(3)]
    prune(older_than=None, grace=0, keep=0, channel="a")
    assert sorted(Event.objects.values_list("id", flat=True)) == b
    assert marks() == {"a": a[-1]}


def test_prune_works_in_batches_and_marks_never_go_down(monkeypatch):
    monkeypatch.setattr(retention, "SQLITE_BATCH", 3)  # the tests log is on SQLite
    ids = [publish("a", n).id for n in range(10)]
    assert prune(older_than=None, grace=0, keep=1)["by_count"] == 9
    assert marks() == {"a": ids[8]}
    PruneMark.objects.filter(channel="a").update(pruned_through=10**9)
    publish("a", "x")
    prune(older_than=None, grace=0, keep=1)
    assert marks() == {"a": 10**9}


def test_prune_defaults_to_the_retention_settings():
    events = [publish("a", n) for n in range(4)]
    age(events[0], days=8)
    with override_settings(REALTIME={"MAX_EVENTS_PER_CHANNEL": 2}):
        assert prune(grace=0) == {"by_age": 1, "by_count": 1}
    with override_settings(REALTIME={"MAX_AGE": None, "MAX_EVENTS_PER_CHANNEL": None}):
        assert prune(grace=0) == {"by_age": 0, "by_count": 0}


@pytest.mark.django_db(transaction=True, databases=["default", "postgres"])
def test_one_process_of_the_deployment_prunes_at_a_time_on_postgresql():
    import threading

    from django.db import connections

    from tests import services

    services.require(services.POSTGRES, "PostgreSQL")
    results = []

    def other_process():
        try:
            with retention.pruning_lock("postgres") as got:
                results.append(got)
        finally:
            connections["postgres"].close()

    with retention.pruning_lock("postgres") as got:
        assert got
        thread = threading.Thread(target=other_process)
        thread.start()
        thread.join(10)
    assert results == [False]
    thread = threading.Thread(target=other_process)
    thread.start()
    thread.join(10)
    assert results == [False, True]
    connections["postgres"].close()


@pytest.mark.django_db(transaction=True)
def test_each_process_prunes_on_a_thread_of_its_own_not_the_hubs_reader():
    from django_realtime.hub import get_hub

    with override_settings(REALTIME={"PRUNE_INTERVAL": 0.2, "MAX_EVENTS_PER_CHANNEL": 1}):
        age(publish("a", 1), minutes=2)
        publish("a", 2)
        hub = get_hub()
        assert hub.ensure_ready()
        pruner = hub._pruner
        for _ in range(100):
            if pruner.runs:
                break
            time.sleep(0.05)
        assert pruner.runs
        assert Event.objects.filter(channel="a").count() == 1
        assert pruner._thread is not hub._reader.thread


def test_count_retention_spares_events_younger_than_the_grace():
    events = [publish("a", n) for n in range(4)]
    assert prune(older_than=None, keep=1)["by_count"] == 0  # none is a minute old: other hubs may not have read them
    age(events[0], seconds=61)
    age(events[1], seconds=61)
    assert prune(older_than=None, keep=1)["by_count"] == 2
    assert list(Event.objects.values_list("id", flat=True)) == [events[2].id, events[3].id]
