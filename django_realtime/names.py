"""Validate the names and ids that strangers control.

Channel names, event names and cursors end up inside SSE field lines and
database queries, so they are checked against a narrow alphabet.  A CR, LF or
NUL would let a name inject SSE fields (WHATWG HTML, "Server-sent events"), so
those get an error message of their own.
"""

from __future__ import annotations

import json
import re
import string

from .cursor import Cursor, CursorError
from .exceptions import InvalidChannelName, InvalidCursor, InvalidEventName

CHANNEL_MAX_LENGTH = 200
EVENT_MAX_LENGTH = 100
#: Letters, digits and ``_ - . : @ / = +``.
CHANNEL_PATTERN = re.compile(r"[A-Za-z0-9_\-.:@/=+]+\Z")
_CHANNEL_CHARACTERS = frozenset(string.ascii_letters + string.digits + "_-.:@/=+")
#: Letters, digits and ``_ - . :``.
EVENT_PATTERN = re.compile(r"[A-Za-z0-9_\-.:]+\Z")
#: Event names a client library gives a meaning of its own.
RESERVED_EVENTS = frozenset({"reset", "error", "presence.join", "presence.leave"})
_LINE_BREAKS = ("\r", "\n", "\0")


def _check(kind: str, value: object, pattern: re.Pattern[str], max_length: int, allowed: str) -> str:
    if not isinstance(value, str):
        return f"{kind} must be a str, not {type(value).__name__}"
    if not value:
        return f"{kind} must not be empty"
    if any(c in value for c in _LINE_BREAKS):
        return f"{kind} must not contain CR, LF or NUL: {_shown(value)}"
    if len(value) > max_length:
        return f"{kind} is longer than {max_length} characters: {_shown(value)}"
    if not pattern.match(value):
        return f"{kind} may contain only {allowed}: {_shown(value)}"
    return ""


def _shown(value: str, length: int = 40) -> str:
    """Return *value* for an error message: its start, so that an error is never much longer than its cause."""
    return repr(value) if len(value) <= length else f"{value[:length]!r}..."


def validate_channel(name: object) -> str:
    """Return *name* if it is a valid channel name, else raise InvalidChannelName."""
    error = _check("channel name", name, CHANNEL_PATTERN, CHANNEL_MAX_LENGTH, "letters, digits and _-.:@/=+")
    if error:
        raise InvalidChannelName(error)
    return name  # type: ignore[return-value]


def validate_event_name(name: object, *, allow_reserved: bool = False) -> str:
    """Return *name* if it is a valid event name, else raise InvalidEventName."""
    error = _check("event name", name, EVENT_PATTERN, EVENT_MAX_LENGTH, "letters, digits and _-.:")
    if error:
        raise InvalidEventName(error)
    if not allow_reserved and name in RESERVED_EVENTS:
        raise InvalidEventName(f"event name {name!r} is reserved for django_realtime's own use")
    return name  # type: ignore[return-value]


def channel_pattern_regex(pattern: str) -> str:
    """Return the regular expression of the channel names an fnmatch *pattern* matches, as fnmatchcase() does.

    Every database reads it alike (PostgreSQL, MySQL, MariaDB, Python's
    ``re`` for SQLite), because a pattern may hold only what a channel name
    holds, ``*``, ``?`` and sets: ``[ab]``, ``[!ab]``, ``[a-f]`` of channel
    characters, ``-`` first or last standing for itself.  Raise ValueError for
    anything else, which either matches no channel or would mean one thing to
    fnmatch and another (or an error, ``x[!]`` giving ``[^]``) to the database.
    """
    regex, index = ["^"], 0
    while index < len(pattern):
        char = pattern[index]
        index += 1
        if char == "*":
            regex.append(".*")
        elif char == "?":
            regex.append(".")
        elif char == "[":
            end = pattern.find("]", index)
            if end < 0:
                raise ValueError("a '[' has no ']'")
            body = pattern[index:end]
            members = body[1:] if body.startswith("!") else body
            _check_set(members)
            regex.append(("[^" if body.startswith("!") else "[") + members + "]")
            index = end + 1
        elif char in _CHANNEL_CHARACTERS:
            regex.append(re.escape(char))
        else:
            raise ValueError(f"{char!r} is in no channel name: use letters, digits, _-.:@/=+, * ? and [...]")
    return "".join(regex) + "$"


def _check_set(members: str) -> None:
    """Raise ValueError unless *members* (a set without its brackets and ``!``) is channel characters and ranges."""
    if not members:
        raise ValueError("a set [...] is empty")
    index = 0
    while index < len(members):
        char = members[index]
        if char not in _CHANNEL_CHARACTERS:
            raise ValueError(f"a set [...] holds {char!r}, which is in no channel name")
        if index + 2 < len(members) and members[index + 1] == "-":
            high = members[index + 2]
            if high not in _CHANNEL_CHARACTERS:
                raise ValueError(f"a set [...] holds {high!r}, which is in no channel name")
            if "-" in (char, high) or char > high:
                raise ValueError(f"a set [...] holds the range {char}-{high}, which goes down or ends in '-'")
            index += 3
        elif char == "-" and 0 < index < len(members) - 1:
            raise ValueError("a '-' in a set [...] that is neither first, last nor in a range")
        else:
            index += 1


def parse_cursor(value: object) -> Cursor:
    """Parse a cursor given back by a client (``Last-Event-ID``, ``last_id``): an event id, or a cursor's text."""
    try:
        return Cursor.parse(value)
    except CursorError as exc:
        raise InvalidCursor(str(exc)) from None


def reset_json(reason: str, cursor: object, resume: object, channels: list[str]) -> str:
    """Return the data of a ``reset`` event, in-band or stored: the client's state is stale, reload it."""
    return json.dumps(
        {"reason": reason, "last_event_id": str(cursor), "resume_id": str(resume), "channels": channels},
        separators=(",", ":"),
    )
