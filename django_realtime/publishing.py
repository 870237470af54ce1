"""``publish()``: store an event in the log and wake the subscribers after commit."""

from __future__ import annotations

import json
from functools import partial
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connections, transaction

from . import metrics, signals, skips
from .conf import realtime_settings
from .eventlog import insert_event
from .exceptions import EventTooLarge, InvalidEventData
from .names import validate_channel, validate_event_name

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .models import Event


def encode_data(data: Any, *, limit: int | None = None) -> str:
    """Return the compact JSON text of *data*, no longer than *limit* bytes if given."""
    options: dict[str, Any] = {"cls": DjangoJSONEncoder, "separators": (",", ":"), "allow_nan": False}
    try:
        text = json.dumps(data, ensure_ascii=False, **options)
    except RecursionError:
        raise InvalidEventData("event data is nested too deeply to encode as JSON") from None
    except (TypeError, ValueError) as exc:
        raise InvalidEventData(f"event data is not JSON-serialisable: {exc}") from exc
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        # A lone surrogate (a JSON "\\ud800" decodes to one) is no Unicode
        # text: no UTF-8 holds it, so a ?data=text stream could not send it.
        raise InvalidEventData("event data holds a lone surrogate (U+D800 to U+DFFF), which is not text") from None
    if limit is not None and size > limit:
        raise EventTooLarge(f"event data is {size} bytes of JSON, more than MAX_DATA_SIZE ({limit})")
    return text


def event_saving(sender: type[Event], instance: Event, raw: bool, **kwargs: Any) -> None:
    """Receive ``pre_save`` for Event: check rows written through the ORM, loaddata too."""
    if not getattr(instance, "_announced", False):
        instance.check_fields()


def publish(channel: str, data: Any = None, *, event: str = "message") -> Event:
    """Store an event on *channel* and return it; subscribers see it once the transaction commits.

    The event goes to the database named by the DATABASE setting, inside
    that connection's current transaction, if any.

    *data* is any value ``DjangoJSONEncoder`` can encode.  Raise a
    ``ValueError`` subclass for a bad channel or event name or bad data.
    """
    validate_event_name(event)
    return store_event(channel, data, event)


def store_event(channel: str, data: Any, event: str, path: str = metrics.PUBLISH) -> Event:
    """Publish as publish() does, under any event name, reserved ones too: for the package's own events.

    *path* is how it was published, for the metrics: publish(), a client, presence.
    """
    from .backends import get_backend

    validate_channel(channel)
    alias = realtime_settings.DATABASE
    backend = get_backend()
    data_json = encode_data(data, limit=realtime_settings.MAX_DATA_SIZE)
    notify = backend.insert_notify(channel) if connections[alias].vendor == "postgresql" else ()
    stored = insert_event(
        alias, channel, event, data_json, notify=notify, idle_timeout=realtime_settings.PUBLISH_IDLE_TIMEOUT
    )
    backend.published(stored, alias, notified=bool(notify))
    metrics.published(path)
    _stored([stored], alias)
    return stored


def publish_html(
    channel: str,
    template_name: str | list[str],
    context: dict[str, Any] | None = None,
    *,
    event: str = "message",
    request: Any = None,
) -> Event:
    """Render *template_name* with *context* (and *request*, for context processors) and publish the HTML.

    The event's data is the rendered text, a JSON string like any other: a
    stream asked for with ``?data=text`` sends it as it is, which is what
    htmx's SSE extension swaps into the page (see docs/htmx.md).
    """
    from django.template.loader import render_to_string

    return publish(channel, render_to_string(template_name, context, request=request), event=event)


def _stored(events: list[Event], using: str) -> None:
    """After *events* are stored (by publish() or the ORM): look out for their ids being stepped over
    (django_realtime.skips), send ``event_stored`` now and ``event_published`` once their transaction commits."""
    from .models import Event

    skips.watch(using, events)
    for event in events:
        signals.event_stored.send(sender=Event, event=event, using=using)
    if signals.event_published.receivers:
        for event in events:
            transaction.on_commit(
                partial(signals.event_published.send, sender=Event, event=event, using=using), using=using
            )


def announce(events: Iterable[Event], using: str) -> None:
    """Wake every process's hub once *events*, stored without publish(), commit: once per channel.

    publish() wakes the hubs itself; this is for rows written through the
    ORM (``create()``, ``save()``, ``bulk_create()``, the admin, ``loaddata``).
    """
    from .backends import get_backend

    if using != realtime_settings.DATABASE:
        return
    fresh = [event for event in events if event.pk is not None and not getattr(event, "_announced", False)]
    newest = {event.channel: event for event in fresh}
    if newest:
        backend = get_backend()
        for event in newest.values():
            backend.published(event, using)
        metrics.published(metrics.ORM, len(fresh))
        _stored(fresh, using)


def event_saved(sender: type[Event], instance: Event, created: bool, using: str, **kwargs: Any) -> None:
    """Receive ``post_save`` for Event."""
    if created:
        announce([instance], using)


def events_stored(sender: type[Event], events: list[Event], using: str, **kwargs: Any) -> None:
    """Receive ``signals.events_stored``, sent by ``Event.objects.bulk_create()``."""
    announce(events, using)


async def apublish(channel: str, data: Any = None, *, event: str = "message") -> Event:
    """Publish from async code: :func:`publish` run on Django's sync thread."""
    return await sync_to_async(publish)(channel, data, event=event)
