"""The wire protocol (docs/websocket.md): parse client messages, build server messages, and the error codes.

The WebSocket consumer speaks it; the publish endpoint takes its publish
message, and SSE streams send its error codes in band (docs/sse.md).
Pure functions with no Django import.  A client message is one JSON object
in one text frame; :func:`parse` checks its size, its JSON and its shape and
returns a typed request, or raises :class:`ProtocolError` carrying the error
code to send back.  Names and ids are checked against the package's rules by
the consumer (``django_realtime.names``), not here.  Server messages are
built as JSON text; an event's data is spliced in as the stored JSON text,
never decoded and encoded again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

#: Error codes (the ``code`` of an ``error`` message).
BAD_JSON = "bad_json"
BAD_MESSAGE = "bad_message"
INVALID_CHANNEL = "invalid_channel"
FORBIDDEN = "forbidden"
TOO_LARGE = "too_large"
RATE_LIMITED = "rate_limited"
NOT_SUBSCRIBED = "not_subscribed"
ALREADY_SUBSCRIBED = "already_subscribed"
TOO_MANY_CHANNELS = "too_many_channels"
UNAVAILABLE = "unavailable"
ALREADY_JOINED = "already_joined"
NOT_JOINED = "not_joined"
#: SSE only: a stream's ?presence= asked by a page another site served, or malformed.
PRESENCE_FORBIDDEN = "presence_forbidden"
BAD_PRESENCE = "bad_presence"


def not_allowed_to_subscribe(channels: list[str]) -> str:
    """Return the message of a refused subscription, one wording over SSE and WebSockets."""
    return f"not allowed to subscribe to {', '.join(channels)}"


#: Close codes of the package's own (RFC 6455 leaves 4000-4999 to applications).
CLOSE_SLOW_CONSUMER = 4000
CLOSE_LIFETIME = 4001
CLOSE_UNAVAILABLE = 4002
CLOSE_AUTH_REVOKED = 4003  # reserved: not sent by this version
#: The server shuts down; the close reason says when to come back: ``shutdown_reason()``.
CLOSE_SHUTDOWN = 4004


def shutdown_reason(retry_ms: int) -> str:
    """Return the close reason sent with CLOSE_SHUTDOWN: reconnect after *retry_ms* milliseconds."""
    return f"retry={retry_ms}"


#: Longest ``ref`` string a client may attach to a request.
REF_MAX_LENGTH = 200

Ref = str | int | None


class ProtocolError(Exception):
    """A client message the server answers with an ``error`` message."""

    def __init__(self, code: str, message: str, ref: Ref = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref

    def reply(self) -> str:
        """Return the ``error`` message that answers it."""
        return error(self.code, self.message, self.ref)


@dataclass(frozen=True, slots=True)
class Subscribe:
    channel: str
    last_id: str | None = None
    ref: Ref = None


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    channel: str
    ref: Ref = None


@dataclass(frozen=True, slots=True)
class Publish:
    channel: str
    data: Any
    event: str | None = None
    ref: Ref = None


@dataclass(frozen=True, slots=True)
class Ping:
    ref: Ref = None


@dataclass(frozen=True, slots=True)
class Join:
    channel: str
    name: str | None = None
    info: dict[str, Any] | None = None
    ref: Ref = None


@dataclass(frozen=True, slots=True)
class Leave:
    channel: str
    ref: Ref = None


@dataclass(frozen=True, slots=True)
class Who:
    """Ask who is present on a channel (``{"type": "presence"}``)."""

    channel: str
    ref: Ref = None


Request = Subscribe | Unsubscribe | Publish | Ping | Join | Leave | Who


def _reject_constant(name: str) -> None:
    # NaN and Infinity are not JSON (RFC 8259), though Python's json accepts them.
    raise ValueError(f"{name} is not valid JSON")


def utf8_size(text: str) -> int:
    """Return how many bytes *text* takes in UTF-8."""
    return len(text.encode("utf-8", "surrogatepass"))


def parse(text: str, max_size: int) -> Request:
    """Parse one text frame into a request; raise ProtocolError for anything else."""
    # Refuse an oversize message before parsing it: bytes >= characters.
    if len(text) > max_size or (len(text) * 4 > max_size and utf8_size(text) > max_size):
        raise ProtocolError(TOO_LARGE, f"message is larger than {max_size} bytes")
    try:
        message = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise ProtocolError(BAD_JSON, "message is nested too deeply") from None
    except ValueError as exc:
        raise ProtocolError(BAD_JSON, f"message is not valid JSON: {exc}") from None
    if not isinstance(message, dict):
        raise ProtocolError(BAD_MESSAGE, f"message must be a JSON object, not {_json_type(message)}")
    ref = _ref(message)
    kind = message.get("type")
    if kind == "subscribe":
        return Subscribe(_channel(message, ref), _optional_str(message, "last_id", ref), ref)
    if kind == "unsubscribe":
        return Unsubscribe(_channel(message, ref), ref)
    if kind == "publish":
        if "data" not in message:
            raise ProtocolError(BAD_MESSAGE, "publish needs a data field (it may be null)", ref)
        return Publish(_channel(message, ref), message["data"], _optional_str(message, "event", ref), ref)
    if kind == "ping":
        return Ping(ref)
    if kind == "join":
        info = message.get("info")
        if info is not None and not isinstance(info, dict):
            raise ProtocolError(BAD_MESSAGE, f"info must be an object, not {_json_type(info)}", ref)
        return Join(_channel(message, ref), _optional_str(message, "name", ref), info, ref)
    if kind == "leave":
        return Leave(_channel(message, ref), ref)
    if kind == "presence":
        return Who(_channel(message, ref), ref)
    if not isinstance(kind, str):
        raise ProtocolError(BAD_MESSAGE, "message needs a type field (a string)", ref)
    raise ProtocolError(
        BAD_MESSAGE,
        f"unknown type {kind[:40]!r}: expected subscribe, unsubscribe, publish, ping, join, leave or presence",
        ref,
    )


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _ref(message: dict[str, Any]) -> Ref:
    ref = message.get("ref")
    if ref is None or (isinstance(ref, int) and not isinstance(ref, bool)):
        return ref
    if isinstance(ref, str) and len(ref) <= REF_MAX_LENGTH:
        return ref
    # Not echoed: the error would carry the same bad value back.
    raise ProtocolError(BAD_MESSAGE, f"ref must be a string of at most {REF_MAX_LENGTH} characters or an integer")


def _channel(message: dict[str, Any], ref: Ref) -> str:
    channel = message.get("channel")
    if not isinstance(channel, str):
        raise ProtocolError(BAD_MESSAGE, f"{message['type']} needs a channel field (a string)", ref)
    return channel


def _optional_str(message: dict[str, Any], field: str, ref: Ref) -> str | None:
    value = message.get(field)
    if value is not None and not isinstance(value, str):
        raise ProtocolError(BAD_MESSAGE, f"{field} must be a string, not {_json_type(value)}", ref)
    return value


# Server messages ------------------------------------------------------------


def _encode(message: dict[str, Any]) -> str:
    # ASCII escapes: a client's string echoed back may hold a lone surrogate,
    # which has no UTF-8 form and would fail when the server encodes the frame.
    return json.dumps(message, separators=(",", ":"))


def _with_ref(message: dict[str, Any], ref: Ref) -> dict[str, Any]:
    if ref is not None:
        message["ref"] = ref
    return message


def subscribed(channel: str, last_id: str, ref: Ref = None) -> str:
    """Confirm a subscription; the events the cursor *last_id* does not cover follow."""
    return _encode(_with_ref({"type": "subscribed", "channel": channel, "last_id": last_id}, ref))


def unsubscribed(channel: str, ref: Ref = None) -> str:
    """Confirm an unsubscription; no event of *channel* follows."""
    return _encode(_with_ref({"type": "unsubscribed", "channel": channel}, ref))


def event(channel: str, id: str, event: str, data_json: str) -> str:
    """Build an event message around the stored JSON text of its data."""
    head = _encode({"type": "event", "channel": channel, "id": id, "event": event})
    return f'{head[:-1]},"data":{data_json}}}'


def ack(id: str, channel: str, ref: Ref = None) -> str:
    """Acknowledge a publish: the event is stored with *id*."""
    return _encode(_with_ref({"type": "ack", "channel": channel, "id": id}, ref))


def joined(channel: str, connection: str, user: str, ref: Ref = None) -> str:
    """Confirm a join: the connection is present on *channel* as *user*."""
    return _encode(_with_ref({"type": "joined", "channel": channel, "connection": connection, "user": user}, ref))


def left(channel: str, ref: Ref = None) -> str:
    """Confirm a leave."""
    return _encode(_with_ref({"type": "left", "channel": channel}, ref))


def presence(channel: str, cursor: str, members: list[dict[str, Any]], ref: Ref = None) -> str:
    """Tell who is present on *channel*: every presence event up to *cursor* is in *members*."""
    return _encode(_with_ref({"type": "presence", "channel": channel, "cursor": cursor, "members": members}, ref))


def pong(ref: Ref = None) -> str:
    """Answer a ping."""
    return _encode(_with_ref({"type": "pong"}, ref))


def reset(channel: str, reason: str, last_id: str, resume_id: str) -> str:
    """Tell the client its state of *channel* is stale: events resume after *resume_id*."""
    return _encode({"type": "reset", "channel": channel, "reason": reason, "last_id": last_id, "resume_id": resume_id})


def error(code: str, message: str, ref: Ref = None) -> str:
    """Report a request the server could not carry out."""
    return _encode(_with_ref({"type": "error", "code": code, "message": message}, ref))
