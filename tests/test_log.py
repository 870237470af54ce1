"""The gap-safe tailer on PostgreSQL, step by step (the commit-order trap)."""

import threading
import time
from functools import partial

import pytest
from django.db import DatabaseError, connections, transaction

from django_realtime import publish
from django_realtime.cursor import Cursor
from django_realtime.eventlog import tailer_for
from django_realtime.eventlog.postgres import PostgresTailer
from django_realtime.eventlog.tailers import SerialTailer
from django_realtime.models import Event
from tests.held import Held as HeldOpen
from tests.support import services

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


def test_each_database_gets_its_tailer():
    assert isinstance(tailer_for("postgres"), PostgresTailer)
    assert type(tailer_for("default")) is SerialTailer


@pytest.fixture(autouse=True)
def _log_starts_at_the_sequence():
    """Store one event first: a tailer starts at the newest id, and the ids of earlier tests' rows are gone."""
    publish("c", "first")


def settled(tailer, cursor):
    """Read as the tailer would once it may look at its evidence again, whenever it last did; return the cursor."""
    tailer._next_check = 0.0
    return tailer.read(cursor)[1]


def test_an_event_above_an_open_transaction_is_read_at_once_and_the_open_id_stays_pending():
    tailer = PostgresTailer("postgres")
    start = tailer.start_horizon()
    held = Held()
    later = publish("c", "later").id
    rows, cursor = tailer.read(start)
    assert ids(rows) == [later], "the later commit is not held back"
    assert cursor == Cursor(later, ((held.id, held.id),))
    assert tailer.recheck_after is not None and tailer.waiting_since is not None
    held.end(commit=True)
    rows, cursor = tailer.read(cursor)
    assert ids(rows) == [held.id], "the late commit is read as soon as it is visible"
    assert cursor == Cursor(later)
    assert tailer.read(cursor) == ([], cursor)
    assert tailer.waiting_since is None


def test_a_rolled_back_id_leaves_the_cursor_once_its_transaction_has_ended():
    tailer = PostgresTailer("postgres")
    start = tailer.start_horizon()
    held = Held()
    later = publish("c", "later").id
    rows, cursor = tailer.read(start)
    assert ids(rows) == [later] and cursor.pending
    held.end(commit=False)
    assert settled(tailer, cursor) == Cursor(later)
    assert tailer.recheck_after is None


def test_an_id_is_settled_dead_only_by_evidence_taken_after_it_was_seen_missing():
    tailer = PostgresTailer("postgres")
    start = tailer.start_horizon()
    first = Held()
    middle = publish("c", "middle").id
    rows, cursor = tailer.read(start)
    assert ids(rows) == [middle]
    second = Held()
    last = publish("c", "last").id
    rows, cursor = tailer.read(cursor)
    assert ids(rows) == [last]
    assert cursor == Cursor(last, ((first.id, first.id), (second.id, second.id)))
    first.end(commit=False)
    # The first sighting named only the first transaction, now ended; the second is still in flight.
    cursor = settled(tailer, cursor)
    assert cursor == Cursor(last, ((second.id, second.id),))
    second.end(commit=True)
    rows, cursor = tailer.read(cursor)
    assert ids(rows) == [second.id] and cursor == Cursor(last)


def test_a_starting_tailer_waits_for_nobody_and_names_the_ids_in_flight():
    before = publish("c", "before").id
    held = Held()
    later = publish("c", "later").id
    started = time.monotonic()
    tailer = PostgresTailer("postgres")
    start = tailer.start_horizon(timeout=0.3)
    assert time.monotonic() - started < 0.3
    assert start.top == later and start.covers(before) and not start.covers(held.id)
    held.end(commit=True)
    rows, cursor = tailer.read(start)
    assert ids(rows) == [held.id]
    assert settled(tailer, cursor) == Cursor(later), "what else the start named is dead once held has ended"


def test_past_max_runs_the_tailer_waits_at_the_next_gap_and_says_so():
    from django_realtime.cursor import MAX_RUNS

    tailer = PostgresTailer("postgres")
    cursor = tailer.start_horizon()
    helds, sent = [], []
    try:
        for n in range(MAX_RUNS + 2):
            helds.append(Held())
            sent.append(publish("c", n).id)
        rows, cursor = tailer.read(cursor)
        assert ids(rows) == sent[:MAX_RUNS], "one event per run of pending ids, as many as a cursor names"
        assert len(cursor.pending) == MAX_RUNS and tailer.held_back
        helds[0].end(commit=True)
        rows, cursor = tailer.read(cursor)
        assert ids(rows) == [helds[0].id, sent[MAX_RUNS]], "room for one more run: the next event flows"
    finally:
        for held in helds:
            held.end(commit=True)


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

    from django_realtime.eventlog import rows

    monkeypatch.setattr(rows, "PAGE_BYTES", 5000)
    first = publish("c", "x" * 2000)
    for _ in range(5):
        publish("c", "x" * 2000)
    tailer = SerialTailer("postgres")
    with CaptureQueriesContext(connections["postgres"]) as queries:
        rows, cursor = tailer.read(Cursor(first.id - 1))
    assert [sql for sql in (q["sql"] for q in queries) if "DECLARE" in sql.upper()] == []
    assert len(queries) == 1
    assert ids(rows) == [first.id, first.id + 1, first.id + 2], "cut at the row that reaches PAGE_BYTES"
    assert tailer.limit == 3, "the next read asks for no more rows than fitted"
    rows, _ = tailer.read(cursor)
    assert ids(rows) == [first.id + 3, first.id + 4, first.id + 5]


@pytest.mark.parametrize("hub_running", [False, True])
def test_realtime_cursor_waits_for_no_publisher_in_flight_and_names_its_id(settings, hub_running):
    from django.template import Context, Template

    from django_realtime.hub import get_hub

    settings.REALTIME = {**settings.REALTIME, "CURSOR_TIMEOUT": 5}
    template = Template("{% load realtime %}{% realtime_cursor %}")
    before = publish("c", "before").id
    hub = get_hub()
    if hub_running:
        assert hub.ensure_ready()
    held = Held()
    try:
        after = publish("c", "after").id
        if hub_running:
            hub.poke()
            assert wait_for(lambda: hub.horizon == after)
        started = time.monotonic()
        # The newest id, after, with held's id pending: a page resumes from it and gets held's event.
        cursor = Cursor.parse(template.render(Context()))
        assert cursor.top == after and cursor.covers(before) and not cursor.covers(held.id)
        assert time.monotonic() - started < 1
    finally:
        held.end(commit=True)


def test_realtime_cursor_covers_an_event_committed_before_the_render_that_the_hub_has_not_read_yet(settings):
    """A page rendered from the database after a commit must not get that event again from its cursor."""
    from django.template import Context, Template

    from django_realtime.hub import get_hub

    settings.REALTIME = {**settings.REALTIME, "CURSOR_TIMEOUT": 5}
    template = Template("{% load realtime %}{% realtime_cursor %}")
    hub = get_hub()
    assert hub.ensure_ready()
    # Committed by another process, say: no wake-up has reached this hub yet.
    with connections["postgres"].cursor() as cursor:
        cursor.execute(
            "INSERT INTO django_realtime_event (channel, event, data, created) "
            "VALUES ('c', 'message', '\"elsewhere\"', now()) RETURNING id"
        )
        (elsewhere,) = cursor.fetchone()
    assert not hub.cursor.covers(elsewhere), "the hub has not read it: the race this test is about"
    started = time.monotonic()
    assert Cursor.parse(template.render(Context())).covers(elsewhere)
    assert time.monotonic() - started < 1


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
def test_rows_written_through_the_orm_in_flight_are_pending_too(write):
    tailer = PostgresTailer("postgres")
    start = tailer.start_horizon()
    held = Held(write)
    later = publish("c", "later").id
    rows, cursor = tailer.read(start)
    assert ids(rows) == [later]
    assert cursor.pending and not cursor.covers(held.id), "covered an event written through the ORM in flight"
    held.end(commit=True)
    rows, cursor = tailer.read(cursor)
    assert ids(rows)[0] == held.id and not cursor.pending


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


def test_a_publisher_held_open_holds_back_nothing_else_and_the_hub_says_so(caplog, monkeypatch):
    from django_realtime import reader
    from django_realtime.eventlog import tailers
    from django_realtime.hub import get_hub

    monkeypatch.setattr(reader, "WAITING_WARNING", 0.3)
    monkeypatch.setattr(tailers, "LATE_WARNING", 0.3)
    hub = get_hub()
    assert hub.ensure_ready()
    assert hub.status()["waiting_for_publishers"] is None
    held = Held()
    try:
        other = publish("another-channel", "later").id
        hub.poke()
        assert wait_for(lambda: hub.horizon >= other), "the other channel's event waits for nobody"
        assert wait_for(lambda: (hub.status()["waiting_for_publishers"] or 0) > 0.5)
        assert hub.status()["cursor"] == f"{other}~{held.id}"
        assert wait_for(lambda: "publishing transactions have been open" in caplog.text)
        assert "'pid'" in caplog.text, "the publisher in flight is named"
    finally:
        held.end(commit=True)
    hub.poke()
    assert wait_for(lambda: hub.status()["waiting_for_publishers"] is None)
    assert hub.status()["cursor"] == str(other)
    assert f"event {held.id} on c committed" in caplog.text, "once it commits, its channel is named"


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
    start = tailer.start_horizon()
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
        rows, cursor = tailer.read(start)
        assert ids(rows) == [later] and cursor.pending
        # PostgreSQL ends the idle transaction after 0.5 s: its id is dead and leaves the cursor.
        assert wait_for(lambda: not settled(tailer, cursor).pending, timeout=5)
    finally:
        thread.join(10)
    assert "idle-in-transaction timeout" in str(outcome["error"])
    assert not Event.objects.using("postgres").filter(id=outcome["id"]).exists()
