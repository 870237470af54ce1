"""The WebSocket endpoint: the protocol of docs/websocket.md on the same log and hub as SSE.

Each connection runs one follow loop, whatever its number of subscriptions:
it joins the hub once for the connection's set of channels, keeps one
:class:`~django_realtime.streams.Follower` (cursor) per subscription, and is
woken once per batch that carries any of them.  A message goes straight to
the server when nothing is queued and the server can take it; otherwise it
waits in the connection's bounded :class:`~django_realtime.websocket.outbox.Outbox`,
which one sender task hands on, under daphne only while Twisted's write
buffer has room.  A client that leaves the outbox full for
``WEBSOCKET_SEND_TIMEOUT`` seconds is closed with 4000 and resumes from its
last ids.  When the server is told to stop (shutdown.py), each connection
sends what it has, then closes with 4004 and a spread delay.  The ORM is
used only on worker threads, whose connections are closed after each call.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.db import DatabaseError

from .. import metrics, protocol, rates
from ..auth import PRESENCE, SUBSCRIBE, get_authorizer, user_or_anonymous
from ..client_publish import check_publish, store_publish, valid_channel
from ..conf import realtime_settings
from ..daphne_server import adapt_connection, close_with_reason, send_now, unwrap_send
from ..db import run_released
from ..exceptions import InvalidCursor
from ..hub import get_hub
from ..names import parse_cursor
from ..presence import Member, PresenceRefused, get_registry
from ..shutdown import watch_server_signals
from ..streams import READ, WAIT, Follower
from .outbox import Outbox

if TYPE_CHECKING:
    from ..eventlog import Item
    from ..hub import Hub, Waiters
    from ..streams import Follower as FollowerType

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


#: Why a connection closed with each code, for the metrics (any other: it ended).
CLOSE_REASONS = {protocol.CLOSE_SLOW_CONSUMER: metrics.SLOW_CLIENT, protocol.CLOSE_SHUTDOWN: metrics.SERVER_SHUTDOWN}


class Waker:
    """Stands in the hub's list for a future: resolving it runs the connection's woken()."""

    __slots__ = ("consumer", "group", "fired")

    def __init__(self, consumer: RealtimeConsumer, group: Waiters) -> None:
        self.consumer = consumer
        self.group = group
        self.fired = False

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self.consumer.loop

    def done(self) -> bool:
        return self.fired

    def set_result(self, result: None) -> None:
        if not self.fired:
            self.fired = True
            self.consumer.woken()


def event_text(channel: str, item: Item) -> str:
    """Return the WebSocket message of *item* on *channel*, made once per process and event."""
    if not item.channel or item.event == "reset":  # a Follower's reset, or a stored one (django_realtime.skips)
        fields = json.loads(item.data_json)
        return protocol.reset(channel, fields["reason"], fields["last_event_id"], fields["resume_id"])
    text = item.websocket
    if text is None:
        text = item.websocket = protocol.event(item.channel, item.cursor_text, item.event, item.data_json)
    return text


class RealtimeConsumer(AsyncWebsocketConsumer):
    """Serve subscribe, unsubscribe, publish, ping and presence (join, leave, presence) over one WebSocket."""

    hub: Hub
    outbox: Outbox

    async def connect(self) -> None:
        self.user = user_or_anonymous(self.scope.get("user"))
        #: One cursor per subscribed channel.
        self.followers: dict[str, Follower] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        #: The channels whose presence this connection joined.
        self.joined: dict[str, Member] = {}
        self.closing = False
        self.hub = get_hub()
        #: Whether this connection holds one of the process's MAX_STREAMS seats.
        self.seated = self.hub.seats.take()
        if not self.seated:
            logger.warning(
                "django_realtime refuses a WebSocket: this process serves MAX_STREAMS (%s)", self.hub.seats.limit
            )
            # Accepted to be closed with a code of our own: a refused handshake
            # is a bare 1006 in the browser, which says nothing of retrying.
            self.closing = True
            metrics.refused(metrics.WEBSOCKET, 503)
            await self.accept()
            await self.close(protocol.CLOSE_UNAVAILABLE)
            return
        ready = self.hub.ensure_ready(0) or await sync_to_async(self.hub.ensure_ready, thread_sensitive=False)()
        await self.accept()
        if not ready:
            logger.warning("django_realtime closes a WebSocket: the event log cannot be read: %s", self.hub.error)
            self.closing = True
            metrics.refused(metrics.WEBSOCKET, 503)
            await self.close(protocol.CLOSE_UNAVAILABLE)
            return
        #: Counted open until __call__ ends; its reason is set by shut() when the server closes it.
        self.counted = metrics.opened(metrics.WEBSOCKET)
        self.outbox = Outbox(int(realtime_settings.WEBSOCKET_SEND_BUFFER))
        self.sending = asyncio.Lock()
        self.writable = adapt_connection(self.base_send)
        #: Where event messages go: the server's send, past middleware that does nothing for them.
        self.send_text = unwrap_send(self.base_send)
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.wakeup: asyncio.Future[None] = loop.create_future()
        self.regroup = False
        self.group: Waiters | None = None
        #: Under daphne, whose send() never waits, the hub's wake-up sends a
        #: parked connection's events itself (see woken()); elsewhere it
        #: wakes the connection's task.
        self.fast = self.writable is not None
        self.parked = False
        self.waker: Waker | None = None
        #: Events the fast path could not send at once, for the task to queue, in order.
        self.pending: list[tuple[str, FollowerType, str]] = []
        #: Who this connection is for the rate limits, shared with the client's other connections.
        self.client = rates.scope_client(self.scope)
        self._start(self._send_loop())
        self._start(self._follow_loop())
        watch_server_signals()
        self.hub.on_drain.add(self._drained)
        lifetime = realtime_settings.WEBSOCKET_MAX_LIFETIME
        if lifetime:
            self.lifetime = loop.call_later(lifetime, self.shut, protocol.CLOSE_LIFETIME)

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
            hub = getattr(self, "hub", None)
            if hub is not None:
                hub.on_drain.discard(self._drained)

    async def disconnect(self, code: int) -> None:
        self.closing = True
        await self.leave_all()
        if hasattr(self, "lifetime"):
            self.lifetime.cancel()
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # Following --------------------------------------------------------------

    def kick(self) -> None:
        """Have the follow loop look at its subscriptions again: they changed."""
        self.regroup = True
        if not self.wakeup.done():
            self.wakeup.set_result(None)

    async def _follow_loop(self) -> None:
        hub = self.hub
        try:
            while True:
                if self.regroup:
                    self.regroup = False
                    self.group = self._regroup(hub, self.group)
                # The task's own future: woken() or the hub resolves it at the
                # group's next wake-up, kick() when the subscriptions change.
                self.wakeup = self.loop.create_future()
                self._listen()
                if self.pending and not await self._flush():
                    return
                if not await self._deliver():
                    if hub.draining:
                        self.part()
                        return
                    self.parked = True
                    try:
                        await self.wakeup
                    finally:
                        self.parked = False
        finally:
            if self.group is not None:
                hub.leave(self.group)
                self.group = None

    def _listen(self) -> None:
        """Be woken by the group's next wake-up: register before looking, so nothing landing after is missed."""
        group = self.group
        if group is None:
            return
        if not self.fast:
            self.hub.register(group, self.wakeup)
        elif self.waker is None or self.waker.fired or self.waker.group is not group:
            self.waker = Waker(self, group)
            self.hub.register(group, self.waker)

    def woken(self) -> None:
        """Handle a wake-up of the group on the loop: send the events now if the task is parked and all is clear.

        This spares a task wake-up per connection and event: at 1,000
        subscribers of a channel, one callback sends to all of them, as a
        bare ASGI application would.  Anything else (a read from the log,
        a full outbox, a paused transport) goes to the task.
        """
        if self.closing:
            return
        if not self.parked or self.pending:
            self._rouse()
            return
        try:
            self._deliver_now()
        except Exception:
            logger.exception("django_realtime could not send WebSocket events at once; sending them from the task")
            self.fast = False
            self._rouse()

    def _rouse(self) -> None:
        if not self.wakeup.done():
            self.wakeup.set_result(None)

    def _drained(self) -> None:
        """Have the follow loop look again, from the thread that drains the hub: it ends the connection."""
        self.loop.call_soon_threadsafe(self._rouse)

    def part(self) -> None:
        """Close as the server shuts down: 4004, and a delay drawn up to SHUTDOWN_RETRY to come back after."""
        delay = random.randint(0, int(realtime_settings.SHUTDOWN_RETRY))
        self.shut(protocol.CLOSE_SHUTDOWN, protocol.shutdown_reason(delay))

    def _deliver_now(self) -> None:
        now = time.monotonic()
        while True:
            self._listen()
            progressed = False
            for channel, follower in list(self.followers.items()):
                action, value = follower.step(now)
                if action == WAIT:
                    continue
                if action == READ:  # the task reads the log: step() left the cursor where it was
                    self._rouse()
                    return
                progressed = True
                size = 0
                for item in value:  # type: ignore[union-attr]
                    text = event_text(channel, item)
                    size += len(text)
                    if self.pending or not self._writable_now():
                        self.pending.append((channel, follower, text))
                        continue
                    try:
                        send_now(self.send_text, {"type": "websocket.send", "text": text})
                    except RuntimeError:
                        self.pending.append((channel, follower, text))  # not sent: the task sends it
                        raise
                metrics.sent(metrics.WEBSOCKET, len(value), size)  # type: ignore[arg-type]
            if self.pending:
                self._rouse()
                return
            if not progressed:
                return

    def _writable_now(self) -> bool:
        writable = self.writable
        return not self.outbox and not self.sending.locked() and (writable is None or writable.is_set())

    async def _flush(self) -> bool:
        """Queue the events woken() could not send; return False if the connection is closing."""
        pending, self.pending = self.pending, []
        for channel, follower, text in pending:
            if self.followers.get(channel) is not follower:
                continue  # unsubscribed meanwhile: nothing of it follows the reply
            if not await self.put(text):
                return False
        return True

    def _regroup(self, hub: Hub, group: Waiters | None) -> Waiters | None:
        """Join the hub for the channels subscribed now, leaving the group of the channels before."""
        channels = frozenset(self.followers)
        if group is not None and group.channels == channels:
            return group
        new = hub.join(channels) if channels else None
        if group is not None:
            hub.leave(group)
        return new

    async def _deliver(self) -> bool:
        """Queue what each subscription has to send; return whether any had something."""
        busy = False
        now = time.monotonic()
        for channel, follower in list(self.followers.items()):
            try:
                action, value = follower.step(now)
                if action == WAIT:
                    continue
                if action == READ:
                    value = await run_released(follower.catch_up)
            except Exception:
                logger.error("django_realtime subscription to %s failed", channel, exc_info=True)
                raise
            busy = True
            count = size = 0
            try:
                for item in value:  # type: ignore[union-attr]
                    if self.followers.get(channel) is not follower:
                        break  # unsubscribed meanwhile: nothing of it follows the reply
                    text = event_text(channel, item)
                    if not await self.put(text):
                        return True
                    count += 1
                    size += len(text)
            finally:
                if count:
                    metrics.sent(metrics.WEBSOCKET, count, size)
        return busy

    # Sending ----------------------------------------------------------------

    def _start(self, coroutine: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("django_realtime WebSocket task failed", exc_info=task.exception())
            self.shut(protocol.CLOSE_UNAVAILABLE)

    async def _send_loop(self) -> None:
        while True:
            text = await self.outbox.get()
            async with self.sending:
                if self.writable is not None:
                    await self.writable.wait()
                await self.send_text({"type": "websocket.send", "text": text})

    async def put(self, text: str) -> bool:
        """Send *text* to the client, or queue it; close as a slow consumer if no room comes in time."""
        if self.closing:
            return False
        if not self.outbox and not self.sending.locked() and (self.writable is None or self.writable.is_set()):
            # Nothing queued and the server can take it: no need to go through the sender task.
            async with self.sending:
                await self.send_text({"type": "websocket.send", "text": text})
            return True
        if self.outbox.put_nowait(text):
            return True
        try:
            async with asyncio.timeout(realtime_settings.WEBSOCKET_SEND_TIMEOUT):
                await self.outbox.put(text)
        except TimeoutError:
            logger.info("django_realtime closes a WebSocket that does not read fast enough (4000)")
            self.shut(protocol.CLOSE_SLOW_CONSUMER)
            return False
        return True

    def shut(self, code: int, reason: str | None = None) -> None:
        """Stop every task of the connection but the caller's and close with *code* (and *reason*)."""
        if self.closing:
            return
        self.closing = True
        counted = getattr(self, "counted", None)
        if counted is not None:
            counted.reason = CLOSE_REASONS.get(code, metrics.ENDED)
        current = asyncio.current_task()
        for task in list(self.tasks):
            if task is not current:
                task.cancel()
        if reason is not None and close_with_reason(self.base_send, code, reason):
            return  # under daphne, whose websocket.close carries no reason
        self._start(self.close(code, reason))

    # Receiving --------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.closing:
            return
        if text_data is None:
            await self.put(protocol.error(protocol.BAD_MESSAGE, "binary frames are not part of the protocol"))
            return
        reply: str | None = None
        try:
            request = protocol.parse(text_data, int(realtime_settings.WEBSOCKET_MAX_MESSAGE_SIZE))
            reply = await getattr(self, HANDLERS[type(request)])(request)
        except protocol.ProtocolError as exc:
            reply = exc.reply()
        if reply is not None:
            await self.put(reply)

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
        if channel in self.followers:
            raise protocol.ProtocolError(protocol.ALREADY_SUBSCRIBED, f"already subscribed to {channel}", request.ref)
        _within_limit(self.followers, "at most {limit} subscriptions per connection", request.ref)
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
        if not await self.put(protocol.subscribed(channel, str(position), request.ref)):
            return
        for item in resets:
            if not await self.put(event_text(channel, item)):
                return
        self.followers[channel] = follower
        self.kick()

    async def unsubscribe(self, request: protocol.Unsubscribe) -> str:
        channel = valid_channel(request.channel, request.ref)
        if self.followers.pop(channel, None) is None:
            raise protocol.ProtocolError(protocol.NOT_SUBSCRIBED, f"not subscribed to {channel}", request.ref)
        self.kick()
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
