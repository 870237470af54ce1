"""Redis pub/sub: wake-ups between processes and hosts through Redis.

Redis pub/sub is at-most-once and forgets everything sent while a
subscriber is away, which is fine here: a message only says "read the log".
After any reconnect the hub reads the log again, and while Redis is down it
polls the log.  A wake-up is published to a Redis channel of the event's
channel's own and to ``django_realtime`` (listener.py says who hears which).
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from .listener import ListenerBackend

if TYPE_CHECKING:
    from .listener import Listening

logger = logging.getLogger("django_realtime")

#: The pub/sub channel's name.
CHANNEL = "django_realtime"


class RedisBackend(ListenerBackend):
    """Publish after commit; subscribe on one connection per process."""

    service = "Redis"

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        fallback_interval: float = 1.0,
        channel: str = CHANNEL,
        heartbeat: float = 5.0,
        max_channels: int = 1000,
    ) -> None:
        super().__init__(fallback_interval, heartbeat, max_channels, channel)
        self.url = url
        self.channel = channel
        self._client: Any = None

    def _redis(self):
        if self._client is None:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            # notify() runs when the publisher's transaction commits: a Redis
            # that is down must cost it half a second at most, not retries.
            self._client = redis.Redis.from_url(
                self.url, socket_timeout=0.5, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)
            )
        return self._client

    def notify(self, channel: str, event_id: int) -> None:
        self.wake_local(channel)
        payload = f"{channel} {event_id}"
        try:
            pipeline = self._redis().pipeline(transaction=False)  # one round trip for both
            for name in self.names(channel):
                pipeline.publish(name, payload)
            pipeline.execute()
        except Exception:
            # The event is safely in the log; other processes read it when
            # their fallback polling or their next wake-up comes.
            logger.warning("could not publish a wake-up to Redis", exc_info=True)

    def listen(self, run: Listening) -> None:
        import redis

        client = redis.Redis.from_url(self.url, socket_timeout=None, socket_connect_timeout=5)
        pubsub = client.pubsub()
        try:
            # A name of this connection's own, which nobody publishes to: subscribed to it, the
            # connection is in pub/sub mode (where redis-py reads replies) even while this process
            # follows nothing, and its confirmation says that wake-ups flow.
            control = f"{self.global_name}:listener:{uuid.uuid4().hex}"
            pubsub.subscribe(control)
            self.changed.clear()
            listened = self._subscribe_to(pubsub, set())
            heard = time.monotonic()
            pinged: float | None = None
            while not run.stopping.is_set():
                message = pubsub.get_message(timeout=min(self.FOLLOW_CHECK, self.heartbeat))
                now = time.monotonic()
                if self.changed.is_set():
                    self.changed.clear()
                    listened = self._subscribe_to(pubsub, listened)
                    run.wake()  # what was published on a new channel before its SUBSCRIBE took effect
                if message is not None:
                    heard, pinged = now, None
                    kind = message["type"]
                    if kind == "subscribe" and _text(message["channel"]) == control:
                        self.subscribed(run)
                    elif kind == "message":
                        self.heard(run, _text(message["data"]))
                elif pinged is not None and now - pinged >= self.heartbeat:
                    # A partition or a hung server keeps the socket open and silent.
                    raise ConnectionError(f"Redis did not answer a PING within {self.heartbeat:g} s")
                elif pinged is None and now - heard >= self.heartbeat:
                    pubsub.ping()
                    pinged = now
        finally:
            pubsub.close()
            client.close()

    def _subscribe_to(self, pubsub: Any, listened: set[str]) -> set[str]:
        """Subscribe to the names wanted now, unsubscribe from the others; return the names."""
        wanted = self.wanted()
        if wanted - listened:
            pubsub.subscribe(*sorted(wanted - listened))
        if listened - wanted:
            pubsub.unsubscribe(*sorted(listened - wanted))
        return wanted


def _text(data: object) -> str:
    return data.decode() if isinstance(data, bytes) else str(data)
