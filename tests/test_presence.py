"""Presence in one process: members, their events, the snapshot's cursor, the heartbeat and the reaping of the dead."""

import json
import threading
import time
from datetime import timedelta
from functools import partial

import pytest
from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_realtime import publish
from django_realtime.exceptions import InvalidEventName
from django_realtime.hub import get_hub
from django_realtime.models import Event, PresenceMember, PresenceProcess
from django_realtime.presence import JOIN, LEAVE, PresenceRefused, Registry, get_registry

pytestmark = pytest.mark.django_db(transaction=True)

ANONYMOUS = AnonymousUser()


def realtime(**overrides):
    return override_settings(REALTIME={**settings.REALTIME, **overrides})


def presence_events(channel="room"):
    return [(row.event, row.data) for row in Event.objects.filter(channel=channel).order_by("id")]


def test_a_join_stores_the_member_and_its_join_event_in_one_go():
    member = get_registry().join(ANONYMOUS, "room", "ada", {"colour": "red"})
    assert member.user == "ada"
    assert PresenceMember.objects.get().connection == member.connection
    assert presence_events() == [(JOIN, {"connection": member.connection, "user": "ada", "info": {"colour": "red"}})]


def test_a_leave_deletes_the_member_and_stores_its_leave_event_once():
    registry = get_registry()
    member = registry.join(ANONYMOUS, "room", "ada")
    registry.leave(member)
    registry.leave(member)  # twice: nothing more
    assert not PresenceMember.objects.exists()
    assert presence_events()[1:] == [(LEAVE, {"connection": member.connection, "user": "ada"})]


def test_the_snapshot_lists_the_members_of_a_channel_with_a_cursor_that_covers_their_joins():
    registry = get_registry()
    assert get_hub().ensure_ready()
    ada = registry.join(ANONYMOUS, "room", "ada")
    registry.join(ANONYMOUS, "elsewhere", "bob")
    hub = get_hub()
    hub.poke()
    joined = Event.objects.get(channel="room").id
    deadline = timezone.now() + timedelta(seconds=5)
    while hub.horizon < joined:
        assert timezone.now() < deadline, "the hub did not read the join"
        hub.wait_poke(0.05)
    cursor, members = registry.snapshot("room")
    assert cursor.covers(joined)
    assert members == [{"connection": ada.connection, "user": "ada", "info": {}}]


def test_a_signed_in_user_is_present_as_their_username_whatever_name_they_give():
    user = User.objects.create_user("grace")
    assert get_registry().join(user, "room", "not grace").user == "grace"


@pytest.mark.parametrize(
    ("name", "info", "code"),
    [
        (None, None, "bad_message"),  # anonymous, no name
        ("", None, "bad_message"),
        ("   ", None, "bad_message"),
        ("x" * 101, None, "bad_message"),
        ("a\nb", None, "bad_message"),
        ("a\x00b", None, "bad_message"),
        (7, None, "bad_message"),
        ("ada", [1, 2], "bad_message"),
        ("ada", "text", "bad_message"),
        ("ada", {"big": "x" * 2000}, "too_large"),
    ],
)
def test_a_bad_name_or_info_is_refused_and_nothing_is_written(name, info, code):
    with pytest.raises(PresenceRefused) as refused:
        get_registry().join(ANONYMOUS, "room", name, info)
    assert refused.value.code == code
    assert not PresenceMember.objects.exists() and not Event.objects.exists()


def refuse_everyone(user, channel, name):
    raise PresenceRefused("forbidden", "no presence here")


def test_the_identity_hook_decides_who_one_is_present_as():
    with realtime(PRESENCE_IDENTITY=refuse_everyone):
        with pytest.raises(PresenceRefused, match="no presence here"):
            get_registry().join(ANONYMOUS, "room", "ada")
    with realtime(PRESENCE_IDENTITY=lambda user, channel, name: f"guest-{name}"):
        assert get_registry().join(ANONYMOUS, "room", "ada").user == "guest-ada"


def present_with_server_info(user, channel, name):
    """A hook that sets info keys of its own: who the member is, as the server knows it."""
    return {"user": f"guest-{name}", "info": {"pk": None, "role": "guest"}}


def test_the_identity_hooks_info_keys_win_over_the_clients_and_the_others_stay():
    with realtime(PRESENCE_IDENTITY=present_with_server_info):
        member = get_registry().join(ANONYMOUS, "room", "ada", {"pk": 7, "colour": "red"})
    assert member.user == "guest-ada"
    expected = {
        "connection": member.connection,
        "user": "guest-ada",
        "info": {"pk": None, "colour": "red", "role": "guest"},
    }
    assert presence_events() == [(JOIN, expected)]
    _cursor, members = get_registry().snapshot("room")
    assert members == [expected]


def test_the_identity_hook_sets_its_info_keys_when_the_client_gave_no_info():
    with realtime(PRESENCE_IDENTITY=present_with_server_info):
        member = get_registry().join(ANONYMOUS, "room", "ada")
    assert json.loads(member.info_json) == {"pk": None, "role": "guest"}


def test_the_merged_info_is_bounded_by_presence_max_info():
    big = {"user": "ada", "info": {"motto": "y" * 600}}
    with realtime(PRESENCE_IDENTITY=lambda user, channel, name: big):
        with pytest.raises(PresenceRefused) as refused:
            get_registry().join(ANONYMOUS, "room", "ada", {"about": "x" * 600})
    assert refused.value.code == "too_large"
    assert not PresenceMember.objects.exists() and not Event.objects.exists()


@pytest.mark.parametrize(
    "returned",
    [
        {"info": {"pk": 1}},  # no user
        {"user": None},
        {"user": 7},
        {"user": "ada", "info": [1]},
        {"user": "ada", "info": "pk=1"},
        {"user": "ada", "info": {1: "pk"}},  # JSON would make the key "1": a client's "1" would win
        {"user": "ada", "infos": {"pk": 1}},  # a typo must not pass for "no info"
        {"user": "ada", "info": {"pk": {1, 2}}},  # not JSON: the hook's fault, not the client's
        ["ada"],
    ],
)
def test_an_identity_hook_that_returns_no_valid_identity_refuses_the_join_and_says_why_in_the_log(returned, caplog):
    with realtime(PRESENCE_IDENTITY=lambda user, channel, name: returned):
        with pytest.raises(PresenceRefused) as refused:
            get_registry().join(ANONYMOUS, "room", "ada", {"pk": 1})
    assert refused.value.code == "forbidden"
    assert "PRESENCE_IDENTITY" in caplog.text and "returned" in caplog.text
    assert repr(returned) not in refused.value.message, "what the hook returned is for the log, not for the client"
    assert not PresenceMember.objects.exists() and not Event.objects.exists()


@pytest.mark.parametrize("event", [JOIN, LEAVE])
def test_publish_refuses_the_presence_event_names(event):
    with pytest.raises(InvalidEventName, match="reserved"):
        publish("room", {"connection": "forged"}, event=event)


def test_a_timeout_under_twice_the_heartbeat_is_refused():
    from django.core.exceptions import ImproperlyConfigured

    with realtime(PRESENCE_HEARTBEAT=10, PRESENCE_TIMEOUT=15), pytest.raises(ImproperlyConfigured, match="twice"):
        get_registry().join(ANONYMOUS, "room", "ada")


def age(key, seconds):
    PresenceProcess.objects.filter(key=key).update(seen=timezone.now() - timedelta(seconds=seconds))


@pytest.fixture
def other():
    """The registry of another process; stopped after the test, else its heartbeat brings its members back later."""
    registry = Registry("default")
    yield registry
    registry.stop()


def test_the_members_of_a_dead_process_drop_out_of_the_snapshot_at_once_and_leave_at_the_next_reap(other):
    dead, alive = other, get_registry()
    gone = dead.join(ANONYMOUS, "room", "ada")
    stays = alive.join(ANONYMOUS, "room", "bob")
    age(dead.key, 46)  # PRESENCE_TIMEOUT is 45 s
    assert [member["user"] for member in alive.snapshot("room")[1]] == ["bob"]
    assert alive.reap() == 1
    assert alive.reap() == 0  # once
    assert list(PresenceMember.objects.values_list("connection", flat=True)) == [stays.connection]
    assert not PresenceProcess.objects.filter(key=dead.key).exists()
    assert presence_events()[-1] == (LEAVE, {"connection": gone.connection, "user": "ada"})


def test_a_live_process_is_never_reaped():
    registry = get_registry()
    registry.join(ANONYMOUS, "room", "ada")
    age(registry.key, 44)
    assert registry.reap() == 0


def test_a_process_taken_for_dead_joins_its_members_again_at_its_next_heartbeat(other):
    registry = get_registry()
    member = registry.join(ANONYMOUS, "room", "ada")
    age(registry.key, 60)  # a database outage longer than PRESENCE_TIMEOUT
    other.reap()
    assert not PresenceMember.objects.exists()
    registry.beat()
    assert PresenceMember.objects.get().connection == member.connection
    assert [event for event, _ in presence_events()] == [JOIN, LEAVE, JOIN]


def test_a_join_in_a_process_taken_for_dead_brings_back_its_other_members_too(other):
    registry = get_registry()
    first = registry.join(ANONYMOUS, "room", "ada")
    age(registry.key, 60)
    other.reap()
    second = registry.join(ANONYMOUS, "room", "bob")
    assert set(PresenceMember.objects.values_list("connection", flat=True)) == {first.connection, second.connection}


def writes(queries):
    return [query["sql"] for query in queries if query["sql"].split()[0].upper() in ("UPDATE", "INSERT", "DELETE")]


def test_a_heartbeat_is_one_write_however_many_members_the_process_holds():
    registry = get_registry()
    for index in range(50):
        registry.join(ANONYMOUS, f"room{index % 5}", f"user{index}")
    with CaptureQueriesContext(connection) as queries:
        registry.beat()
    assert len(writes(queries)) == 1, writes(queries)
    assert PresenceProcess.objects.get(key=registry.key).seen > timezone.now() - timedelta(seconds=5)


def test_an_idle_process_deletes_its_row_once_then_writes_nothing():
    registry = get_registry()
    registry.leave(registry.join(ANONYMOUS, "room", "ada"))
    registry.beat()
    assert not PresenceProcess.objects.exists()
    with CaptureQueriesContext(connection) as queries:
        registry.beat()
    assert writes(queries) == []


def test_a_leave_that_cannot_be_written_is_written_by_the_next_heartbeat(monkeypatch):
    from django.db import OperationalError

    registry = get_registry()
    member = registry.join(ANONYMOUS, "room", "ada")
    original = Registry._write_leaves

    def failing(self):
        raise OperationalError("the database is away")

    monkeypatch.setattr(Registry, "_write_leaves", failing)
    registry.leave(member)
    assert PresenceMember.objects.exists()
    monkeypatch.setattr(Registry, "_write_leaves", original)
    registry.beat()
    assert not PresenceMember.objects.exists()
    assert presence_events()[-1][0] == LEAVE


def at_once(registry, lock, queue, calls):
    """Run *calls* in threads that all queue (in *queue*) while *lock* is held; return the connections they opened."""
    from django.db.backends.signals import connection_created

    opened = []
    results = []

    def count(sender, connection, **kwargs):
        opened.append(threading.get_ident())

    def call(function):
        try:
            results.append(function())
        except Exception as exc:
            results.append(exc)
        finally:
            connection.close()

    connection_created.connect(count)
    threads = [threading.Thread(target=call, args=(function,)) for function in calls]
    try:
        # Every call is queued while one batch is being written: the next writer takes them all.
        with lock:
            for thread in threads:
                thread.start()
            deadline = time.monotonic() + 10
            while len(queue) < len(calls):
                assert time.monotonic() < deadline, f"{len(queue)} of {len(calls)} queued"
                time.sleep(0.01)
        for thread in threads:
            thread.join(10)
    finally:
        connection_created.disconnect(count)
    return opened, results


def test_connections_that_join_or_leave_at_once_are_written_in_one_batch_on_one_database_connection():
    """A thousand streams that come back or end together (a restart) must not open a thousand connections."""
    registry = get_registry()
    registry.join(ANONYMOUS, "room", "first")  # this process's row exists: a batch is one transaction
    joins = [partial(registry.join, ANONYMOUS, "room", f"guest {n}") for n in range(40)]
    opened, members = at_once(registry, registry._writing, registry._joining, joins)
    assert len(opened) == 1, f"{len(opened)} database connections for {len(joins)} joins"
    assert sorted(member.user for member in members) == sorted(f"guest {n}" for n in range(40))
    assert PresenceMember.objects.count() == 41
    joined = [data["connection"] for event, data in presence_events() if event == JOIN][1:]
    assert sorted(joined) == sorted(member.connection for member in members)

    leaves = [partial(registry.leave, member) for member in members]
    opened, _ = at_once(registry, registry._deleting, registry._leaving, leaves)
    assert len(opened) == 1, f"{len(opened)} database connections for {len(leaves)} leaves"
    assert PresenceMember.objects.count() == 1
    left = sorted(data["connection"] for event, data in presence_events() if event == LEAVE)
    assert left == sorted(member.connection for member in members)


def test_a_batch_of_joins_that_cannot_be_written_fails_each_of_its_joins(monkeypatch):
    from django.db import DatabaseError, OperationalError

    registry = get_registry()

    def failing(self, members):
        raise OperationalError("the database is away")

    monkeypatch.setattr(Registry, "_insert", failing)
    joins = [partial(registry.join, ANONYMOUS, "room", f"guest {n}") for n in range(5)]
    _, results = at_once(registry, registry._writing, registry._joining, joins)
    assert [type(result) for result in results] == [DatabaseError] * 5
    assert registry.members() == [] and not registry._joining and not registry._failed_joins
    assert not PresenceMember.objects.exists() and not presence_events()


def test_join_events_carry_the_info_as_json_the_client_can_read():
    get_registry().join(ANONYMOUS, "room", "ada", {"emoji": "🦊", "nested": {"a": [1, 2]}})
    data = json.loads(Event.objects.get().data_json)
    assert data["info"] == {"emoji": "🦊", "nested": {"a": [1, 2]}}
