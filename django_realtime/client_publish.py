"""Publishing for a client: the WebSocket ``publish`` and the HTTP publish endpoint share these steps.

Both ask the ``AUTHORIZE`` hook with the action ``"publish"``, check the same
names and sizes and answer with the same ``ack`` or error (docs/websocket.md),
so a page may publish over either transport with the same rights.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import DatabaseError

from . import metrics, protocol
from .auth import PUBLISH, get_authorizer
from .exceptions import EventTooLarge, InvalidChannelName, InvalidEventData, InvalidEventName
from .names import validate_channel, validate_event_name
from .publishing import store_event

logger = logging.getLogger("django_realtime")


def valid_channel(name: str, ref: protocol.Ref) -> str:
    """Return the channel *name* a client gave; raise ProtocolError ``invalid_channel`` if it breaks the rules."""
    try:
        return validate_channel(name)
    except InvalidChannelName as exc:
        raise protocol.ProtocolError(protocol.INVALID_CHANNEL, str(exc), ref) from None


def check_publish(request: protocol.Publish) -> tuple[str, str]:
    """Return the channel and the event name of *request*; raise ProtocolError if either breaks the rules."""
    channel = valid_channel(request.channel, request.ref)
    event = request.event if request.event is not None else "message"
    try:
        validate_event_name(event)
    except InvalidEventName as exc:
        raise protocol.ProtocolError(protocol.BAD_MESSAGE, str(exc), request.ref) from None
    return channel, event


def publish(channel: str, data: Any, *, event: str) -> Any:
    """Store an event as ``publish()`` does, counted in the metrics as published by a client."""
    validate_event_name(event)
    return store_event(channel, data, event, metrics.CLIENT)


def store_publish(user: Any, channel: str, event: str, data: Any, ref: protocol.Ref = None) -> str:
    """Ask the hook whether *user* may publish to *channel*, store the event, return the ``ack``.

    Raise ProtocolError with ``forbidden``, ``too_large``, ``bad_message`` or
    ``unavailable`` (a hook that raised, a database error): nothing is stored then.
    """
    try:
        allowed = bool(get_authorizer()(user, channel, PUBLISH))
    except Exception:
        logger.exception("django_realtime's AUTHORIZE hook raised for publish %s", channel)
        raise protocol.ProtocolError(
            protocol.UNAVAILABLE, f"could not check whether you may publish {channel}; try again later", ref
        ) from None
    if not allowed:
        raise protocol.ProtocolError(protocol.FORBIDDEN, f"not allowed to publish to {channel}", ref)
    try:
        stored = publish(channel, data, event=event)
    except EventTooLarge as exc:
        raise protocol.ProtocolError(protocol.TOO_LARGE, str(exc), ref) from None
    except InvalidEventData as exc:
        raise protocol.ProtocolError(protocol.BAD_MESSAGE, str(exc), ref) from None
    except DatabaseError:
        logger.exception("django_realtime could not store an event a client published")
        raise protocol.ProtocolError(
            protocol.UNAVAILABLE, "the event could not be stored; try again later", ref
        ) from None
    return protocol.ack(str(stored.id), channel, ref)
