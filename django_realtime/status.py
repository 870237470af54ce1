"""The live status page's figures: one snapshot of the deployment, from the log, the heartbeats and the metrics.

The admin's status page (``admin.py``) shows them; its stream (``sse/status.py``)
sends a snapshot every STATUS_INTERVAL seconds.  What the log and the
presence heartbeats say covers every process; what the metrics say covers
every worker in multiprocess mode, else the process that answers.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from typing import Any

from django.db.models import Count
from django.utils import timezone

from . import metrics
from .conf import realtime_settings
from .db import release_connections
from .hub import get_hub

#: Seconds between two snapshots of a status stream.
STATUS_INTERVAL = 2.0
#: Seconds of the log the events per second are counted over, and the busiest channels.
RATE_WINDOW = 10
BUSY_WINDOW = 60
#: Channels listed as the busiest.
BUSIEST = 5


def snapshot(previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return the figures of the status page; with *previous*, rates since it as well."""
    from .models import Event, PresenceProcess

    now = timezone.now()
    using = realtime_settings.DATABASE
    try:
        log = Event.objects.using(using)
        recent = log.filter(created__gte=now - timedelta(seconds=RATE_WINDOW)).count()
        busiest = list(
            log.filter(created__gte=now - timedelta(seconds=BUSY_WINDOW))
            .values("channel")
            .annotate(events=Count("id"))
            .order_by("-events", "channel")[:BUSIEST]
        )
        processes = [
            {"key": key[:8], "seen_seconds_ago": round((now - seen).total_seconds(), 1)}
            for key, seen in PresenceProcess.objects.using(using).order_by("-seen").values_list("key", "seen")
        ]
    finally:
        release_connections()
    hub = get_hub()
    hub.ensure_ready(0)
    status = hub.status()
    figures: dict[str, Any] = {
        "time": time.time(),
        "pid": os.getpid(),
        "events_per_second": round(recent / RATE_WINDOW, 2),
        "busiest_channels": busiest,
        "processes": processes,
        "hub": {
            "healthy": hub.healthy(),
            "streams": status["streams"],
            "seconds_since_read": status["seconds_since_read"],
            "waiting_for_publishers": status["waiting_for_publishers"],
        },
        "metrics": _metrics(),
    }
    if previous is not None and figures["metrics"] and previous.get("metrics"):
        figures["rates"] = _rates(previous, figures)
    return figures


def _metrics() -> dict[str, Any] | None:
    """Return the metrics' totals the page shows, or None while metrics are off."""
    if metrics.active() is None:
        return None
    metrics.flush()
    totals: dict[str, Any] = {"delivered": {}, "refused": {}, "closed": {}, "open": {}}
    for family in metrics.registry().collect():
        name = family.name.removeprefix(metrics.PREFIX)
        for sample in family.samples:
            labels = sample.labels
            if sample.name.endswith("_created"):
                continue
            if name == "events_delivered":
                totals["delivered"][labels["transport"]] = sample.value
            elif name == "connections_refused" and sample.value:
                key = f"{labels['transport']} {labels['status']}"
                totals["refused"][key] = sample.value
            elif name == "connections_closed" and sample.value:
                totals["closed"][f"{labels['transport']} {labels['reason']}"] = sample.value
            elif name == "connections_open":
                totals["open"][labels["transport"]] = sample.value
            elif name == "events_published":
                totals["published"] = totals.get("published", 0.0) + sample.value
            elif sample.name == metrics.PREFIX + "hub_lag_seconds_sum":
                totals["lag_sum"] = sample.value
            elif sample.name == metrics.PREFIX + "hub_lag_seconds_count":
                totals["lag_count"] = sample.value
            elif name == "publishing_transaction_oldest_age_seconds":
                totals["oldest_publisher_seconds"] = sample.value
    totals["by_process"] = metrics.connections_by_process()
    return totals


def _rates(previous: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """Return deliveries per second and the mean hub lag between two snapshots."""
    seconds = max(current["time"] - previous["time"], 0.001)
    before, after = previous["metrics"], current["metrics"]
    delivered = sum(after["delivered"].values()) - sum(before["delivered"].values())
    count = after.get("lag_count", 0) - before.get("lag_count", 0)
    lag = (after.get("lag_sum", 0) - before.get("lag_sum", 0)) / count if count else None
    return {"delivered_per_second": round(delivered / seconds, 1), "lag_mean_seconds": lag}
