"""Redis pub/sub: wake-ups between processes and hosts through Redis.

Redis pub/sub is at-most-once and forgets everything sent while a
subscriber is away, which is fine here: a message only says "read the log".
After any reconnect the hub reads the log again, and while Redis is down it
polls the log.
"""

from __future__ import annotations

import logging
import time
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
    ) -> None:
        super().__init__(fallback_interval, heartbeat)
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
        self.wake_local()
        try:
            self._redis().publish(self.channel, f"{channel} {event_id}")
        except Exception:
            # The event is safely in the log; other processes read it when
            # their fallback polling or their next wake-up comes.
            logger.warning("could not publish a wake-up to Redis", exc_info=True)

    def listen(self, run: Listening) -> None:
        import redis

        client = redis.Redis.from_url(self.url, socket_timeout=None, socket_connect_timeout=5)
        pubsub = client.pubsub()
        try:
            pubsub.subscribe(self.channel)
            heard = time.monotonic()
            pinged: float | None = None
            while not run.stopping.is_set():
                message = pubsub.get_message(timeout=min(1.0, self.heartbeat))
                now = time.monotonic()
                if message is not None:
                    heard, pinged = now, None
                    kind = message["type"]
                    if kind == "subscribe":
                        self.subscribed(run)
                    elif kind == "message":
                        run.wake()
                elif pinged is not None and now - pinged >= self.heartbeat:
                    # A partition or a hung server keeps the socket open and silent.
                    raise ConnectionError(f"Redis did not answer a PING within {self.heartbeat:g} s")
                elif pinged is None and now - heard >= self.heartbeat:
                    pubsub.ping()
                    pinged = now
        finally:
            pubsub.close()
            client.close()
