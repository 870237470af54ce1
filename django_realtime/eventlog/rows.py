"""The rows of the event log: the event type, insert, reads by page, the high-water mark.

Every query of the log's rows lives here; which rows a hub may deliver,
and when, is the tailers' business (``tailers.py`` and one module per
database strategy).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar, cast

from django.db import connections
from django.db.models import Max

from .. import skips
from ..cursor import Cursor, Run, runs_of

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from datetime import datetime

    from ..models import Event

#: Rows read from the log in one query, at most...
PAGE = 500
#: ...and about this many bytes of event data.
PAGE_BYTES = 1024 * 1024
#: Key of the advisory lock publishers hold on PostgreSQL (pg_advisory_xact_lock_shared(int, int)).
LOCK_KEY = (0x7265616C, 1)  # b"real"

Row = tuple[int, str, str, str]

_Form = TypeVar("_Form")


class Item:
    """A stored event as streams need it.

    A transport encodes an event the first time one of its streams sends it
    and keeps the result on the event (``encoded()``), for every other
    stream of the process.  ``cursor`` is the hub's cursor just after the
    event arrived: what a client that got it resumes from (its text is the
    SSE ``id:``).
    """

    __slots__ = ("id", "channel", "event", "data_json", "forms", "seq", "cursor")

    def __init__(self, id: int, channel: str, event: str, data_json: str, cursor: Cursor | None = None) -> None:
        self.id = id
        self.channel = channel
        self.event = event
        self.data_json = data_json
        #: The encoded forms made so far, by encoder: (encoder, form, encoder, form...); see encoded().
        self.forms: tuple[object, ...] = ()
        #: Its place in this process's hub: events arrive in commit order, not in id order.
        self.seq = 0
        self.cursor = Cursor(id) if cursor is None else cursor

    def encoded(self, encoder: Callable[[Item], _Form]) -> _Form:
        """Return ``encoder(self)``, made once per process and event: the encoder is its key.

        So a transport adds an encoding (SSE bytes, a WebSocket message) with
        no slot of its own here.  A flat tuple, not a dict: 56 bytes for the
        first form and 16 for each more, and the first found by an index,
        where a dict costs 224 bytes per event and a hashed lookup.  Replaced,
        never changed in place: two threads that encode at once each store
        a consistent tuple, and at worst one encodes it again later.
        """
        forms = self.forms
        if forms and forms[0] is encoder:
            return cast("_Form", forms[1])
        for index in range(2, len(forms), 2):
            if forms[index] is encoder:
                return cast("_Form", forms[index + 1])
        form = encoder(self)
        self.forms = (*self.forms, encoder, form)  # as it is now: the encoder may have encoded with another
        return form

    @property
    def cursor_text(self) -> str:
        """Return the text a client resumes from after this event: the SSE ``id:``, the WebSocket ``id``."""
        return self.cursor.text_for(self.id)

    def under(self, cursor: Cursor) -> Item:
        """Return this event as a stream that started at *cursor* sends it: its cursor covers *cursor* too."""
        merged = cursor.merge(self.cursor)
        if merged is self.cursor:
            return self
        return Item(self.id, self.channel, self.event, self.data_json, merged)

    def __repr__(self) -> str:
        return f"Item({self.id}, {self.channel!r}, {self.event!r}, {self.data_json!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Item):
            return NotImplemented
        return (self.id, self.channel, self.event, self.data_json) == (
            other.id,
            other.channel,
            other.event,
            other.data_json,
        )

    __hash__ = None  # type: ignore[assignment]


def insert_event(
    using: str,
    channel: str,
    event: str,
    data_json: str,
    *,
    notify: tuple[str, ...] = (),
    idle_timeout: float | None = None,
) -> Event:
    """Store one event and return it, with its id.

    On PostgreSQL, *notify* names LISTEN channels to which the same
    statement sends ``NOTIFY "channel id"``: PostgreSQL delivers it when the
    transaction commits and drops it on rollback.  Inside a transaction,
    *idle_timeout* (seconds) bounds how long that transaction may then sit
    idle: its events wait for it and its id is pending in every cursor
    meanwhile, so the server ends it past that, unless its own
    idle_in_transaction_session_timeout is shorter.
    """
    from ..models import Event

    stored = Event(channel=channel, event=event, data_json=data_json)
    stored._announced = True  # publish() wakes the hubs itself, not the post_save receiver
    connection = connections[using]
    if connection.vendor != "postgresql":
        stored.save(using=using, force_insert=True)
        return stored
    meta = Event._meta
    column = {field.name: connection.ops.quote_name(str(field.column)) for field in meta.concrete_fields}
    table = connection.ops.quote_name(meta.db_table)
    params: list[Any] = [*LOCK_KEY]
    bound = ""
    if idle_timeout is not None and connection.in_atomic_block:
        # SET LOCAL, in the same statement: it lasts as long as the transaction.
        milliseconds = max(1, round(idle_timeout * 1000))
        bound = (
            ", (SELECT count(set_config(name, %s, true)) FROM pg_settings "
            "WHERE name = 'idle_in_transaction_session_timeout' AND setting::bigint NOT BETWEEN 1 AND %s)"
        )
        params += [str(milliseconds), milliseconds]
    params += [channel, event, data_json, stored.created]
    # The CTE takes the lock before the INSERT draws its id from the
    # sequence, so a tailer that sees a later id can find this transaction
    # among the lock's holders.
    sql = (
        f"WITH lock AS (SELECT pg_advisory_xact_lock_shared(%s, %s){bound}), "
        f"ins AS (INSERT INTO {table} ({column['channel']}, {column['event']}, {column['data_json']}, "
        f"{column['created']}) SELECT %s, %s, %s, %s FROM lock RETURNING {column['id']} AS id) "
    )
    # One statement, one round trip: the NOTIFYs ride on the INSERT.
    notifies = "".join(", pg_notify(%s, %s || ' ' || id::text)" for _ in notify)
    sql += f"SELECT id{notifies} FROM ins"
    for name in notify:
        params += [name, channel]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        stored.id = cursor.fetchone()[0]
    stored._state.adding = False
    stored._state.db = using
    return stored


def _select(using: str, *, upto: bool, channels: int, runs: int = 0, created: bool = False) -> str:
    """Return the SQL that reads a page of rows: ids after %s (or in *runs* runs %s to %s), up to %s,
    of *channels* channels, LIMIT %s; with *created*, each row's ``created`` last."""
    from ..models import Event

    ops = connections[using].ops
    meta = Event._meta
    column = {field.name: ops.quote_name(str(field.column)) for field in meta.concrete_fields}
    after = f"{column['id']} > %s"
    if runs:  # the pending ids too: they may have committed since
        between = f" OR {column['id']} BETWEEN %s AND %s"
        after = f"({after}{between * runs})"
    where = [after]
    if upto:
        where.append(f"{column['id']} <= %s")
    if channels:
        where.append(f"{column['channel']} IN ({', '.join(['%s'] * channels)})")
    return (
        f"SELECT {column['id']}, {column['channel']}, {column['event']}, {column['data_json']}"
        f"{', ' + column['created'] if created else ''} "
        f"FROM {ops.quote_name(meta.db_table)} WHERE {' AND '.join(where)} ORDER BY {column['id']} LIMIT %s"
    )


_SQL: dict[tuple[str, bool, int, int, bool], str] = {}


def read_rows(
    using: str,
    after: int,
    *,
    upto: int | None = None,
    channels: Iterable[str] | None = None,
    limit: int = PAGE,
    max_bytes: int | None = None,
    pending: tuple[Run, ...] = (),
    stamps: dict[int, object] | None = None,
) -> tuple[list[Row], bool]:
    """Return stored rows after *after* (and in the *pending* runs below it) in id order, and whether they
    are all there are (up to *upto*).  With *stamps*, put each row's ``created`` there, by id (metrics).

    A plain query (no server-side cursor, so it works through PgBouncer in
    transaction mode) of at most *limit* rows; the rows past *max_bytes* (by
    default PAGE_BYTES) of data are dropped here, so a read hands on about a
    megabyte at most.
    """
    max_bytes = PAGE_BYTES if max_bytes is None else max_bytes
    names = sorted(channels) if channels is not None else []
    key = (using, upto is not None, len(names), len(pending), stamps is not None)
    sql = _SQL.get(key)
    if sql is None:
        sql = _SQL[key] = _select(
            using, upto=upto is not None, channels=len(names), runs=len(pending), created=stamps is not None
        )
    params: list[Any] = [after]
    for first, last in pending:
        params += [first, last]
    if upto is not None:
        params.append(upto)
    params += names
    params.append(limit)
    with connections[using].cursor() as cursor:
        cursor.execute(sql, params)
        rows: list[Row] = cursor.fetchall()
    if not isinstance(rows, list):  # mysqlclient gives a tuple
        rows = list(rows)
    if stamps is not None:
        for row in rows:
            stamps[row[0]] = row[4]  # type: ignore[misc]
        rows = [row[:4] for row in rows]
    size = 0
    for index, row in enumerate(rows):
        size += len(row[3])
        if size >= max_bytes:
            return rows[: index + 1], False
    return rows, len(rows) < limit


def read_page(
    using: str, channels: Iterable[str], after: int, upto: int, *, limit: int = PAGE, max_bytes: int | None = None
) -> tuple[list[Item], int]:
    """Read stored events of *channels* in (after, upto], *limit* rows and about *max_bytes* at most.

    Return them and the new cursor.
    """
    rows, complete = read_rows(using, after, upto=upto, channels=channels, limit=limit, max_bytes=max_bytes)
    cursor = upto if complete else rows[-1][0]
    if rows and skips.possible(using):
        rows = skips.without(rows, skips.recorded(using, after, rows[-1][0]))
    return [Item(*row) for row in rows], cursor


def high_water_mark(using: str) -> int:
    """Return the highest event id the log has ever held, pruned ones included."""
    from ..models import Event, PruneMark

    newest = Event.objects.using(using).aggregate(m=Max("id"))["m"] or 0
    pruned = PruneMark.objects.using(using).aggregate(m=Max("pruned_through"))["m"] or 0
    return max(newest, pruned)


def pruned_after(using: str, horizon: int) -> dict[str, int]:
    """Return the channels with events after *horizon* that retention deleted, and the newest of those ids."""
    from ..models import PruneMark

    marks = PruneMark.objects.using(using).filter(pruned_through__gt=horizon)
    return dict(marks.values_list("channel", "pruned_through"))


def drawn_before(using: str, bound: datetime) -> int:
    """Return the newest id of an event created before *bound* (by the publishers' clock), or 0."""
    from ..models import Event

    return Event.objects.using(using).filter(created__lt=bound).aggregate(m=Max("id"))["m"] or 0


def missing_runs(using: str, after: int, upto: int) -> tuple[Run, ...]:
    """Return the runs of ids in (after, upto] that the log does not hold."""
    from ..models import Event

    present = set(Event.objects.using(using).filter(id__gt=after, id__lte=upto).values_list("id", flat=True))
    return runs_of(n for n in range(after + 1, upto + 1) if n not in present)
