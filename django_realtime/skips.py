"""Skipped ids: what every process agrees the log does not hold, on databases with no commit-order rule.

SQLite, PostgreSQL and InnoDB (with the PROCESS privilege) know when an id
missing from the log is dead (see ``django_realtime.eventlog``).  Elsewhere a hub
waits GAP_TIMEOUT for a missing id and then steps over it.  Left there, the
processes would disagree: a hub that stepped over id 10 never delivers it, a
replay from the database returns it once its transaction commits, and a hub
that started after the commit delivers it live.  So the hub that steps over
a run of ids records it (:class:`~django_realtime.models.SkippedIds`), and
from then on:

* every hub treats a recorded id as dead at once, without a wait of its own;
* every read of the log, live or replay, in every process, leaves a row with
  a recorded id out;
* such a row, a *late* event, is not lost silently: the publisher, once its
  transaction commits, and the hub that recorded the run, just after
  recording it, each look for late rows and store a ``reset`` event (reason
  ``late``) on the late row's channel, delivered like any other event and in
  order, so every subscriber of that channel reloads its state.  (In the
  instant where both look at once, the channel may get two resets.)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from datetime import timedelta

from django.db import DatabaseError, connections, transaction
from django.utils import timezone

from . import metrics
from .conf import realtime_settings
from .names import reset_json

logger = logging.getLogger("django_realtime")

Run = tuple[int, int]
#: Vendors whose commit-order rule never steps over an id in flight: nothing is ever recorded there.
EXACT_VENDORS = frozenset({"sqlite", "postgresql"})
#: Days a recorded run is kept after the events around it are gone.
KEEP_DAYS = 1


def possible(using: str) -> bool:
    """Return whether a hub on *using* may ever step over an id (and so record it)."""
    return connections[using].vendor not in EXACT_VENDORS


def recorded(using: str, after: int, upto: int) -> list[Run]:
    """Return the recorded runs that overlap (after, upto], by first id."""
    from .models import SkippedIds

    runs = SkippedIds.objects.using(using).filter(last__gt=after, first__lte=upto).order_by("first")
    return list(runs.values_list("first", "last"))


def covered(row_id: int, runs: Sequence[Run]) -> bool:
    return any(first <= row_id <= last for first, last in runs)


def without(rows: list, runs: Sequence[Run]) -> list:
    """Return *rows* (id first) without those whose id a recorded run holds."""
    if not runs:
        return rows
    return [row for row in rows if not covered(row[0], runs)]


def missing(present: Iterable[int], after: int, upto: int, runs: Sequence[Run]) -> list[Run]:
    """Return the runs of ids in (after, upto] that are neither *present* (ascending) nor recorded."""
    holes: list[Run] = []
    expected = after + 1
    for row_id in [*(i for i in present if i <= upto), upto + 1]:
        if row_id > expected:
            holes.extend(_uncovered(expected, row_id - 1, runs))
        expected = max(expected, row_id + 1)
    return holes


def _uncovered(first: int, last: int, runs: Sequence[Run]) -> list[Run]:
    """Return the parts of first..last that no run of *runs* (sorted by first id) holds."""
    parts: list[Run] = []
    for run_first, run_last in runs:
        if run_last < first or run_first > last:
            continue
        if run_first > first:
            parts.append((first, run_first - 1))
        first = max(first, run_last + 1)
        if first > last:
            return parts
    parts.append((first, last))
    return parts


def record(using: str, runs: Sequence[Run]) -> None:
    """Record *runs* as skipped, and report the rows of them that committed meanwhile."""
    from .models import Event, SkippedIds

    if not runs:
        return
    SkippedIds.objects.using(using).bulk_create([SkippedIds(first=first, last=last) for first, last in runs])
    logger.warning(
        "django_realtime stepped over event ids %s after GAP_TIMEOUT (%g s) without seeing them committed; "
        "a row that commits there later is left out and its channel gets a reset",
        ", ".join(f"{first}" if first == last else f"{first}..{last}" for first, last in runs),
        realtime_settings.GAP_TIMEOUT,
    )
    # A row that committed between the read that showed the run missing and
    # the record: no hub that read after the record delivers it.
    late: list[tuple[int, str]] = []
    for first, last in runs:
        late += Event.objects.using(using).filter(id__gte=first, id__lte=last).values_list("id", "channel")
    report(using, late)


def report(using: str, late: Iterable[tuple[int, str]]) -> None:
    """Store a ``reset`` (reason ``late``) on the channel of each late row: *(id, channel)*."""
    from .backends import get_backend
    from .models import Event

    for row_id, channel in late:
        logger.warning(
            "django_realtime event %s on %r committed after the hubs stepped over its id: it is not delivered, "
            "its channel gets a reset",
            row_id,
            channel,
        )
        with transaction.atomic(using=using):
            # The reset names its own id as where to resume: store, then fill in.
            stored = Event(channel=channel, event="reset", data_json="null")
            stored._announced = True  # a reserved name, stored here only: not checked, woken below
            stored.save(using=using, force_insert=True)
            stored.data_json = reset_json("late", row_id - 1, stored.id, [channel])
            stored.save(using=using, update_fields=["data_json"])
        get_backend().published(stored, using)
        metrics.reset_sent("late")


def watch(using: str, events: Iterable) -> None:
    """Once *events*' transaction commits, report any of them whose id a hub stepped over meanwhile.

    Only a transaction that stayed open about GAP_TIMEOUT can be stepped
    over (a hub waits that long from the moment it first sees the gap), so
    the others cost nothing.
    """
    if not possible(using):
        return
    connection = connections[using]
    if not connection.in_atomic_block:
        return  # autocommit: committed with its INSERT
    began = time.monotonic()
    events = [(event.id, event.channel) for event in events]

    def check() -> None:
        if time.monotonic() - began < realtime_settings.GAP_TIMEOUT / 2:
            return
        try:
            runs = recorded(using, min(row_id for row_id, _ in events) - 1, max(row_id for row_id, _ in events))
            report(using, [(row_id, channel) for row_id, channel in events if covered(row_id, runs)])
        except DatabaseError:
            logger.exception("django_realtime could not check whether a long transaction's events were skipped")

    transaction.on_commit(check, using=using)


def prune(using: str) -> int:
    """Delete the runs below every stored event that are older than KEEP_DAYS; return how many."""
    from .models import Event, SkippedIds

    oldest = Event.objects.using(using).order_by("id").values_list("id", flat=True).first()
    runs = SkippedIds.objects.using(using).filter(recorded__lt=timezone.now() - timedelta(days=KEEP_DAYS))
    if oldest is not None:
        runs = runs.filter(last__lt=oldest)
    return runs.delete()[0]
