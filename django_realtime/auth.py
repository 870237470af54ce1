"""The default authorization hook (setting ``AUTHORIZE``)."""

from __future__ import annotations

from collections.abc import Callable
from fnmatch import fnmatchcase
from typing import Any

from django.utils.module_loading import import_string

from .conf import realtime_settings

#: Actions the hook is asked about.
SUBSCRIBE = "subscribe"
PUBLISH = "publish"
PRESENCE = "presence"


def authorize(user: Any, channel: str, action: str) -> bool:
    """Allow what the patterns allow anyone; deny the rest.

    Subscribing needs a ``PUBLIC_CHANNELS`` pattern, publishing from a client
    (a WebSocket ``publish``) a ``PUBLISH_CHANNELS`` pattern, which by default
    there are none of: clients may not publish.  Joining a channel's presence
    needs a ``PRESENCE_CHANNELS`` pattern (none by default).
    """
    if action == SUBSCRIBE:
        patterns = realtime_settings.PUBLIC_CHANNELS
    elif action == PUBLISH:
        patterns = realtime_settings.PUBLISH_CHANNELS
    elif action == PRESENCE:
        patterns = realtime_settings.PRESENCE_CHANNELS
    else:
        return False
    return any(fnmatchcase(channel, pattern) for pattern in patterns)


def get_authorizer() -> Callable[[Any, str, str], bool]:
    """Return the callable named by the ``AUTHORIZE`` setting."""
    hook = realtime_settings.AUTHORIZE
    return import_string(hook) if isinstance(hook, str) else hook
