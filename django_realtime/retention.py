"""Retention: delete old events in batches and remember what was deleted.

Each deletion raises the channel's PruneMark, so a client that resumes from a
cursor below it gets a ``reset`` event rather than a silent gap.  Each
process's :class:`Pruner` prunes every ``PRUNE_INTERVAL`` seconds on a thread
of its own, never the hub's reader, and only one process of the deployment
at a time prunes (an advisory lock on PostgreSQL, a named lock on MySQL).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from fnmatch import fnmatchcase
from typing import cast

from django.db import connections, transaction
from django.db.models import Count, Max, Q
from django.db.models.functions import Left
from django.db.models.lookups import Exact
from django.utils import timezone

from . import skips
from .conf import realtime_settings
from .names import channel_pattern_regex

BATCH = 1000
#: Seconds between two batches: under gevent the streams run between them.
BATCH_PAUSE = 0.005
#: SQLite: smaller batches, and pauses longer than the first sleeps of
#: SQLite's busy handler (1, 2, 5, 10 ms...), so that a publisher waiting for
#: the write lock gets it between two batches, and a batch (a C call that
#: blocks a whole gevent worker) is short.
SQLITE_BATCH = 200
SQLITE_BATCH_PAUSE = 0.03
_UNSET = object()
#: Seconds during which count-based retention leaves a new event alone, so
#: that the hubs of every process read it before it can go.
COUNT_GRACE = 60.0
#: Key of the session advisory lock one pruning process holds on PostgreSQL.
PRUNE_LOCK_KEY = (0x7265616C, 2)
#: Name of the lock one pruning process holds on MySQL and MariaDB.
PRUNE_LOCK_NAME = "django_realtime_prune"

logger = logging.getLogger("django_realtime")


def _delete_batch(using: str, queryset) -> int:
    """Delete up to BATCH rows of *queryset*, raising the prune marks first."""
    from .models import Event, PruneMark

    sqlite = connections[using].vendor == "sqlite"
    with transaction.atomic(using=using):
        ids = list(queryset.order_by("id").values_list("id", flat=True)[: SQLITE_BATCH if sqlite else BATCH])
        if not ids:
            return 0
        batch = Event.objects.using(using).filter(id__in=ids)
        for channel, newest in batch.values("channel").annotate(m=Max("id")).values_list("channel", "m"):
            mark, created = PruneMark.objects.using(using).get_or_create(
                channel=channel, defaults={"pruned_through": newest}
            )
            if not created and mark.pruned_through < newest:
                PruneMark.objects.using(using).filter(channel=channel, pruned_through__lt=newest).update(
                    pruned_through=newest
                )
        deleted = batch.delete()[0]
    time.sleep(SQLITE_BATCH_PAUSE if sqlite else BATCH_PAUSE)
    return deleted


class Rule:
    """Retention for the channels one RETENTION pattern matches first (or, with no pattern, all the others)."""

    __slots__ = ("pattern", "older_than", "keep", "earlier")

    def __init__(self, pattern: str | None, older_than: timedelta | None, keep: int | None, earlier: list[str]):
        self.pattern = pattern
        self.older_than = older_than
        self.keep = keep
        #: The patterns before this one: a channel they match is theirs, not this rule's.
        self.earlier = earlier

    def events(self, queryset):
        """Return the events of *queryset* whose channel this rule governs."""
        if self.pattern is not None:
            queryset = queryset.filter(pattern_filter(self.pattern))
        for pattern in self.earlier:
            queryset = queryset.exclude(pattern_filter(pattern))
        return queryset

    def governs(self, channel: str) -> bool:
        matches = self.pattern is None or fnmatchcase(channel, self.pattern)
        return matches and not any(fnmatchcase(channel, pattern) for pattern in self.earlier)


def pattern_filter(pattern: str) -> Q:
    """Return the ORM filter of the channels an fnmatch *pattern* matches, as fnmatchcase() does."""
    if not any(char in pattern for char in "*?["):
        return Q(channel=pattern)
    if pattern.endswith("*") and not any(char in pattern[:-1] for char in "*?["):
        # The common case: an index range scan.  SQLite's LIKE ignores ASCII
        # case, so the prefix is compared byte for byte too (PRESENCE:a is not presence:*'s).
        prefix = pattern[:-1]
        return Q(channel__startswith=prefix) & Q(Exact(Left("channel", len(prefix)), prefix))
    return Q(channel__regex=channel_pattern_regex(pattern))


def rules(older_than: object = _UNSET, keep: object = _UNSET) -> list[Rule]:
    """Return the retention rules, first match first: one per RETENTION pattern, then the settings' own.

    An explicit *older_than* or *keep* (prune_events' options) makes one rule
    for every channel instead.
    """
    if older_than is not _UNSET or keep is not _UNSET:
        older = realtime_settings.MAX_AGE if older_than is _UNSET else older_than
        most = realtime_settings.MAX_EVENTS_PER_CHANNEL if keep is _UNSET else keep
        return [Rule(None, cast("timedelta | None", older), cast("int | None", most), [])]
    found: list[Rule] = []
    earlier: list[str] = []
    for pattern, rule in realtime_settings.RETENTION.items():
        found.append(Rule(pattern, rule["MAX_AGE"], rule["MAX_EVENTS_PER_CHANNEL"], list(earlier)))
        earlier.append(pattern)
    found.append(Rule(None, realtime_settings.MAX_AGE, realtime_settings.MAX_EVENTS_PER_CHANNEL, earlier))
    return found


def prune(
    *,
    older_than: timedelta | None | object = _UNSET,
    keep: int | None | object = _UNSET,
    channel: str | None = None,
    using: str | None = None,
    grace: float = COUNT_GRACE,
) -> dict[str, int]:
    """Delete events older than *older_than* and beyond the newest *keep* per channel.

    Both default to the settings: per channel, the first RETENTION pattern
    that matches it, else MAX_AGE and MAX_EVENTS_PER_CHANNEL; None turns a
    rule off.  The count rule spares events younger than *grace* seconds, so
    that it never deletes one before the hubs of the other processes read it
    (a hub that was behind even so tells its streams with a reset).  Return
    how many events each rule deleted.
    """
    from .models import Event

    using = using or realtime_settings.DATABASE
    events = Event.objects.using(using)
    if channel is not None:
        events = events.filter(channel=channel)
    deleted = {"by_age": 0, "by_count": 0}
    for rule in rules(older_than, keep):
        if channel is not None and not rule.governs(channel):
            continue
        governed = rule.events(events) if channel is None else events
        if rule.older_than is not None:
            old = governed.filter(created__lt=timezone.now() - rule.older_than)
            while n := _delete_batch(using, old):
                deleted["by_age"] += n
        if rule.keep is not None:
            deleted["by_count"] += _prune_counts(using, governed, rule.keep, grace)
    if skips.possible(using):
        skips.prune(using)
    return deleted


def _prune_counts(using: str, events, keep: int, grace: float) -> int:
    """Delete the events of each channel of *events* beyond its newest *keep*, sparing those younger than *grace*."""
    from .models import Event

    deleted = 0
    crowded = events.values("channel").annotate(n=Count("id")).filter(n__gt=keep)
    recent = timezone.now() - timedelta(seconds=grace)
    for name in list(crowded.values_list("channel", flat=True)):
        own = Event.objects.using(using).filter(channel=name)
        found = list(own.order_by("-id").values_list("id", flat=True)[keep : keep + 1])
        if not found:
            continue
        while n := _delete_batch(using, own.filter(id__lte=found[0], created__lt=recent)):
            deleted += n
    return deleted


@contextmanager
def pruning_lock(using: str) -> Iterator[bool]:
    """Hold the deployment's pruning lock if no other process does; yield whether this one got it.

    Databases with no such lock (SQLite, whose writers one machine
    serialises anyway) always get it.
    """
    connection = connections[using]
    vendor = connection.vendor
    if vendor == "postgresql":
        take, give = "SELECT pg_try_advisory_lock(%s, %s)", "SELECT pg_advisory_unlock(%s, %s)"
        params: tuple[int | str, ...] = PRUNE_LOCK_KEY
    elif vendor == "mysql":
        take, give, params = "SELECT GET_LOCK(%s, 0)", "SELECT RELEASE_LOCK(%s)", (PRUNE_LOCK_NAME,)
    else:
        yield True
        return
    with connection.cursor() as cursor:
        cursor.execute(take, list(params))
        got = bool(cursor.fetchone()[0])
    try:
        yield got
    finally:
        if got:
            with connection.cursor() as cursor:
                cursor.execute(give, list(params))


class Pruner:
    """Prune the log every *interval* seconds (with jitter) on a thread of its own."""

    def __init__(self, using: str, interval: float) -> None:
        self.using = using
        self.interval = interval
        #: Prunes this process ran (it held the lock), for tests.
        self.runs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="django-realtime-prune", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        from .db import release_connections

        # Processes that start together do not all prune together.
        wait = self.interval * random.uniform(0.1, 1.0)
        while not self._stop.wait(wait):
            wait = self.interval * random.uniform(0.9, 1.1)
            try:
                with pruning_lock(self.using) as got:
                    if got and not self._stop.is_set():
                        prune(using=self.using)
                        self.runs += 1
            except Exception:
                logger.exception("django_realtime could not prune the event log; trying again in %.0fs", wait)
            finally:
                release_connections()
