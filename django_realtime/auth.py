"""The default authorization hook (setting ``AUTHORIZE``), and pair channels for two users."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from fnmatch import fnmatchcase
from typing import Any

from django.utils.module_loading import import_string

from .conf import realtime_settings
from .names import validate_channel

#: Actions the hook is asked about.
SUBSCRIBE = "subscribe"
PUBLISH = "publish"
PRESENCE = "presence"


def user_or_anonymous(user: Any) -> Any:
    """Return *user* (a request's, a connection scope's), or AnonymousUser where there is none.

    A site without AuthenticationMiddleware (or, for WebSockets,
    AuthMiddlewareStack) has no user: the hooks are asked as anonymous.
    """
    if user is None:
        from django.contrib.auth.models import AnonymousUser

        return AnonymousUser()
    return user


def authorize(user: Any, channel: str, action: str) -> bool:
    """Allow what the patterns allow anyone, and pair channels to their two users; deny the rest.

    A channel under a ``PAIR_CHANNELS`` prefix (``call:3-7``) is for users 3
    and 7 alone, whatever the patterns say.  Otherwise subscribing needs a
    ``PUBLIC_CHANNELS`` pattern, publishing from a client (a WebSocket
    ``publish``, or the publish endpoint) a ``PUBLISH_CHANNELS`` pattern, which
    by default there are none of: clients may not publish.  Joining a
    channel's presence needs a ``PRESENCE_CHANNELS`` pattern (none by default).
    """
    for prefix in realtime_settings.PAIR_CHANNELS:
        if channel.startswith(f"{prefix}:"):
            return action in (SUBSCRIBE, PUBLISH, PRESENCE) and is_pair_member(user, channel, prefix)
    if action == SUBSCRIBE:
        patterns = realtime_settings.PUBLIC_CHANNELS
    elif action == PUBLISH:
        patterns = realtime_settings.PUBLISH_CHANNELS
    elif action == PRESENCE:
        patterns = realtime_settings.PRESENCE_CHANNELS
    else:
        return False
    return any(fnmatchcase(channel, pattern) for pattern in patterns)


def _pair_key(pk: str) -> tuple[int, int | str]:
    # Integer keys in numeric order (call:2-10, not call:10-2), anything else as text.
    return (0, int(pk)) if pk.isascii() and pk.isdigit() else (1, pk)


def _pk_text(user_or_pk: Any) -> str:
    """Return the text a pair channel names a user by: their primary key's, a UUID's ``.hex`` (no ``-``)."""
    pk = getattr(user_or_pk, "pk", user_or_pk)
    return pk.hex if isinstance(pk, uuid.UUID) else str(pk)


def pair_channel(prefix: str, a: Any, b: Any) -> str:
    """Return the one channel of two users, ``<prefix>:<pkA>-<pkB>``, the lower primary key first.

    *a* and *b* are users or primary keys; a UUID key is named by its
    ``.hex``, as :func:`is_pair_member` reads it.  Raise ValueError for one
    user twice, or a primary key the channel name rules do not allow or that
    holds ``-``.
    """
    first, second = (_pk_text(x) for x in (a, b))
    if first == second:
        raise ValueError(f"a pair channel needs two different users, got {first!r} twice")
    for pk in (first, second):
        if not pk or "-" in pk:
            raise ValueError(f"a pair channel's primary keys must be non-empty and hold no '-': {pk!r}")
    low, high = sorted((first, second), key=_pair_key)
    return validate_channel(f"{prefix}:{low}-{high}")


def is_pair_member(user: Any, channel: str, prefix: str) -> bool:
    """Return whether *channel* is the pair channel (under *prefix*) of *user* and another user.

    Only the name :func:`pair_channel` gives counts: ``call:7-3`` or
    ``call:3-3`` is nobody's.  Anonymous users are in no pair.
    """
    if not getattr(user, "is_authenticated", False) or user.pk is None:
        return False
    rest = channel.removeprefix(f"{prefix}:")
    if rest == channel:
        return False
    first, sep, second = rest.partition("-")
    mine = _pk_text(user)
    if not sep or mine not in (first, second):
        return False
    try:
        return pair_channel(prefix, first, second) == channel
    except ValueError:
        return False


def get_authorizer() -> Callable[[Any, str, str], bool]:
    """Return the callable named by the ``AUTHORIZE`` setting."""
    hook = realtime_settings.AUTHORIZE
    return import_string(hook) if isinstance(hook, str) else hook
