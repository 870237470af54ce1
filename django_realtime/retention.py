"""Retention: delete old events in batches and remember what was deleted.

Each deletion raises the channel's PruneMark, so a client that resumes from a
cursor below it gets a ``reset`` event rather than a silent gap.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.db.models import Count, Max
from django.utils import timezone

from .conf import realtime_settings

BATCH = 1000
_UNSET = object()


def _delete_batch(using: str, queryset) -> int:
    """Delete up to BATCH rows of *queryset*, raising the prune marks first."""
    from .models import Event, PruneMark

    with transaction.atomic(using=using):
        ids = list(queryset.order_by("id").values_list("id", flat=True)[:BATCH])
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
        return batch.delete()[0]


def prune(
    *,
    older_than: timedelta | None | object = _UNSET,
    keep: int | None | object = _UNSET,
    channel: str | None = None,
    using: str | None = None,
) -> dict[str, int]:
    """Delete events older than *older_than* and beyond the newest *keep* per channel.

    Both default to the MAX_AGE and MAX_EVENTS_PER_CHANNEL settings; None
    turns a rule off.  Return how many events each rule deleted.
    """
    from .models import Event

    using = using or realtime_settings.DATABASE
    if older_than is _UNSET:
        older_than = realtime_settings.MAX_AGE
    if keep is _UNSET:
        keep = realtime_settings.MAX_EVENTS_PER_CHANNEL
    events = Event.objects.using(using)
    if channel is not None:
        events = events.filter(channel=channel)
    deleted = {"by_age": 0, "by_count": 0}
    if older_than is not None:
        old = events.filter(created__lt=timezone.now() - older_than)
        while n := _delete_batch(using, old):
            deleted["by_age"] += n
    if keep is not None:
        crowded = events.values("channel").annotate(n=Count("id")).filter(n__gt=keep)
        for name in list(crowded.values_list("channel", flat=True)):
            own = Event.objects.using(using).filter(channel=name)
            threshold = list(own.order_by("-id").values_list("id", flat=True)[keep : keep + 1])
            if not threshold:
                continue
            threshold = threshold[0]
            while n := _delete_batch(using, own.filter(id__lte=threshold)):
                deleted["by_count"] += n
    return deleted
