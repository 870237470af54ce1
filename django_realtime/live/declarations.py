"""What a model broadcasts: a registry of declarations, applied by the ORM's save and delete signals."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from django.db import models
from django.db.models.signals import post_delete, post_save

from .actions import INSERTS, LIVE_EVENT, PENDING_EVENT, action_html, pending_html
from .broadcasting import Channels, _channels, _store, broadcast, dom_id, is_suppressed, refresh

M = TypeVar("M", bound=type[models.Model])
#: Channels, or a callable of the instance that returns them.
ChannelsOf = Channels | Callable[[Any], Channels]

UPDATES = ("replace", "update")
#: When a declaration's fragments are rendered: at the save, or by a task after the commit.
RENDERS = ("now", "later")


@dataclass(frozen=True)
class Declaration:
    """What one model broadcasts: see :func:`register`."""

    model: type[models.Model]
    to: ChannelsOf | None
    template: str | None
    target: str | Callable[[Any], str] | None
    on_create: str | None
    on_update: str | None
    on_delete: str | None
    refreshes: ChannelsOf | None
    prefix: str | None
    render: str = "now"

    def channels(self, instance: Any) -> Channels:
        return _resolve(self.to, instance)

    def dom_id(self, instance: Any) -> str:
        return dom_id(instance, self.prefix)

    def send(self, instance: Any, change: str, using: str | None) -> None:
        """Publish what *change* (``create``, ``update``, ``delete``) of *instance* broadcasts."""
        action = {"create": self.on_create, "update": self.on_update, "delete": self.on_delete}[change]
        if action is not None and self.to is not None:
            element = self.dom_id(instance)
            target = _resolve(self.target, instance) if action in INSERTS else element
            if self.render == "later" and action != "remove":  # a removal has nothing to render
                self._send_later(instance, action, target, element, using)
            else:
                context = {"object": instance, instance._meta.model_name: instance, "dom_id": element}
                broadcast(
                    action,
                    self.channels(instance),
                    target=target,
                    template_name=self.template_name(),
                    context=context,
                    dom_id=element,
                    using=using,
                )
        if self.refreshes is not None:
            refresh(_resolve(self.refreshes, instance), using=using)

    def _send_later(self, instance: Any, action: str, target: str, element: str, using: str | None) -> None:
        """Publish the envelope of *action* with the row; enqueue its render for after the commit.

        An insert's envelope inserts an empty ``<template>`` of the instance's
        DOM id, where the fragment goes, in commit order; its render then
        replaces it (docs/live.md, "Render later").
        """
        from .later import enqueue, require

        if is_suppressed():
            return
        require()
        channels = _channels(self.channels(instance))
        if action in INSERTS:
            placeholder = f'<template id="{element}" data-live-pending></template>'
            data, event = action_html(action, target=target, dom_id=element, html=placeholder), LIVE_EVENT
            action, target = "replace", element
        else:
            data, event = pending_html(action, target=target), PENDING_EVENT
        for channel in channels:
            _store(using, channel, data, event)
        enqueue(instance, action, channels, target, element, self.template_name(), using)

    def template_name(self) -> str:
        meta = self.model._meta
        return self.template or f"{meta.app_label}/_{meta.model_name}.html"


def _resolve(value: Any, instance: Any) -> Any:
    return value(instance) if callable(value) else value


_registry: dict[type[models.Model], Declaration] = {}


def register(
    model: type[models.Model],
    *,
    to: ChannelsOf | None = None,
    template: str | None = None,
    target: str | Callable[[Any], str] | None = None,
    on_create: str | None = "append",
    on_update: str | None = "replace",
    on_delete: str | None = "remove",
    refreshes: ChannelsOf | None = None,
    prefix: str | None = None,
    render: str = "now",
) -> Declaration:
    """Broadcast the changes of *model*'s instances made through the ORM (``save()``, ``delete()``).

    *to*: the channels an instance's changes go to (a name, names, or a
    callable of the instance).  *template*: renders one instance (default
    ``<app_label>/_<model_name>.html``), with ``object``, the model's name and
    ``dom_id`` in its context.  *target*: the DOM id (or a callable of the
    instance) of the container that *on_create* (``append``, ``prepend``,
    ``before``, ``after``) inserts into or next to.  *on_update*:
    ``replace`` or ``update``; *on_delete*: ``remove``; None for nothing.
    *refreshes*: channels told to refresh on every change, for fragments
    that depend on the viewer.  *render*: ``"now"`` renders in the save;
    ``"later"`` publishes the change's envelope with the row and renders its
    fragment in a task after the commit (Django's tasks framework).
    """
    if not (isinstance(model, type) and issubclass(model, models.Model)):
        raise TypeError(f"register() takes a model class, not {model!r}")
    if on_create not in (*INSERTS, None):
        raise ValueError(f"on_create is one of {', '.join(INSERTS)} or None, not {on_create!r}")
    if on_update not in (*UPDATES, None):
        raise ValueError(f"on_update is 'replace', 'update' or None, not {on_update!r}")
    if on_delete not in ("remove", None):
        raise ValueError(f"on_delete is 'remove' or None, not {on_delete!r}")
    if render not in RENDERS:
        raise ValueError(f"render is 'now' or 'later', not {render!r}")
    if to is None and refreshes is None:
        raise ValueError(f"{model.__name__} broadcasts nothing: give to= (channels for actions), refreshes=, or both")
    if to is not None and on_create is not None and target is None:
        raise ValueError(f"on_create={on_create!r} needs target=, the DOM id of the container to {on_create} to")
    declaration = Declaration(model, to, template, target, on_create, on_update, on_delete, refreshes, prefix, render)
    _registry[model] = declaration
    uid = f"django_realtime.live:{model._meta.label}"
    post_save.connect(_saved, sender=model, dispatch_uid=uid, weak=False)
    post_delete.connect(_deleted, sender=model, dispatch_uid=uid, weak=False)
    return declaration


def unregister(model: type[models.Model]) -> None:
    """Stop broadcasting *model*'s changes."""
    _registry.pop(model, None)
    uid = f"django_realtime.live:{model._meta.label}"
    post_save.disconnect(sender=model, dispatch_uid=uid)
    post_delete.disconnect(sender=model, dispatch_uid=uid)


def broadcasts(**options: Any) -> Callable[[M], M]:
    """Decorate a model class: ``@live.broadcasts(to=..., target=...)`` is :func:`register` with those options."""

    def decorate(model: M) -> M:
        register(model, **options)
        return model

    return decorate


def declaration_for(model: type[models.Model]) -> Declaration:
    """Return the declaration of *model*; raise LookupError if it broadcasts nothing."""
    try:
        return _registry[model]
    except KeyError:
        raise LookupError(f"{model.__name__} is not registered with django_realtime.live") from None


def _saved(sender: type[models.Model], instance: Any, created: bool, raw: bool, using: str, **kwargs: Any) -> None:
    if not raw:  # loaddata: fixtures are imports, not changes someone is watching
        _registry[sender].send(instance, "create" if created else "update", using)


def _deleted(sender: type[models.Model], instance: Any, using: str, **kwargs: Any) -> None:
    _registry[sender].send(instance, "delete", using)


def saved(instances: Any | Iterable[Any], *, created: bool = False, using: str | None = None) -> None:
    """Broadcast *instances* as ``save()`` would have: after ``bulk_create()``, ``bulk_update()``, ``update()``."""
    for instance in _many(instances):
        declaration_for(type(instance)).send(instance, "create" if created else "update", using)


def deleted(instances: Any | Iterable[Any], *, using: str | None = None) -> None:
    """Broadcast the removal of *instances*, as ``delete()`` would have (for rows deleted with raw SQL)."""
    for instance in _many(instances):
        declaration_for(type(instance)).send(instance, "delete", using)


def _many(instances: Any) -> Iterable[Any]:
    return [instances] if isinstance(instances, models.Model) else instances
