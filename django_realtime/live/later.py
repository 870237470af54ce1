"""Render later: a declaration's fragments rendered by a background task, in the order of the row's states.

The change's envelope is published with the row, in its transaction: for an
insert, the insert of an empty ``<template>`` of the instance's DOM id (so
that inserts keep commit order, whatever order their renders finish in);
for an update, an event no page applies (``live-pending``).  The HTML
follows from :func:`render_later`, a task enqueued once that transaction
commits.  The task renders the row as it is *now*, and publishes the render
while it holds the row's lock, having checked that the row did not change
since it read it.  So a render later in the log never shows an older state
than one before it, whatever order the tasks run in, and a page that
applies the log in order ends with the newest (docs/live.md, "Render later").
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.db import models, router, transaction
from django.template.loader import render_to_string

from ..publishing import publish
from .actions import INSERTS, LIVE_EVENT, action_html

try:  # Django 6.0+
    from django.tasks import task as _task
except ImportError:
    try:  # the backport, on Django 5.2
        from django_tasks import task as _task  # type: ignore[no-redef]
    except ImportError:
        _task = None  # type: ignore[assignment]

#: How many times a render is redone because the row changed while it rendered, before it renders under the lock.
ATTEMPTS = 3
MISSING = (
    "render='later' needs Django's tasks framework: Django 6.0 or later (django.tasks), or on Django 5.2 "
    "the django-tasks backport (pip install django-tasks)"
)


def available() -> bool:
    """Return whether a tasks framework (``django.tasks`` or ``django_tasks``) can be imported."""
    return _task is not None


def require() -> None:
    """Raise ImproperlyConfigured unless a tasks framework can be imported."""
    if not available():
        raise ImproperlyConfigured(MISSING)


def state(instance: models.Model) -> dict[str, Any]:
    """Return the values of *instance*'s concrete fields: what a render of it could show from its own row."""
    return {field.attname: getattr(instance, field.attname) for field in instance._meta.concrete_fields}


def render_fragment(instance: models.Model, template: str, dom_id: str) -> str:
    """Render *instance* with *template*, with the context a declaration gives it (docs/live.md)."""
    context = {"object": instance, str(instance._meta.model_name): instance, "dom_id": dom_id}
    return render_to_string(template, context)


def render_later(
    label: str, key: str, action: str, channels: list[str], target: str, dom_id: str, template: str, using: str | None
) -> bool:
    """Render the instance *key* of model *label* as it is now, and publish *action* with it on *channels*.

    Return False (and publish nothing) if the row is gone: its removal is in
    the log already.  With a tasks framework this is the task itself
    (``django_realtime.live.later.render_later``; ``.call()`` runs it here).
    """
    model = apps.get_model(label)
    alias = using or router.db_for_write(model)
    manager = model._default_manager.db_manager(alias)
    pk = model._meta.pk.to_python(key)
    for _ in range(ATTEMPTS):
        instance = manager.filter(pk=pk).first()
        if instance is None:
            return False
        html = render_fragment(instance, template, dom_id)
        with transaction.atomic(using=alias):
            current = manager.select_for_update().filter(pk=pk).first()
            if current is None:
                return False
            if state(current) == state(instance):
                # The row cannot change until this transaction ends: no newer render can be in the log before this one.
                _publish(action, channels, target, dom_id, html)
                return True
        # The row changed while it rendered (that change's own render follows): render the newer state.
    with transaction.atomic(using=alias):
        # Changed on every attempt: render under the lock, which holds the row's writers back meanwhile.
        current = manager.select_for_update().filter(pk=pk).first()
        if current is None:
            return False
        _publish(action, channels, target, dom_id, render_fragment(current, template, dom_id))
    return True


def _publish(action: str, channels: list[str], target: str, dom_id: str, html: str) -> None:
    data = action_html(action, target=target, dom_id=dom_id if action in INSERTS else None, html=html)
    for channel in channels:
        # In the lock's transaction when the log shares the row's database; else committed at once, lock held.
        publish(channel, data, event=LIVE_EVENT)


if _task is not None:
    # Decorated in place: a worker finds a task by its function's module and name (django.tasks).
    render_later = _task(render_later)  # type: ignore[assignment]


def enqueue(
    instance: models.Model, action: str, channels: list[str], target: str, dom_id: str, template: str, using: str | None
) -> None:
    """Enqueue the render of *instance*'s *action* once the current transaction of *using* commits."""
    require()
    args = (instance._meta.label, instance._meta.pk.value_to_string(instance), action, channels, target, dom_id,
            template, using)  # fmt: skip
    alias = using or router.db_for_write(type(instance), instance=instance)
    # After the commit: a worker that ran before it would not see the row's new state (or, for a create, the row).
    transaction.on_commit(lambda: render_later.enqueue(*args), using=alias)  # type: ignore[attr-defined]
