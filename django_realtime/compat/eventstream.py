"""django-eventstream's ``send_event()``, on :func:`django_realtime.publish`.

Moving from django-eventstream then starts with one changed import::

    from django_realtime.compat.eventstream import send_event

The signature is django-eventstream 5.3's (``django_eventstream/eventstream.py``
at fanout/django-eventstream f77ffa7).  What each argument does here, and
what differs on the wire, is in docs/migrate-from-django-eventstream.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..exceptions import InvalidEventData, UnsupportedOption
from ..publishing import publish

if TYPE_CHECKING:
    from ..models import Event

__all__ = ["send_event"]


def send_event(
    channel: str,
    event_type: str,
    data: Any,
    skip_user_ids: Iterable[Any] | None = None,
    async_publish: bool = True,
    json_encode: bool = True,
) -> Event:
    """Publish *data* on *channel* as an event named *event_type*, and return the stored event.

    As with :func:`~django_realtime.publish`, the event is stored before this
    returns, inside the current transaction if there is one, and delivered
    once that commits; *async_publish* therefore changes nothing.  With
    *json_encode* false, *data* must be a str of JSON text, published as the
    value it encodes.  A non-empty *skip_user_ids* raises UnsupportedOption:
    every subscriber of a channel gets all its events.
    """
    if skip_user_ids:
        # django-eventstream itself applies skip_user_ids only through a GRIP
        # proxy (Pushpin, Fanout); its own streams deliver to everyone.  Here
        # no stream is told who to leave out, so the honest answer is an error.
        raise UnsupportedOption(
            "skip_user_ids cannot be honoured: every subscriber of a channel gets its events. "
            "Publish to per-user channels instead (docs/migrate-from-django-eventstream.md)."
        )
    if not json_encode:
        data = _decoded(data)
    return publish(channel, data, event=event_type)


def _decoded(text: Any) -> Any:
    """Return the value that the JSON *text* passed with ``json_encode=False`` encodes."""
    if not isinstance(text, str):
        raise TypeError(f"with json_encode=False, data must be a str of JSON text, not {type(text).__name__}")
    try:
        return json.loads(text)
    except ValueError as exc:
        # Event data is JSON on every transport; text sent as it is would be
        # a JSON string for JSON.parse() on the other side.
        raise InvalidEventData(
            f"with json_encode=False, data must be JSON text ({exc}); to send text as it is, "
            "publish() the str and stream it with ?data=text"
        ) from None
