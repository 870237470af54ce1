"""The SSE endpoint, and ``stream_channels`` for views of your own."""

from __future__ import annotations

import inspect
import json
import logging
import math
import socket
from collections.abc import Callable, Iterable, Iterator

from django.db import DatabaseError, transaction
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.views.decorators.http import require_GET

from .. import metrics, rates
from ..auth import PRESENCE, SUBSCRIBE, get_authorizer, user_or_anonymous
from ..conf import realtime_settings
from ..cursor import Cursor
from ..db import release_connections, shut_down_socket
from ..exceptions import InvalidChannelName, InvalidCursor
from ..hub import Hub, get_hub
from ..names import parse_cursor, validate_channel
from ..presence import Member, PresenceRefused, get_registry
from ..protocol import (
    BAD_MESSAGE,
    BAD_PRESENCE,
    FORBIDDEN,
    INVALID_CHANNEL,
    PRESENCE_FORBIDDEN,
    TOO_LARGE,
    TOO_MANY_CHANNELS,
    not_allowed_to_subscribe,
)
from ..streams import Parking
from .encoding import encode_cursor, encode_error
from .origin import from_trusted_page
from .responses import (
    ShutAtDrain,
    SSEResponse,
    asse_stream,
    chunker,
    is_async_request,
    prelude,
    sse_stream,
    warn_if_threaded_worker,
)
from .watchdog import get_watchdog

logger = logging.getLogger("django_realtime")

#: What ``?include=`` may ask each event to carry (docs/sse.md, "The channel of each event").
INCLUDES = ("channel",)
#: How ``?data=`` may ask for the events' data: JSON (the default), or a string's text as it is (htmx).
DATA_FORMATS = ("json", "text")
#: The response header that names the stream's own members: "<channel> <connection>, ..." (docs/sse.md#presence).
PRESENCE_HEADER = "Realtime-Presence"
#: Why a stream's ?presence= is refused when another site's page asked for it.
CROSS_SITE = "Presence is joined only from this site's pages (or CSRF_TRUSTED_ORIGINS, CORS_ALLOWED_ORIGINS)"
#: Longest ``?info=`` text read, in multiples of PRESENCE_MAX_INFO: JSON escapes may take six bytes a character.
INFO_TEXT_FACTOR = 6


class BadParameter(ValueError):
    """A query parameter of the SSE endpoint has a value it does not know."""


def _plain(status: int, message: str) -> HttpResponse:
    return HttpResponse(message + "\n", status=status, content_type="text/plain; charset=utf-8")


def retry_after() -> str:
    """Return the seconds a client refused with a 503 should wait: the ``RETRY`` setting's, at least one."""
    return str(max(1, math.ceil(int(realtime_settings.RETRY) / 1000)))


def _rate_limited(kind: str) -> HttpResponse:
    """Return a 429 with ``Retry-After``: the client has no token left for *kind* (django_realtime.rates)."""
    response = _plain(429, rates.rate_message(kind).capitalize() + ".")
    response["Retry-After"] = str(rates.retry_after(kind))
    return response


def unavailable(message: str) -> HttpResponse:
    """Return a 503 with ``Retry-After``, which realtime.js and well-behaved clients honour."""
    response = _plain(503, message)
    response["Retry-After"] = retry_after()
    return response


def request_cursor(request: HttpRequest) -> Cursor | None:
    """Return the resume cursor of *request*, or None for "live only".

    The ``Last-Event-ID`` header, which EventSource sends on reconnect, wins
    over the ``lastEventId`` query parameter, which a page sets only on its
    first connect.  Raise InvalidCursor for a malformed value.
    """
    # META, not request.headers: that copy of every header would live as long as the stream.
    value = request.META.get("HTTP_LAST_EVENT_ID")
    if value is None or value == "":
        value = request.GET.get("lastEventId")
    if value is None or value == "":
        return None
    return parse_cursor(value)


def wants_channels(request: HttpRequest) -> bool:
    """Return whether *request* asks each event to name its channel (``?include=channel``).

    Raise BadParameter for any other ``include`` value: a typo must not
    silently give a stream without channels.
    """
    values = request.GET.getlist("include")
    for value in values:
        if value not in INCLUDES:
            shown = value[:40]
            raise BadParameter(f"Invalid include: {shown!r}; the only one is 'channel'")
    return bool(values)


def wants_text(request: HttpRequest) -> bool:
    """Return whether *request* asks for string data as text (``?data=text``), not as JSON.

    Raise BadParameter for a value other than ``json`` or ``text``, or for
    more than one ``data`` parameter.
    """
    values = request.GET.getlist("data")
    if len(values) > 1:
        raise BadParameter("Give ?data= once")
    if values and values[0] not in DATA_FORMATS:
        raise BadParameter(f"Invalid data: {values[0][:40]!r}; give 'json' (the default) or 'text'")
    return values == ["text"]


class Format:
    """What a stream's query parameters ask of its encoding: ``?include=channel`` and ``?data=text``."""

    __slots__ = ("with_channels", "text")

    def __init__(self, request: HttpRequest) -> None:
        self.with_channels = wants_channels(request)
        self.text = wants_text(request)


class Joins:
    """The presence a stream asks to join (``?presence=``, ``?name=``, ``?info=``), checked against its channels."""

    __slots__ = ("channels", "info", "name", "refusal", "user")

    def __init__(self, request: HttpRequest, user: object, streamed: list[str]) -> None:
        self.channels = list(dict.fromkeys(request.GET.getlist("presence")))
        for channel in self.channels:
            if channel not in streamed:
                raise BadParameter(f"presence={channel[:40]!r} is not a channel of this stream: add ?channel= for it")
        self.user = user
        self.name = request.GET.get("name")
        self.info: object = None
        #: Why ``?info=`` cannot be taken: every join refuses it, in band where it can be.
        self.refusal: PresenceRefused | None = None
        info = request.GET.get("info")
        if info is not None and self.channels:
            self.info, self.refusal = _parse_info(info)


def _parse_info(text: str) -> tuple[object, PresenceRefused | None]:
    """Return the value of an ``?info=`` text, or why it is refused: too long, or not JSON (nested too deep too)."""
    limit = int(realtime_settings.PRESENCE_MAX_INFO)
    if len(text) > INFO_TEXT_FACTOR * limit:  # before parsing: the parser's work grows with the text
        return None, PresenceRefused(TOO_LARGE, f"info is more than PRESENCE_MAX_INFO ({limit}) bytes of JSON")
    try:
        return json.loads(text), None
    except RecursionError:
        return None, PresenceRefused(BAD_MESSAGE, "info is nested too deeply")
    except ValueError:
        return text, None  # refused by the join, as not an object


def stream_channels(request: HttpRequest, channels: Iterable[str]) -> HttpResponseBase:
    """Stream *channels* of the log to *request* as SSE, with replay; no authorization.

    Use it in a view that decides the channels itself, for example::

        @login_required
        def notifications(request):
            return stream_channels(request, [f"user:{request.user.pk}"])
    """
    names = frozenset(validate_channel(name) for name in channels)
    if not names:
        raise InvalidChannelName("stream_channels() needs at least one channel")
    try:
        form = Format(request)
    except BadParameter as exc:
        return _counted(_plain(400, str(exc)))
    return _counted(_stream(request, names, form, b""))


def _counted(response: HttpResponseBase) -> HttpResponseBase:
    """Return *response*, counted in the metrics if it refuses the stream."""
    if response.status_code >= 400:
        metrics.refused(metrics.SSE, response.status_code)
    return response


def _join(joins: Joins | None, with_channels: bool) -> tuple[list[Member], list[bytes], HttpResponse | None]:
    """Join the presence *joins* asks for: the members, the in-band errors, or a refusal of the whole request.

    Raise DatabaseError, having left what it joined, if presence cannot be written.
    """
    members: list[Member] = []
    errors: list[bytes] = []
    if joins is None:
        return members, errors, None
    registry = get_registry()
    try:
        for channel in joins.channels:
            try:
                if joins.refusal is not None:
                    raise joins.refusal
                members.append(registry.join(joins.user, channel, joins.name, joins.info))
            except PresenceRefused as exc:
                code = PRESENCE_FORBIDDEN if exc.code == FORBIDDEN else BAD_PRESENCE
                if not with_channels:
                    for member in members:
                        registry.leave(member)
                    return [], [], _plain(403 if code == PRESENCE_FORBIDDEN else 400, f"Presence on {channel}: {exc}")
                errors.append(encode_error(channel, code, str(exc)))
    except BaseException:  # the database, or a PRESENCE_IDENTITY hook that raised: none of it stays joined
        for member in members:
            registry.leave(member)
        raise
    return members, errors, None


def _leaver(members: list[Member]) -> Callable[[], None]:
    def leave() -> None:
        registry = get_registry()
        for member in members:
            registry.leave(member)

    return leave


def _stream(
    request: HttpRequest, names: frozenset[str], form: Format, errors: bytes, joins: Joins | None = None
) -> HttpResponseBase:
    """Stream *names* (checked already) to *request*, after the in-band *errors*, present where *joins* says."""
    try:
        cursor = request_cursor(request)
    except InvalidCursor as exc:
        return _plain(400, f"Invalid Last-Event-ID: {exc}")
    hub = get_hub()
    ready = hub.ensure_ready()
    # The view may have touched the database (sessions, users, the hook):
    # a stream must not hold that connection while it waits.
    release_connections()
    if not ready:
        # The cause (hosts, users...) is for the log, not for anonymous clients.
        logger.error("django_realtime: the event log cannot be read: %s", hub.error or "timed out")
        return unavailable("The event log cannot be read right now; try again later.")
    if not hub.seats.take():
        logger.warning("django_realtime refuses a stream: this process serves MAX_STREAMS (%s)", hub.seats.limit)
        return unavailable("This server has too many open streams right now; try again later.")
    if cursor is None:  # live from now, not from when the server first pulls the stream
        cursor = hub.cursor  # before the joins: the stream delivers its own presence.join
    try:
        members, refusals, refused = _join(joins, form.with_channels)
    except DatabaseError:
        hub.seats.give()
        logger.warning("django_realtime: a stream's presence cannot be written", exc_info=True)
        return unavailable("Presence cannot be written right now; try again later.")
    except BaseException:  # a hook that raised: a server error, which takes no seat
        hub.seats.give()
        raise
    finally:
        release_connections()
    if refused is not None:
        hub.seats.give()
        return refused
    errors += b"".join(refusals)
    keepalive = float(realtime_settings.KEEPALIVE)
    lifetime = realtime_settings.SSE_MAX_LIFETIME
    lifetime = float(lifetime) if lifetime else None
    encode = metrics.counted(metrics.SSE, chunker(with_channels=form.with_channels, text=form.text))
    # A client that asks for channels is told the cursor the stream starts at (docs/sse.md).
    first = prelude() + (encode_cursor(str(cursor)) if form.with_channels else b"") + errors
    response: SSEResponse
    if is_async_request(request):
        connection = metrics.opened(metrics.SSE)
        if not connection.closed:
            metrics.sent(metrics.SSE, 0, len(first))
        give_seat = hub.seats.giver()
        # Given back by the stream itself too: Django 6.1 does not close the
        # response of a stream whose task the hub cancelled (SSE_SEND_TIMEOUT).
        shut_at_drain = ShutAtDrain(hub)
        stream = asse_stream(
            hub, names, cursor, keepalive, lifetime, request.scope, give_seat, encode, first, connection, shut_at_drain
        )
        response = SSEResponse(stream)
        response._resource_closers.append(connection.close)
        response._resource_closers.append(shut_at_drain)
        # The server closes every response it was given, streamed or not, whatever ended it.
        response._resource_closers.append(give_seat)
        if members:
            response._resource_closers.append(_leaver(members))
    else:
        warn_if_threaded_worker(request)
        ending = WSGIStream(metrics.active(), hub, request.META.get("gunicorn.socket"), members)
        if not ending.closed:
            metrics.sent(metrics.SSE, 0, len(first))
        # Watched only where the watchdog can cut the connection: gunicorn gives the socket.
        watched = ending.sock is not None and get_watchdog(hub).add(ending)
        # Enabled by a server that writes to the socket from the hub's wake-ups (gunicorn_worker.py).
        parking = Parking()
        iterator = sse_stream(
            hub, names, cursor, keepalive, lifetime, ending if watched else None, encode, first, parking
        )
        ending.generator = parking.generator = iterator
        response = SSEResponse(iterator)
        response.parking = parking
        # Before the iterator's own close(): whether it had ended tells who ended the stream.
        response._resource_closers.insert(0, ending.finish)
    if members:
        # Which of the channel's members is this stream: a client that reads headers (fetch) knows itself.
        response[PRESENCE_HEADER] = ", ".join(f"{member.channel} {member.connection}" for member in members)
    return response


class WSGIStream(metrics.Connection):
    """What a WSGI stream needs to end: one object and one closer per stream, as a stream's memory is what a server
    has most (a closure for each need cost more).

    It counts the stream (while metrics are on), is watched by the watchdog for
    a client that stops reading (``since``, ``cut()``), and once the server
    closes the response: gives the stream's seat back, leaves its presence,
    and shuts its connection if the hub drains.
    """

    __slots__ = ("since", "hub", "sock", "members", "generator")

    generator: Iterator[bytes]

    def __init__(
        self, counted: metrics.Metrics | None, hub: Hub, sock: socket.socket | None, members: list[Member]
    ) -> None:
        super().__init__(counted, metrics.SSE)
        self.since = 0.0
        self.hub = hub
        #: The client's socket, where the server gives it (gunicorn): the hub may cut it.
        self.sock = sock
        self.members = members or None

    def cut(self) -> None:
        """Cut the connection of a client that stopped reading (the watchdog calls this), noting why."""
        self.reason = metrics.SLOW_CLIENT
        self._shut()

    def _shut(self) -> None:
        if self.sock is not None:
            shut_down_socket(self.sock.fileno())  # -1 once closed: nothing to shut down

    def finish(self) -> None:
        """End the stream: the server closes its response, ended by the stream itself, its client, or the hub."""
        hub = self.hub
        get_watchdog(hub).unwatch(self)
        hub.seats.give()
        if hub.stopping or hub.draining:
            self.reason = metrics.SERVER_SHUTDOWN
        elif inspect.getgeneratorstate(self.generator) == inspect.GEN_CLOSED:  # type: ignore[arg-type]
            self.reason = metrics.ENDED  # its lifetime, or the log could not be read
        self.close()
        if hub.draining:
            # gunicorn keeps an HTTP/1.1 connection open for the next request when the
            # request began before its worker was told to stop: the client's reconnect
            # would come back on it to the stopping worker, and be told to go again.  The
            # server closes the response after it wrote its end: the client has the whole
            # stream, then the end of the connection, and reconnects to a new worker.
            self._shut()
        if self.members:
            registry = get_registry()
            for member in self.members:
                registry.leave(member)


@transaction.non_atomic_requests
@require_GET
def events(request: HttpRequest, channels: Iterable[str] | None = None) -> HttpResponseBase:
    """Stream the channels named by ``?channel=`` parameters (or by the URLconf).

    Without ``?include=channel`` one invalid or denied channel refuses the
    whole request (400, 403), as a plain ``EventSource`` can only be told so.
    With it, each refused channel gets an in-band ``error`` event at the
    start of the stream and the others stream; only a request none of whose
    channels is allowed is refused whole.
    """
    if channels is not None:
        return stream_channels(request, channels)
    return _counted(_events(request))


def _events(request: HttpRequest) -> HttpResponseBase:
    try:
        form = Format(request)
    except BadParameter as exc:
        return _plain(400, str(exc))
    with_channels = form.with_channels
    names = list(dict.fromkeys(request.GET.getlist("channel")))
    limit = realtime_settings.MAX_CHANNELS
    if not names:
        return _plain(400, "Give at least one channel: ?channel=NAME")
    asked, extra = names, []
    if len(names) > limit:
        if not with_channels:
            return _plain(400, f"Too many channels: at most {limit} per connection, got {len(names)}")
        # The first MAX_CHANNELS stream; each of the others is refused in band, alone.
        names, extra = names[:limit], names[limit:]
    invalid: dict[str, str] = {}
    for name in names:
        try:
            validate_channel(name)
        except InvalidChannelName as exc:
            if not with_channels:
                return _plain(400, f"Invalid channel: {exc}")
            invalid[name] = f"Invalid channel: {exc}"
    authorize = get_authorizer()
    user = user_or_anonymous(getattr(request, "user", None))
    denied = [name for name in names if name not in invalid and not authorize(user, name, SUBSCRIBE)]
    allowed = frozenset(name for name in names if name not in invalid and name not in denied)
    if not with_channels and denied:
        return _plain(403, not_allowed_to_subscribe(denied))
    try:
        joins = Joins(request, user, asked)
    except BadParameter as exc:
        return _plain(400, str(exc))
    forbidden = [name for name in joins.channels if name in allowed and not authorize(user, name, PRESENCE)]
    if forbidden and not with_channels:
        return _plain(403, f"Not allowed to be present on: {', '.join(forbidden)}")
    joins.channels = [name for name in joins.channels if name in allowed and name not in forbidden]
    cross_site = []
    if joins.channels and not from_trusted_page(request):
        # A join changes state: never on behalf of another site's page (sse/origin.py).
        if not with_channels:
            return _plain(403, CROSS_SITE)
        cross_site, joins.channels = joins.channels, []
    if joins.channels:
        client = rates.request_client(request)
        if not all(rates.limiter.take(client, rates.PRESENCE) for _ in joins.channels):
            return _rate_limited(rates.PRESENCE)
    if not allowed:  # nothing to stream: refuse the request, naming every channel's cause
        if denied:
            return _plain(403, "; ".join([*invalid.values(), not_allowed_to_subscribe(denied)]))
        return _plain(400, "; ".join(invalid.values()))
    errors = [encode_error(name, INVALID_CHANNEL, message) for name, message in invalid.items()]
    errors += [encode_error(name, FORBIDDEN, not_allowed_to_subscribe([name])) for name in denied]
    errors += [encode_error(name, PRESENCE_FORBIDDEN, f"Not allowed to be present on: {name}") for name in forbidden]
    errors += [encode_error(name, PRESENCE_FORBIDDEN, CROSS_SITE) for name in cross_site]
    too_many = f"Too many channels: at most {limit} per connection"
    errors += [encode_error(name, TOO_MANY_CHANNELS, too_many) for name in extra]
    return _stream(request, allowed, form, b"".join(errors), joins if joins.channels else None)


@require_GET
def presence(request: HttpRequest, **url_kwargs: object) -> HttpResponse:
    """Tell who is present on ``?channel=`` as JSON: ``{"channel", "cursor", "members"}`` (docs/presence.md).

    Authorized as a subscription to the channel.  *url_kwargs* are an
    ``include()``'s extra arguments, as for health().
    """
    channel = request.GET.get("channel", "")
    try:
        validate_channel(channel)
    except InvalidChannelName as exc:
        return _plain(400, f"Invalid channel: {exc}")
    user = user_or_anonymous(getattr(request, "user", None))
    if not rates.limiter.take(rates.request_client(request), rates.PRESENCE):
        return _rate_limited(rates.PRESENCE)
    if not get_authorizer()(user, channel, SUBSCRIBE):
        return _plain(403, f"Not allowed to see who is present on: {channel}")
    hub = get_hub()
    try:
        if not hub.ensure_ready(float(realtime_settings.CURSOR_TIMEOUT)):
            return unavailable("The event log cannot be read right now; try again later.")
        cursor, members = get_registry().snapshot(channel)
    except DatabaseError:
        logger.warning("django_realtime could not read the presence of %s", channel, exc_info=True)
        return unavailable("Presence cannot be read right now; try again later.")
    finally:
        release_connections()
    response = HttpResponse(
        json.dumps({"channel": channel, "cursor": str(cursor), "members": members}),
        content_type="application/json",
    )
    response["Cache-Control"] = "no-store"
    return response


@require_GET
def health(request: HttpRequest, **url_kwargs: object) -> HttpResponse:
    """Report this process's hub as JSON: 200 while it reads the log, 503 (with the reason) when it cannot.

    *url_kwargs* are the extra arguments of an ``include()`` that fixes the
    endpoint's channels (``{"channels": [...]}``): not the health check's.

    For a load balancer's or an orchestrator's health check.  It starts the
    hub if need be and waits for nothing, and tells anonymous clients no
    more than a status and the kind of error.
    """
    hub = get_hub()
    hub.ensure_ready(0)
    status = hub.status()
    status["error"] = type(hub.error).__name__ if hub.error is not None else None
    status["slow_clients_closed"] = get_watchdog(hub).slow_clients
    healthy = hub.healthy()
    response = HttpResponse(
        json.dumps({"status": "ok" if healthy else "unavailable", **status}),
        status=200 if healthy else 503,
        content_type="application/json",
    )
    if not healthy:
        response["Retry-After"] = retry_after()
    response["Cache-Control"] = "no-store"
    return response
