"""The WebSocket endpoint: the protocol of docs/websocket.md on the same log and hub as SSE.

The consumer answers what a client asks (subscribe, unsubscribe, publish,
ping, presence), dispatched by message type through ``HANDLERS``; what it
sends and when (the follow loop, the hub's wake-ups, the bounded outbox, a
slow client's close, the close with 4004 and a spread delay when the server
is told to stop: shutdown.py) is its :class:`~django_realtime.websocket.delivery.Delivery`'s.
The ORM is used only on worker threads, whose connections are closed after
each call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.db import DatabaseError

from .. import metrics, protocol, rates
from ..auth import PRESENCE, SUBSCRIBE, get_authorizer, user_or_anonymous
from ..client_publish import check_publish, store_publish, valid_channel
from ..conf import realtime_settings
from ..daphne_server import adapt_connection, frame_writer, unwrap_send
from ..db import run_released
from ..exceptions import InvalidCursor
from ..hub import get_hub
from ..names import parse_cursor
from ..presence import Member, PresenceRefused, get_registry
from ..shutdown import watch_server_signals
from ..streams import Follower
from .delivery import Delivery, event_text

if TYPE_CHECKING:
    from ..hub import Hub

logger = logging.getLogger("django_realtime")


def _within_limit(held: Collection[str], message: str, ref: protocol.Ref) -> None:
    """Refuse one more channel where a connection holds MAX_CHANNELS already (*message* names the limit)."""
    limit = realtime_settings.MAX_CHANNELS
    if len(held) >= limit:
        raise protocol.ProtocolError(protocol.TOO_MANY_CHANNELS, message.format(limit=limit), ref)


#: The method of RealtimeConsumer that handles each request of the protocol; it returns the reply, if any
#: (a subscription replies itself, once its replay is under way).
HANDLERS: dict[type, str] = {
    protocol.Subscribe: "subscribe",
    protocol.Unsubscribe: "unsubscribe",
    protocol.Publish: "publish",
    protocol.Join: "join",
    protocol.Leave: "leave",
    protocol.Who: "who",
    protocol.Ping: "ping",
}


class RealtimeConsumer(AsyncWebsocketConsumer):
    """Serve subscribe, unsubscribe, publish, ping and presence (join, leave, presence) over one WebSocket."""

    hub: Hub
    #: What this connection sends, once it is accepted and served.
    delivery: Delivery

    @property
    def closing(self) -> bool:
        """Return whether the connection is closing, or was never served (refused): nothing more is sent."""
        delivery = getattr(self, "delivery", None)
        return delivery is None or delivery.closing

    async def connect(self) -> None:
        self.user = user_or_anonymous(self.scope.get("user"))
        #: The channels whose presence this connection joined.
        self.joined: dict[str, Member] = {}
        self.hub = get_hub()
        #: Whether this connection holds one of the process's MAX_STREAMS seats.
        self.seated = self.hub.seats.take()
        if not self.seated:
            logger.warning(
                "django_realtime refuses a WebSocket: this process serves MAX_STREAMS (%s)", self.hub.seats.limit
            )
            # Accepted to be closed with a code of our own: a refused handshake
            # is a bare 1006 in the browser, which says nothing of retrying.
            metrics.refused(metrics.WEBSOCKET, 503)
            await self.accept()
            await self.close(protocol.CLOSE_UNAVAILABLE)
            return
        ready = self.hub.ensure_ready(0) or await sync_to_async(self.hub.ensure_ready, thread_sensitive=False)()
        await self.accept()
        if not ready:
            logger.warning("django_realtime closes a WebSocket: the event log cannot be read: %s", self.hub.error)
            metrics.refused(metrics.WEBSOCKET, 503)
            await self.close(protocol.CLOSE_UNAVAILABLE)
            return
        #: Counted open until __call__ ends; its reason is set by Delivery.shut() when the server closes it.
        self.counted = metrics.opened(metrics.WEBSOCKET)
        writable = adapt_connection(self.base_send)
        self.delivery = Delivery(
            self.hub,
            send_text=unwrap_send(self.base_send),
            writable=writable,
            close=self.close,
            counted=self.counted,
            base_send=self.base_send,
            write_frame=frame_writer(self.base_send) if writable is not None else None,
        )
        #: Who this connection is for the rate limits, shared with the client's other connections.
        self.client = rates.scope_client(self.scope)
        self.delivery.start()
        watch_server_signals()
        self.hub.on_drain.add(self.delivery.drained)
        lifetime = realtime_settings.WEBSOCKET_MAX_LIFETIME
        if lifetime:
            self.lifetime = asyncio.get_running_loop().call_later(lifetime, self.delivery.shut, protocol.CLOSE_LIFETIME)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # Here, not in disconnect(): a consumer that crashed never gets there.
            await self.leave_all()
            if getattr(self, "seated", False):
                self.seated = False
                self.hub.seats.give()
            counted = getattr(self, "counted", None)
            if counted is not None:
                counted.close(metrics.SERVER_SHUTDOWN if self.hub.stopping else None)
            delivery = getattr(self, "delivery", None)
            if delivery is not None:
                self.hub.on_drain.discard(delivery.drained)

    async def disconnect(self, code: int) -> None:
        delivery = getattr(self, "delivery", None)
        if delivery is not None:
            delivery.closing = True
        await self.leave_all()
        if hasattr(self, "lifetime"):
            self.lifetime.cancel()
        if delivery is not None:
            await delivery.stop()

    # Receiving --------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.closing:
            return
        if text_data is None:
            await self.delivery.put(protocol.error(protocol.BAD_MESSAGE, "binary frames are not part of the protocol"))
            return
        reply: str | None = None
        try:
            request = protocol.parse(text_data, int(realtime_settings.WEBSOCKET_MAX_MESSAGE_SIZE))
            reply = await getattr(self, HANDLERS[type(request)])(request)
        except protocol.ProtocolError as exc:
            reply = exc.reply()
        if reply is not None:
            await self.delivery.put(reply)

    async def authorize(self, channel: str, action: str, ref: protocol.Ref) -> bool:
        """Ask the ``AUTHORIZE`` hook, on a worker thread: it may query the database.

        A hook that raises fails the request with ``unavailable``, not the connection.
        """
        try:
            return bool(await run_released(get_authorizer(), self.user, channel, action))
        except Exception:
            logger.exception("django_realtime's AUTHORIZE hook raised for %s %s", action, channel)
            raise protocol.ProtocolError(
                protocol.UNAVAILABLE, f"could not check whether you may {action} {channel}; try again later", ref
            ) from None

    async def ping(self, request: protocol.Ping) -> str:
        return protocol.pong(request.ref)

    async def subscribe(self, request: protocol.Subscribe) -> None:
        channel = valid_channel(request.channel, request.ref)
        try:
            cursor = parse_cursor(request.last_id) if request.last_id is not None else None
        except InvalidCursor as exc:
            raise protocol.ProtocolError(protocol.BAD_MESSAGE, f"last_id: {exc}", request.ref) from None
        if channel in self.delivery.followers:
            raise protocol.ProtocolError(protocol.ALREADY_SUBSCRIBED, f"already subscribed to {channel}", request.ref)
        _within_limit(self.delivery.followers, "at most {limit} subscriptions per connection", request.ref)
        if not await self.authorize(channel, SUBSCRIBE, request.ref):
            raise protocol.ProtocolError(protocol.FORBIDDEN, protocol.not_allowed_to_subscribe([channel]), request.ref)
        # Without last_id, start at the hub's cursor: every event it does not cover
        # is delivered, and the client holds a cursor before any event arrives.
        follower = Follower(self.hub, frozenset({channel}), cursor, None)
        position = follower.position
        try:
            resets = await run_released(follower.start) if position.top > self.hub.horizon else []
        except DatabaseError:
            logger.warning(
                "django_realtime could not subscribe to %s: the event log cannot be read", channel, exc_info=True
            )
            raise protocol.ProtocolError(
                protocol.UNAVAILABLE, "the event log cannot be read right now; subscribe again later", request.ref
            ) from None
        # Sent here, not returned: it must precede the subscription's first event.
        if not await self.delivery.put(protocol.subscribed(channel, str(position), request.ref)):
            return
        for item in resets:
            if not await self.delivery.put(event_text(channel, item)):
                return
        self.delivery.follow(channel, follower)

    async def unsubscribe(self, request: protocol.Unsubscribe) -> str:
        channel = valid_channel(request.channel, request.ref)
        if not self.delivery.unfollow(channel):
            raise protocol.ProtocolError(protocol.NOT_SUBSCRIBED, f"not subscribed to {channel}", request.ref)
        return protocol.unsubscribed(channel, request.ref)

    def charge(self, kind: str, ref: protocol.Ref) -> None:
        """Spend one of the client's tokens for *kind*; raise ``rate_limited`` if it has none (rates.py)."""
        if not rates.limiter.take(self.client, kind):
            raise protocol.ProtocolError(protocol.RATE_LIMITED, rates.rate_message(kind), ref)

    async def publish(self, request: protocol.Publish) -> str:
        channel, event = check_publish(request)
        self.charge(rates.PUBLISH, request.ref)
        # The hook and the write on one worker thread, as the publish endpoint runs them.
        return await run_released(store_publish, self.user, channel, event, request.data, request.ref)

    # Presence ---------------------------------------------------------------

    async def join(self, request: protocol.Join) -> str:
        channel = valid_channel(request.channel, request.ref)
        if channel in self.joined:
            raise protocol.ProtocolError(protocol.ALREADY_JOINED, f"already present on {channel}", request.ref)
        _within_limit(self.joined, "present on at most {limit} channels per connection", request.ref)
        self.charge(rates.PRESENCE, request.ref)
        # Both, as over SSE, where a stream joins only channels it may read: presence
        # stores events on the channel, which only its readers may make.
        for action in (SUBSCRIBE, PRESENCE):
            if not await self.authorize(channel, action, request.ref):
                raise protocol.ProtocolError(protocol.FORBIDDEN, f"not allowed to be present on {channel}", request.ref)
        try:
            member = await run_released(get_registry().join, self.user, channel, request.name, request.info)
        except PresenceRefused as exc:
            raise protocol.ProtocolError(exc.code, exc.message, request.ref) from None
        except DatabaseError:
            logger.warning("django_realtime could not join the presence of %s", channel, exc_info=True)
            raise protocol.ProtocolError(
                protocol.UNAVAILABLE, "presence cannot be written right now; join again later", request.ref
            ) from None
        except Exception:  # a PRESENCE_IDENTITY hook that raised: this request fails, not the connection
            logger.exception("django_realtime could not join the presence of %s", channel)
            raise protocol.ProtocolError(
                protocol.UNAVAILABLE, f"could not join the presence of {channel}; try again later", request.ref
            ) from None
        if self.closing:  # the socket closed while the join was written: leave_all() has run
            await run_released(get_registry().leave, member)
            return protocol.left(channel, request.ref)
        self.joined[channel] = member
        return protocol.joined(channel, member.connection, member.user, request.ref)

    async def leave(self, request: protocol.Leave) -> str:
        channel = valid_channel(request.channel, request.ref)
        if channel not in self.joined:
            raise protocol.ProtocolError(protocol.NOT_JOINED, f"not present on {channel}", request.ref)
        self.charge(rates.PRESENCE, request.ref)
        member = self.joined.pop(channel)
        await run_released(get_registry().leave, member)
        return protocol.left(channel, request.ref)

    async def leave_all(self) -> None:
        """End this connection's presence everywhere (a failed write is retried by the heartbeat)."""
        joined = getattr(self, "joined", {})
        while joined:
            # One at a time: if this task is cancelled meanwhile, the rest are still here for __call__.
            _channel, member = joined.popitem()
            try:
                await run_released(get_registry().leave, member)
            except Exception:
                logger.exception("django_realtime could not end a WebSocket's presence on %s", member.channel)

    async def who(self, request: protocol.Who) -> str:
        channel = valid_channel(request.channel, request.ref)
        self.charge(rates.PRESENCE, request.ref)
        if not await self.authorize(channel, SUBSCRIBE, request.ref):
            raise protocol.ProtocolError(
                protocol.FORBIDDEN, f"not allowed to see who is present on {channel}", request.ref
            )
        try:
            cursor, members = await run_released(get_registry().snapshot, channel)
        except DatabaseError:
            logger.warning("django_realtime could not read the presence of %s", channel, exc_info=True)
            raise protocol.ProtocolError(
                protocol.UNAVAILABLE, "presence cannot be read right now; ask again later", request.ref
            ) from None
        return protocol.presence(channel, str(cursor), members, request.ref)
