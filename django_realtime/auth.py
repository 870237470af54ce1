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


def authorize(user: Any, channel: str, action: str) -> bool:
    """Allow subscribing to channels matching a ``PUBLIC_CHANNELS`` pattern; deny the rest."""
    if action != SUBSCRIBE:
        return False
    return any(fnmatchcase(channel, pattern) for pattern in realtime_settings.PUBLIC_CHANNELS)


def get_authorizer() -> Callable[[Any, str, str], bool]:
    """Return the callable named by the ``AUTHORIZE`` setting."""
    hook = realtime_settings.AUTHORIZE
    return import_string(hook) if isinstance(hook, str) else hook
