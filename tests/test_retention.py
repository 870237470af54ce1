import re
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

    from tests.support import services

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


RULES = {
    "presence:*": {"MAX_AGE": 60},  # short-lived traffic: a minute
    "chat:vip-?": {"MAX_AGE": None, "MAX_EVENTS_PER_CHANNEL": 1},
    "chat:*": {"MAX_AGE": timedelta(days=30)},
}


def left():
    return sorted(Event.objects.values_list("channel", "data_json"))


def test_retention_per_channel_pattern_the_first_match_rules_and_the_rest_keep_the_settings():
    for channel in ["presence:lobby", "chat:lobby", "chat:vip-1", "other"]:
        for n, delta in enumerate([timedelta(minutes=2), timedelta(days=10), timedelta(days=40)]):
            age(publish(channel, n), seconds=delta.total_seconds())
    publish("presence:lobby", "now")
    with override_settings(REALTIME={"RETENTION": RULES, "MAX_AGE": timedelta(days=7), "MAX_EVENTS_PER_CHANNEL": 5}):
        deleted = prune(grace=0)
    assert left() == [
        ("chat:lobby", "0"),  # chat:* keeps 30 days
        ("chat:lobby", "1"),
        ("chat:vip-1", "2"),  # chat:vip-? comes first, before chat:*: the newest one, however old
        ("other", "0"),  # the settings: 7 days
        ("presence:lobby", '"now"'),  # presence:* keeps a minute
    ]
    assert deleted == {"by_age": 6, "by_count": 2}
    assert set(marks()) == {"presence:lobby", "chat:lobby", "chat:vip-1", "other"}  # resets for clients behind


def test_a_pattern_rules_only_the_channels_it_matches_case_and_all():
    old = [publish("presence:a", 1), publish("PRESENCE:a", 2)]
    for event in old:
        age(event, minutes=2)
    with override_settings(REALTIME={"RETENTION": {"presence:*": {"MAX_AGE": 60}}}):
        assert prune(grace=0) == {"by_age": 1, "by_count": 0}
    assert list(Event.objects.values_list("channel", flat=True)) == ["PRESENCE:a"]  # 7 days, the settings'


def test_prune_events_options_override_the_patterns_and_one_channel_follows_its_pattern():
    events = [publish("presence:a", n) for n in range(3)]
    age(events[0], minutes=2)
    with override_settings(REALTIME={"RETENTION": {"presence:*": {"MAX_AGE": 60, "MAX_EVENTS_PER_CHANNEL": None}}}):
        assert prune(channel="presence:a", grace=0) == {"by_age": 1, "by_count": 0}
        assert prune(channel="presence:a", older_than=None, keep=1, grace=0) == {"by_age": 0, "by_count": 1}


@pytest.mark.parametrize(
    ("pattern", "matching", "other"),
    [
        ("room:[ab]*", "room:b7", "room:c7"),
        ("room:[!ab]?", "room:c7", "room:a7"),
        ("a.b+c*", "a.b+cd", "aXb+cd"),
        ("exact:name", "exact:name", "exact:names"),
        ("presence:*", "presence:a", "PRESENCE:a"),  # SQLite's LIKE ignores ASCII case
    ],
)
def test_patterns_match_in_the_database_as_fnmatch_does(pattern, matching, other):
    publish(matching, 1)
    publish(other, 2)
    found = Event.objects.filter(retention.pattern_filter(pattern)).values_list("channel", flat=True)
    assert list(found) == [matching]


@pytest.mark.parametrize(
    "given",
    [
        [("presence:*", 60)],
        {"presence:*": {"MAX_AGE": "1m"}},
        {"presence:*": {"KEEP": 1}},
        {"presence:*": {"MAX_EVENTS_PER_CHANNEL": -1}},
        {"": {"MAX_AGE": 1}},
    ],
)
def test_a_malformed_retention_setting_is_a_clear_error(given):
    from django.core.exceptions import ImproperlyConfigured

    with override_settings(REALTIME={"RETENTION": given}), pytest.raises(ImproperlyConfigured, match="RETENTION"):
        prune()


@pytest.mark.parametrize(
    "pattern",
    [
        "x[!]",  # an empty set: "[^]" in the database
        "x[z-a]*",  # a range that goes down
        "x[a\\]*",  # a backslash escapes the "]" in the database
        "x[^a]*",  # fnmatch's "^" is a character, the database's a negation
        "x[]a]*",
        "x[a-c-e]",
        "x[ab",
        "chat: lobby",  # no channel holds a space
    ],
)
def test_a_retention_pattern_the_database_cannot_match_as_fnmatch_does_is_refused_at_settings_load(pattern):
    from django.core.exceptions import ImproperlyConfigured

    from django_realtime.conf import realtime_settings

    with override_settings(REALTIME={"RETENTION": {pattern: {"MAX_AGE": 60}}}):
        with pytest.raises(ImproperlyConfigured, match=re.escape(f"RETENTION[{pattern!r}]")):
            realtime_settings.RETENTION  # noqa: B018


def test_retention_patterns_of_channel_characters_and_sets_of_them_load():
    from django_realtime.conf import realtime_settings

    patterns = ["chat:*", "room:[ab]*", "room:[!a-c0-9]?", "a.b+c-d=*", "x?:@/*", "set:[-a]*", "set:[a-]*", "exact"]
    with override_settings(REALTIME={"RETENTION": {pattern: {"MAX_AGE": 60} for pattern in patterns}}):
        assert list(realtime_settings.RETENTION) == patterns


PATTERNS = [
    ("room:[ab]*", "room:b7", "room:c7"),
    ("a.b+c-d=*", "a.b+c-d=e", "aXb+c-d=e"),
    ("x?:@/*", "xy:@/z", "xy:@z"),
    ("presence:*", "presence:a", "PRESENCE:a"),
    ("set:[-a-c]?", "set:-x", "set:dx"),
    ("set:[!-a-c]?", "set:dx", "set:-x"),
]


@pytest.mark.django_db(databases=["default", "postgres", "mysql"])
@pytest.mark.parametrize("alias", ["postgres", "mysql"])
def test_patterns_match_on_postgresql_and_mariadb_as_fnmatch_does(alias):
    for pattern, matching, other in PATTERNS:
        Event.objects.using(alias).bulk_create(
            [Event(channel=matching, data_json="1"), Event(channel=other, data_json="2")]
        )
        found = Event.objects.using(alias).filter(retention.pattern_filter(pattern)).values_list("channel", flat=True)
        assert list(found) == [matching], pattern
        Event.objects.using(alias).all().delete()


@pytest.mark.django_db(databases=["default", "postgres", "mysql"])
@pytest.mark.parametrize("alias", ["default", "postgres", "mysql"])
def test_a_prune_under_a_pattern_the_database_cannot_match_fails_naming_the_pattern(alias):
    from django.core.exceptions import ImproperlyConfigured

    Event.objects.using(alias).bulk_create([Event(channel="x", data_json="1")])
    with override_settings(REALTIME={"RETENTION": {"x[!]": {"MAX_AGE": 60}}}):
        with pytest.raises(ImproperlyConfigured, match=re.escape("RETENTION['x[!]']")):
            prune(using=alias)
    assert Event.objects.using(alias).count() == 1
