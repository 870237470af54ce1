"""Publish live actions and refreshes: rendered with autoescaping, stored in the caller's transaction."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connections, models, transaction

from ..conf import realtime_settings
from ..publishing import publish
from .actions import INSERTS, LIVE_EVENT, NO_REQUEST, REFRESH_EVENT, action_html, validate_dom_id
from .requests import current_request_id

#: Whether broadcasts are suppressed in this context (thread, greenlet or task).
_suppressed: ContextVar[bool] = ContextVar("django_realtime_live_suppressed", default=False)
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")

Channels = str | Iterable[str]


def _key(pk: Any) -> str:
    # A primary key in a DOM id or a channel name: letters, digits, _ and - stay, anything else is _XX.
    return _UNSAFE.sub(lambda m: "".join(f"_{b:02x}" for b in m.group().encode()), str(pk))


def dom_id(instance: models.Model, prefix: str | None = None) -> str:
    """Return the DOM id of *instance*: ``<app_label>-<model_name>-<pk>``, after ``<prefix>-`` if given."""
    if instance.pk is None:
        raise ValueError(f"{instance!r} has no primary key yet: save it first")
    meta = instance._meta
    value = f"{meta.app_label}-{meta.model_name}-{_key(instance.pk)}"
    return validate_dom_id(f"{prefix}-{value}" if prefix else value)


def channel_for(obj: models.Model | type[models.Model]) -> str:
    """Return the channel of a model (``live:<app_label>.<model_name>``) or of one instance (``...:<pk>``).

    Per-object channels are guessable: the authorization hook must check
    them (see docs/live.md, "Security", and :func:`object_for_channel`).
    """
    meta = obj._meta
    name = f"live:{meta.app_label}.{meta.model_name}"
    if isinstance(obj, models.Model):
        if obj.pk is None:
            raise ValueError(f"{obj!r} has no primary key yet: save it first")
        name += f":{_key(obj.pk)}"
    return name


def object_for_channel(channel: str) -> models.Model | None:
    """Return the instance a per-object channel of :func:`channel_for` names, None if it names none (or none exists)."""
    from django.apps import apps

    parts = channel.split(":")
    if len(parts) != 3 or parts[0] != "live" or "." not in parts[1]:
        return None
    try:
        model = apps.get_model(parts[1])
    except (LookupError, ValueError):
        return None
    try:
        found = list(model._default_manager.filter(pk__in=_candidates(parts[2]))[:2])
    except (ValueError, TypeError, ValidationError):  # a key that is no primary key of the model: a stranger's name
        return None
    return next((instance for instance in found if _key(instance.pk) == parts[2]), None)


def _candidates(key: str) -> list[str]:
    return [re.sub(r"_([0-9a-f]{2})", lambda m: chr(int(m.group(1), 16)), key), key]


def cursor() -> str:
    """Return the log's cursor now, as ``{% realtime_cursor %}`` does: take it in a view before reading the state."""
    from ..templatetags.realtime import realtime_cursor

    return realtime_cursor()


def _channels(channels: Channels) -> list[str]:
    names = [channels] if isinstance(channels, str) else list(channels)
    return list(dict.fromkeys(names))


@contextmanager
def suppressed() -> Iterator[None]:
    """Broadcast nothing from this block (imports, data migrations, fixtures): no action, no refresh."""
    token = _suppressed.set(True)
    try:
        yield
    finally:
        _suppressed.reset(token)


def is_suppressed() -> bool:
    """Return whether broadcasts are suppressed here."""
    return _suppressed.get()


def _store(using: str | None, channel: str, data: str, event: str) -> None:
    """Publish in the transaction of *using* when the log lives there; else once that transaction commits."""
    if using is None or using == realtime_settings.DATABASE:
        publish(channel, data, event=event)
    else:
        # The rows and the log are in two databases: no one transaction holds both (docs/live.md).
        transaction.on_commit(lambda: publish(channel, data, event=event), using=using)


def broadcast(
    action: str,
    channels: Channels,
    *,
    target: str,
    html: str = "",
    template_name: str | list[str] | None = None,
    context: dict[str, Any] | None = None,
    dom_id: str | None = None,
    using: str | None = None,
) -> None:
    """Publish *action* on each of *channels*: one event each, in the current transaction.

    The fragment is *html*, or *template_name* rendered with *context*
    (autoescaped, as every Django template is).  *target* and *dom_id*: see
    :func:`~django_realtime.live.actions.action_html`.  Nothing is published
    inside :func:`suppressed`.
    """
    if is_suppressed():
        return
    if template_name is not None and action != "remove":
        from django.template.loader import render_to_string

        html = render_to_string(template_name, context)
    data = action_html(action, target=target, dom_id=dom_id if action in INSERTS else None, html=html)
    for channel in _channels(channels):
        _store(using, channel, data, LIVE_EVENT)


def refresh(channels: Channels, *, using: str | None = None) -> None:
    """Tell the pages following *channels* to fetch their region again, with their own session.

    One refresh per channel per transaction: later ones in the same
    transaction are dropped (pages debounce the rest).  The request being
    served (``Realtime-Request-Id``, see :class:`RequestIdMiddleware`) is
    named, so that the page that made the change can skip it.
    """
    if is_suppressed():
        return
    alias = using or realtime_settings.DATABASE
    data = current_request_id() or NO_REQUEST
    for channel in _channels(channels):
        if _refreshed_in_transaction(alias, channel):
            continue
        _store(using, channel, data, REFRESH_EVENT)


class _Refreshed(set):
    """The channels refreshed in one transaction; a no-op on-commit callback, so that Django drops it with the
    transaction (at commit, at rollback, and with a savepoint rolled back)."""

    def __call__(self) -> None:
        pass


def _refreshed_in_transaction(alias: str, channel: str) -> bool:
    """Return whether *channel* had its refresh in this transaction already; note it if not."""
    connection = connections[alias]
    if not connection.in_atomic_block:
        return False
    here = set(connection.savepoint_ids)
    mine = None
    for entry in connection.run_on_commit:
        sids, func = entry[0], entry[1]
        if isinstance(func, _Refreshed):
            # Django drops the callbacks of a savepoint rolled back: what is left was published and stays.
            if channel in func:
                return True
            if sids == here:
                mine = func
    # Noted at this savepoint's level only, so that rolling it back forgets the note with the event.
    if mine is None:
        transaction.on_commit(_Refreshed({channel}), using=alias)
    else:
        mine.add(channel)
    return False
