"""One WebSocket connection's delivery: its follow loop, the hub's wake-ups, the outbox and its sender.

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
sends what it has, then closes with 4004 and a spread delay.  What the
client asks for (subscribe, publish, presence) is the consumer's business
(``consumer.py``); it hands this its followers and its replies.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from typing import TYPE_CHECKING, Any

from .. import metrics, protocol
from ..conf import realtime_settings
from ..daphne_server import close_with_reason, send_now
from ..db import run_released
from ..streams import READ, WAIT
from .frames import text_frame
from .outbox import Outbox

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ..eventlog import Item
    from ..hub import Hub, Waiters
    from ..streams import Follower

logger = logging.getLogger("django_realtime")


class Waker:
    """Stands in the hub's list for a future: resolving it runs the connection's woken()."""

    __slots__ = ("delivery", "group", "fired")

    def __init__(self, delivery: Delivery, group: Waiters) -> None:
        self.delivery = delivery
        self.group = group
        self.fired = False

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self.delivery.loop

    def done(self) -> bool:
        return self.fired

    def set_result(self, result: None) -> None:
        if not self.fired:
            self.fired = True
            self.delivery.woken()


def event_text(channel: str, item: Item) -> str:
    """Return the WebSocket message of *item* on *channel*, made once per process and event."""
    if not item.channel or item.event == "reset":  # a Follower's reset, or a stored one (django_realtime.skips)
        fields = json.loads(item.data_json)
        return protocol.reset(channel, fields["reason"], fields["last_event_id"], fields["resume_id"])
    return item.encoded(_event_message)


def _event_message(item: Item) -> str:
    return protocol.event(item.channel, item.cursor_text, item.event, item.data_json)


def event_frame(channel: str, item: Item) -> bytes:
    """Return the WebSocket frame of *item* on *channel*: for an event, made once per process for all."""
    if not item.channel or item.event == "reset":
        return text_frame(event_text(channel, item))
    return item.encoded(_event_frame)


def _event_frame(item: Item) -> bytes:
    # Not through event_text(): a caught-up subscriber needs only the frame, so the text is not kept too.
    return text_frame(_event_message(item))


#: Why a connection closed with each code, for the metrics (any other: it ended).
CLOSE_REASONS = {protocol.CLOSE_SLOW_CONSUMER: metrics.SLOW_CLIENT, protocol.CLOSE_SHUTDOWN: metrics.SERVER_SHUTDOWN}


class Delivery:
    """Deliver one connection's subscriptions and replies to its client, in order, within a bounded outbox.

    *send_text* is the server's send for text frames; *writable*, under
    daphne, is set while Twisted's write buffer has room (None elsewhere);
    *close* closes the WebSocket with a code and a reason; *counted* is told
    why the server closed it; *base_send* is the server's own send, through
    which daphne is asked for a close with a reason; *write_frame*, under
    daphne, writes an event's ready frame to the connection
    (``daphne_server.frame_writer``).  Slotted: one per connection, and a
    connection's memory is what a server has most.
    """

    __slots__ = (
        "hub",
        "followers",
        "tasks",
        "closing",
        "counted",
        "close",
        "base_send",
        "outbox",
        "sending",
        "writable",
        "send_text",
        "loop",
        "wakeup",
        "regroup",
        "group",
        "fast",
        "parked",
        "waker",
        "pending",
        "write_frame",
    )

    def __init__(
        self,
        hub: Hub,
        *,
        send_text: Callable[[dict[str, Any]], Awaitable[None]],
        writable: asyncio.Event | None,
        close: Callable[[int, str | None], Awaitable[None]],
        counted: metrics.Connection,
        base_send: Any = None,
        write_frame: Callable[[bytes], bool] | None = None,
    ) -> None:
        self.hub = hub
        #: One cursor per subscribed channel.
        self.followers: dict[str, Follower] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        #: Set once the connection closes: nothing more is sent.
        self.closing = False
        self.counted = counted
        self.close = close
        self.base_send = base_send
        self.outbox = Outbox(int(realtime_settings.WEBSOCKET_SEND_BUFFER))
        self.sending = asyncio.Lock()
        self.writable = writable
        #: Where event messages go: the server's send, past middleware that does nothing for them.
        self.send_text = send_text
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.wakeup: asyncio.Future[None] = loop.create_future()
        self.regroup = False
        self.group: Waiters | None = None
        #: Under daphne, whose send() never waits, the hub's wake-up sends a
        #: parked connection's events itself (see woken()); elsewhere it
        #: wakes the connection's task.
        self.fast = writable is not None
        self.parked = False
        self.waker: Waker | None = None
        #: Events the fast path could not send at once, for the task to queue, in order.
        self.pending: list[tuple[str, Follower, str]] = []
        self.write_frame = write_frame

    def start(self) -> None:
        """Start the sender and the follow loop."""
        self._start(self._send_loop())
        self._start(self._follow_loop())

    async def stop(self) -> None:
        """Stop every task of the connection (it has closed) and wait for them."""
        self.closing = True
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def follow(self, channel: str, follower: Follower) -> None:
        """Deliver *channel* from *follower* on, after what was sent so far (its subscribed reply)."""
        self.followers[channel] = follower
        self.kick()

    def unfollow(self, channel: str) -> bool:
        """Deliver nothing more of *channel*, not even what is under way; return whether it was followed."""
        if self.followers.pop(channel, None) is None:
            return False
        self.kick()
        return True

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

    def drained(self) -> None:
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
                write = self.write_frame
                for item in value:  # type: ignore[union-attr]
                    if self.pending or not self._writable_now():
                        text = event_text(channel, item)
                        size += len(text)
                        self.pending.append((channel, follower, text))
                        continue
                    if write is not None:
                        frame = event_frame(channel, item)
                        if write(frame):
                            size += len(frame)
                            continue
                    text = event_text(channel, item)
                    size += len(text)
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
        self.counted.reason = CLOSE_REASONS.get(code, metrics.ENDED)
        current = asyncio.current_task()
        for task in list(self.tasks):
            if task is not current:
                task.cancel()
        if reason is not None and self.base_send is not None and close_with_reason(self.base_send, code, reason):
            return  # under daphne, whose websocket.close carries no reason
        self._start(self.close(code, reason))
