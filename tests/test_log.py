"""The gap-safe tailer on PostgreSQL, step by step (the commit-order trap)."""

import threading
import time
from functools import partial

import pytest
from django.db import DatabaseError, connections, transaction

from django_realtime import publish
from django_realtime.log import PostgresTailer, SerialTailer, _unbroken, tailer_for
from django_realtime.models import Event
from tests import services
from tests.held import Held as HeldOpen

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "postgres"])


@pytest.fixture(autouse=True)
def _log_on_postgres(settings):
    services.require(services.POSTGRES, "PostgreSQL")
    settings.REALTIME = {"BACKEND": "inprocess", "DATABASE": "postgres", "PRUNE_INTERVAL": None}
    yield
    connections["postgres"].close()


def ids(rows):
    return [row[0] for row in rows]


#: A publishing transaction held open on this module's database.
Held = partial(HeldOpen, using="postgres")


def test_unbroken_stops_at_the_first_missing_id_above_the_settled_ones():
    rows = [(1, "", "", ""), (2, "", "", ""), (4, "", "", ""), (7, "", "", "")]
    assert ids(_unbroken(rows, 0)) == [1, 2]
    assert ids(_unbroken(rows, 0, settled=3)) == [1, 2, 4]
    assert ids(_unbroken(rows, 0, settled=6)) == [1, 2, 4, 7]


def test_each_database_gets_its_tailer():
    assert isinstance(tailer_for("postgres"), PostgresTailer)
    assert type(tailer_for("default")) is SerialTailer


def test_the_tailer_holds_back_behind_an_open_transaction_and_releases_in_order():
    tailer = PostgresTailer("postgres")
    horizon = tailer.start_horizon()
    held = Held()
    later = publish("c", "later").id
    assert tailer.read(horizon) == []
    assert tailer.recheck_after is not None
    held.end(commit=True)
    assert ids(tailer.read(horizon)) == [held.id, later]


def test_a_rolled_back_id_is_stepped_over_once_its_transaction_has_ended():
    tailer = PostgresTailer("postgres")
    horizon = tailer.start_horizon()
    held = Held()
    later = publish("c", "later").id
    assert tailer.read(horizon) == []
    held.end(commit=False)
    assert ids(tailer.read(horizon)) == [later]
    assert tailer.recheck_after is None


def test_a_gap_that_filled_by_itself_leaves_no_stale_evidence_behind():
    tailer = PostgresTailer("postgres")
    horizon = tailer.start_horizon()
    held = Held()
    first_later = publish("c", "later").id
    assert tailer.read(horizon) == []
    held.end(commit=True)
    rows = tailer.read(horizon)
    assert ids(rows) == [held.id, first_later]
    horizon = rows[-1][0]
    # A new gap: rolled back at once, then a commit; nobody is in flight any more.
    with pytest.raises(RuntimeError), transaction.atomic(using="postgres"):
        publish("c", "rolled back")
        raise RuntimeError
    committed = publish("c", "committed").id
    assert ids(tailer.read(horizon)) == [committed]


def test_a_newer_gap_behind_a_settled_one_gets_evidence_of_its_own():
    tailer = PostgresTailer("postgres")
    horizon = tailer.start_horizon()
    first = Held()
    middle = publish("c", "middle").id
    assert tailer.read(horizon) == []
    second = Held()
    last = publish("c", "last").id
    first.end(commit=False)
    # The first gap is settled; the second is still in flight: hold back, keep rechecking.
    assert ids(tailer.read(horizon)) == [middle]
    assert tailer.recheck_after is not None
    second.end(commit=True)
    assert ids(tailer.read(middle)) == [second.id, last]


def test_start_horizon_waits_for_publishers_in_flight():
    held = Held()
    later = publish("c", "later").id
    result = {}

    def start():
        try:
            result["h"] = PostgresTailer("postgres").start_horizon()
        finally:
            connections["postgres"].close()

    thread = threading.Thread(target=start)
    thread.start()
    thread.join(0.5)
    assert thread.is_alive(), "started past an event still in flight"
    held.end(commit=True)
    thread.join(10)
    assert result["h"] == later


def _listener():
    import psycopg

    from django_realtime.backends.postgres import CHANNEL

    params = connections["postgres"].settings_dict
    test_name = params["TEST"]["NAME"]
    listener = psycopg.connect(
        f"host={params['HOST']} port={params['PORT']} user={params['USER']} dbname={test_name}", autocommit=True
    )
    listener.execute(f'LISTEN "{CHANNEL}"')
    return listener


def _notifies(listener, wait=0.3, expect=10):
    """Return the payloads that arrive within *wait* seconds, or as soon as *expect* of them have."""
    return [notify.payload for notify in listener.notifies(timeout=wait, stop_after=expect)]


def test_a_publish_on_the_postgres_backend_is_one_statement_that_notifies_at_commit(settings):
    from django.test.utils import CaptureQueriesContext

    settings.REALTIME = {**settings.REALTIME, "BACKEND": "postgres"}
    listener = _listener()
    try:
        with transaction.atomic(using="postgres"), CaptureQueriesContext(connections["postgres"]) as queries:
            event = publish("c", 1)
            assert _notifies(listener) == [], "NOTIFY went out before COMMIT"
        assert len(queries) == 1, [query["sql"] for query in queries]
        assert _notifies(listener, 5, expect=1) == [f"c {event.id}"]
        with pytest.raises(RuntimeError), transaction.atomic(using="postgres"):
            publish("c", 2)
            raise RuntimeError
        assert _notifies(listener) == [], "a rolled-back publish notified"
        outside = publish("c", 3)  # autocommit: its own transaction
        assert _notifies(listener, 5, expect=1) == [f"c {outside.id}"]
    finally:
        listener.close()


def test_reads_are_plain_queries_and_pages_are_capped_in_bytes(monkeypatch):
    from django.test.utils import CaptureQueriesContext

    from django_realtime import log

    monkeypatch.setattr(log, "PAGE_BYTES", 5000)
    first = publish("c", "x" * 2000)
    for _ in range(5):
        publish("c", "x" * 2000)
    tailer = SerialTailer("postgres")
    with CaptureQueriesContext(connections["postgres"]) as queries:
        rows = tailer.read(first.id - 1)
    assert [sql for sql in (q["sql"] for q in queries) if "DECLARE" in sql.upper()] == []
    assert len(queries) == 1
    assert ids(rows) == [first.id, first.id + 1, first.id + 2], "cut at the row that reaches PAGE_BYTES"
    assert tailer.limit == 3, "the next read asks for no more rows than fitted"
    rows = tailer.read(rows[-1][0])
    assert ids(rows) == [first.id + 3, first.id + 4, first.id + 5]


def test_start_horizon_gives_up_after_its_timeout():
    held = Held()
    try:
        with pytest.raises(TimeoutError):
            PostgresTailer("postgres").start_horizon(timeout=0.3)
    finally:
        held.end(commit=True)


def test_realtime_cursor_gives_an_older_cursor_while_a_publisher_stays_open(settings):
    from django.template import Context, Template

    from django_realtime.hub import get_hub

    settings.REALTIME = {**settings.REALTIME, "CURSOR_TIMEOUT": 0.3}
    template = Template("{% load realtime %}{% realtime_cursor %}")
    before = publish("c", "before").id
    hub = get_hub()
    assert hub.ensure_ready()
    held = Held()
    try:
        after = publish("c", "after").id
        # The newest id, after, is not safe: held's id, below it, may still commit.
        assert template.render(Context()) == str(before)
    finally:
        held.end(commit=True)
    assert template.render(Context()) == str(after)


def created():
    return Event.objects.using("postgres").create(channel="c", data_json='"created"').id


def bulk_created():
    rows = Event.objects.using("postgres").bulk_create([Event(channel="c", data_json=f'"{n}"') for n in range(3)])
    return rows[0].id


def saved():
    event = Event(channel="c", data_json='"saved"')
    event.save(using="postgres")
    return event.id


@pytest.mark.parametrize("write", [created, bulk_created, saved])
def test_rows_written_through_the_orm_are_held_back_for_too(write):
    tailer = PostgresTailer("postgres")
    horizon = tailer.start_horizon()
    held = Held(write)
    later = publish("c", "later").id
    assert tailer.read(horizon) == [], "stepped over an event written through the ORM while it was in flight"
    held.end(commit=True)
    assert ids(tailer.read(horizon))[0] == held.id
    assert ids(tailer.read(horizon))[-1] == later


def test_ids_keep_growing_past_the_identity_the_migration_replaced():
    with connections["postgres"].cursor() as cursor:
        cursor.execute(
            "SELECT column_default, is_identity FROM information_schema.columns "
            "WHERE table_name = 'django_realtime_event' AND column_name = 'id'"
        )
        default, identity = cursor.fetchone()
    assert default == "django_realtime_next_id()" and identity == "NO"
    assert created() < created()


# A publisher that stays open ---------------------------------------------------


def wait_for(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not (result := condition()) and time.monotonic() < deadline:
        time.sleep(0.02)
    return result


def test_a_publisher_held_open_holds_back_every_channel_and_the_hub_says_so(caplog, monkeypatch):
    from django_realtime import reader
    from django_realtime.hub import get_hub

    monkeypatch.setattr(reader, "WAITING_WARNING", 0.3)
    hub = get_hub()
    assert hub.ensure_ready()
    assert hub.status()["waiting_for_publishers"] is None
    held = Held()
    try:
        other = publish("another-channel", "later").id
        hub.poke()
        assert wait_for(lambda: (hub.status()["waiting_for_publishers"] or 0) > 0.5)
        assert hub.horizon < held.id  # the other channel's event waits too: commit order
        assert wait_for(lambda: "holds back every channel's events" in caplog.text)
    finally:
        held.end(commit=True)
    hub.poke()
    assert wait_for(lambda: hub.horizon >= other)
    assert hub.status()["waiting_for_publishers"] is None


def idle_timeout():
    with connections["postgres"].cursor() as cursor:
        cursor.execute("SHOW idle_in_transaction_session_timeout")
        return cursor.fetchone()[0]


def test_a_transaction_that_publishes_may_sit_idle_for_publish_idle_timeout(settings):
    with transaction.atomic(using="postgres"):
        publish("c", 1)
        assert idle_timeout() == "1min"  # the default, 60 s, for this transaction only
    assert idle_timeout() == "0"
    publish("c", 2)  # autocommit: nothing to bound
    assert idle_timeout() == "0"
    with transaction.atomic(using="postgres"):
        with connections["postgres"].cursor() as cursor:
            cursor.execute("SET LOCAL idle_in_transaction_session_timeout = 200")
        publish("c", 3)
        assert idle_timeout() == "200ms"  # a stricter bound of the project's own is kept
    settings.REALTIME = {**settings.REALTIME, "PUBLISH_IDLE_TIMEOUT": None}
    with transaction.atomic(using="postgres"):
        publish("c", 4)
        assert idle_timeout() == "0"


def test_past_publish_idle_timeout_the_server_ends_the_publisher_and_the_rest_flows(settings):
    settings.REALTIME = {**settings.REALTIME, "PUBLISH_IDLE_TIMEOUT": 0.5}
    tailer = PostgresTailer("postgres")
    horizon = tailer.start_horizon()
    outcome = {}
    drawn = threading.Event()

    def stuck():
        try:
            with transaction.atomic(using="postgres"):
                outcome["id"] = publish("c", "stuck").id
                drawn.set()
                time.sleep(2)  # idle in transaction: a view waiting on something else
                Event.objects.using("postgres").count()
        except DatabaseError as exc:
            outcome["error"] = exc
        finally:
            connections["postgres"].close()

    thread = threading.Thread(target=stuck)
    thread.start()
    try:
        assert drawn.wait(10)
        later = publish("c", "later").id
        assert tailer.read(horizon) == []
        # PostgreSQL ends the idle transaction after 0.5 s: its id is dead, the later event flows.
        assert wait_for(lambda: ids(tailer.read(horizon)) == [later], timeout=5)
    finally:
        thread.join(10)
    assert "idle-in-transaction timeout" in str(outcome["error"])
    assert not Event.objects.using("postgres").filter(id=outcome["id"]).exists()
