"""Encode Server-Sent Events, as WHATWG HTML "Server-sent events" defines them.

Pure functions with no Django import.  A value may hold any line break the
spec knows (CRLF, LF, lone CR), so data is split on exactly those; never with
``str.splitlines()``, which also splits on U+2028, U+0085 and others and would
corrupt the data.  Field values that cannot hold a line break (``event``,
``id``) are refused rather than rewritten.
"""

from __future__ import annotations

import functools
import json
import re

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
KEEPALIVE = b": keepalive\n\n"
#: The field that names an event's channel, on streams that ask for it (docs/sse.md).
#: Not one of the spec's four: EventSource and other conforming parsers ignore it.
CHANNEL_FIELD = "channel"


class FieldError(ValueError):
    """An SSE field value would break out of its line."""


def _single_line(name: str, value: str) -> str:
    nul = name != "event"  # a browser ignores an id that holds NUL; a channel never holds one
    if "\r" in value or "\n" in value or (nul and "\0" in value):
        raise FieldError(f"SSE {name} must not contain CR, LF{' or NUL' if nul else ''}: {value!r}")
    return value


def encode_event(data: str, *, event: str | None = None, id: str | None = None) -> bytes:
    """Encode one event; *data* may span lines, the other fields may not."""
    parts = []
    if id is not None:
        parts.append(f"id: {_single_line('id', id)}\n")
    if event is not None:
        parts.append(f"event: {_single_line('event', event)}\n")
    for line in _LINE_BREAK.split(data):
        parts.append(f"data: {line}\n")
    parts.append("\n")
    return "".join(parts).encode("utf-8")


def encode_comment(text: str = "") -> bytes:
    """Encode a comment, which clients ignore; used for keepalives."""
    lines = _LINE_BREAK.split(text)
    return ("".join(f": {line}\n" if line else ":\n" for line in lines) + "\n").encode("utf-8")


def encode_cursor(id: str) -> bytes:
    """Encode an ``id:`` with no data: it sets the client's last event id, and dispatches nothing.

    A stream that starts "from now" says where now is, so that a client that
    reconnects before any event came resumes from there, not from a later now.
    """
    return f"id: {_single_line('id', id)}\n\n".encode()


def encode_retry(milliseconds: int) -> bytes:
    """Encode a ``retry:`` field telling the client its reconnection delay."""
    if not isinstance(milliseconds, int) or isinstance(milliseconds, bool) or milliseconds < 0:
        raise FieldError(f"SSE retry must be a non-negative int, got {milliseconds!r}")
    return f"retry: {milliseconds}\n\n".encode("ascii")


@functools.lru_cache(maxsize=4096)
def encode_channel_field(channel: str) -> bytes:
    """Encode the ``channel:`` line that precedes an event's own lines on a stream that asks for channels."""
    return f"{CHANNEL_FIELD}: {_single_line(CHANNEL_FIELD, channel)}\n".encode()


def encode_error(channel: str, code: str, message: str) -> bytes:
    """Encode the in-band ``error`` event that refuses one *channel* of a stream, with no id.

    The data is ASCII JSON, so a refused name, however malformed (CR, LF,
    U+2028...), stays inside one ``data:`` line and cannot inject a field.
    """
    data = json.dumps({"channel": channel, "code": code, "message": message}, ensure_ascii=True)
    return encode_event(data, event="error")
