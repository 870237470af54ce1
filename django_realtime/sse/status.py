"""The status page's stream: a snapshot of the deployment every STATUS_INTERVAL seconds, for staff users."""

from __future__ import annotations

import time
from collections.abc import Iterator

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest

from ..status import STATUS_INTERVAL, snapshot
from .decorators import ServerEvent, event_stream


@staff_member_required
@event_stream
def status(request: HttpRequest, **url_kwargs: object) -> Iterator[ServerEvent]:
    """Stream ``status`` events, each one snapshot (django_realtime.status), to the admin's status page."""
    previous = None
    while True:
        current = snapshot(previous)
        yield ServerEvent(current, event="status")
        previous = current
        time.sleep(STATUS_INTERVAL)
