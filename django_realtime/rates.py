"""Rate limits on what clients make the server write: publishes, and presence joins, leaves and lookups.

A limit is per *client*, never per connection, so that opening another
socket or reconnecting a stream buys nothing: a signed-in client is its
user, an anonymous one its network address (its /64 for IPv6), never a
value it chooses (a cookie, a header other than the one your proxy sets).
Each kind of action has a token bucket of its own per client, shared by
both transports and every connection of the client in one process.  Each
process keeps its own buckets, for at most ``CLIENTS`` clients, the least
recently seen forgotten first.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from django.core.signals import setting_changed

from .conf import realtime_settings

#: Most clients whose rates a process remembers: the least recently seen are forgotten first.
CLIENTS = 10_000
#: The kinds of action, each with a bucket of its own per client (and its settings).
PUBLISH = "publish"
PRESENCE = "presence"


class TokenBucket:
    """Allow *rate* actions per second on average, in bursts of up to *burst*."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.tokens = self.burst
        self.stamp = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one; return whether there was."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


def limits(kind: str) -> tuple[float, float] | None:
    """Return the rate and burst of *kind* from the settings, or None if it is not limited."""
    if kind == PUBLISH:
        rate, burst = realtime_settings.WEBSOCKET_PUBLISH_RATE, realtime_settings.WEBSOCKET_PUBLISH_BURST
    elif kind == PRESENCE:
        rate, burst = realtime_settings.PRESENCE_RATE, realtime_settings.PRESENCE_BURST
    else:
        raise ValueError(f"unknown kind of rate limit: {kind!r}")
    return None if rate is None else (float(rate), float(burst))


class Limiter:
    """Token buckets by client and kind, for at most *size* clients."""

    def __init__(self, size: int = CLIENTS) -> None:
        self.size = size
        self._buckets: OrderedDict[tuple[str, str], TokenBucket] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, client: str, kind: str, now: float | None = None) -> bool:
        """Spend one of *client*'s tokens for *kind*; return False (spending none) if it has none left."""
        limit = limits(kind)
        if limit is None:
            return True
        now = time.monotonic() if now is None else now
        key = (kind, client)
        with self._lock:
            bucket = self._buckets.pop(key, None) or TokenBucket(limit[0], limit[1], now)
            self._buckets[key] = bucket  # the most recently seen last
            while len(self._buckets) > self.size:
                self._buckets.popitem(last=False)
            return bucket.take(now)

    def clear(self) -> None:
        with self._lock:
            self._buckets.clear()

    def __len__(self) -> int:
        return len(self._buckets)


limiter = Limiter()


def retry_after(kind: str) -> int:
    """Return the whole seconds after which a refused client has a token again (at least one)."""
    limit = limits(kind)
    return 1 if limit is None or limit[0] <= 0 else max(1, math.ceil(1 / limit[0]))


def rate_message(kind: str) -> str:
    """Return the message of a refusal for *kind*, naming the limit."""
    limit = limits(kind)
    rate = 0.0 if limit is None else limit[0]
    what = "publishes" if kind == PUBLISH else "presence joins, leaves and lookups"
    return f"more than {rate:g} {what} per second; wait and retry"


def client_key(user: Any, address: str | None) -> str:
    """Name a client for its rate limits: a signed-in *user* by its primary key, anyone else by *address*."""
    if getattr(user, "is_authenticated", False) and getattr(user, "pk", None) is not None:
        return f"user:{user.pk}"
    return f"address:{network(address)}"


def network(address: str | None) -> str:
    """Return *address* as the network one client holds: an IPv4 address, an IPv6 /64."""
    if not address:
        return ""
    try:
        parsed = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return address[:100]  # a Unix socket's path, a name: use it as it is
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


def _from_header(value: str | None) -> str | None:
    """Return the address a trusted proxy put last in *value* (``X-Forwarded-For: client, proxy1``)."""
    if not value:
        return None
    return value.rsplit(",", 1)[-1].strip() or None


def request_address(meta: Mapping[str, Any]) -> str | None:
    """Return the client address of an HTTP request from its META: CLIENT_ADDRESS_HEADER if set, else REMOTE_ADDR."""
    header = realtime_settings.CLIENT_ADDRESS_HEADER
    if header:
        found = _from_header(meta.get("HTTP_" + header.upper().replace("-", "_")))
        if found:
            return found
    return meta.get("REMOTE_ADDR")


def scope_address(scope: Mapping[str, Any]) -> str | None:
    """Return the client address of an ASGI connection: CLIENT_ADDRESS_HEADER if set, else the scope's client."""
    header = realtime_settings.CLIENT_ADDRESS_HEADER
    if header:
        name = header.lower().encode("latin-1")
        for key, value in scope.get("headers", ()):
            if key == name:
                found = _from_header(value.decode("latin-1"))
                if found:
                    return found
    client = scope.get("client")
    return str(client[0]) if client else None


def request_client(request: Any) -> str:
    """Name the client of an HTTP *request*: its user, else its address."""
    return client_key(getattr(request, "user", None), request_address(request.META))


def scope_client(scope: Mapping[str, Any]) -> str:
    """Name the client of an ASGI connection (a WebSocket): its user, else its address."""
    return client_key(scope.get("user"), scope_address(scope))


def _on_setting_changed(*, setting: str, **kwargs: object) -> None:
    if setting == "REALTIME":
        limiter.clear()


setting_changed.connect(_on_setting_changed)
