"""The publish endpoint: a WebSocket ``publish`` message sent as an HTTP POST, for pages on SSE.

A page whose connection is a Server-Sent Events stream cannot send on it.
This view takes the very message a WebSocket client sends, asks the same
``AUTHORIZE`` hook (action ``"publish"``) with the same limits, and answers
with the same ``ack`` or ``error`` JSON (docs/websocket.md), with a status.
It is CSRF-protected as a form post is: send the ``X-CSRFToken`` header.
Each client may publish WEBSOCKET_PUBLISH_RATE times a second here, in
bursts of WEBSOCKET_PUBLISH_BURST, as one WebSocket may: a client is its
user, else its session, else its CSRF cookie, else its address, counted in
each process.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core.signals import setting_changed
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_POST

from ..client_publish import check_publish, rate_limited, store_publish
from ..conf import realtime_settings
from ..websocket import protocol
from ..websocket.rate import TokenBucket
from .views import retry_after

#: The HTTP status of each error code.
STATUSES = {
    protocol.FORBIDDEN: 403,
    protocol.TOO_LARGE: 413,
    protocol.UNAVAILABLE: 503,
    protocol.RATE_LIMITED: 429,
}
#: Most clients whose publish rate a process remembers: the least recent are forgotten first.
RATE_CLIENTS = 10_000

_buckets: OrderedDict[str, TokenBucket] = OrderedDict()
_buckets_lock = threading.Lock()


def _client(request: HttpRequest) -> str:
    """Name who publishes, for the rate limit: the user, else the session, the CSRF cookie or the address."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return f"user:{user.pk}"
    session = getattr(request, "session", None)
    if session is not None and session.session_key:
        return f"session:{session.session_key}"
    token = request.COOKIES.get(settings.CSRF_COOKIE_NAME)
    if token:
        return f"csrf:{token}"
    return f"address:{request.META.get('REMOTE_ADDR', '')}"


def _check_rate(request: HttpRequest, ref: protocol.Ref) -> None:
    """Raise RATE_LIMITED if this client has published more than WEBSOCKET_PUBLISH_RATE a second."""
    rate = realtime_settings.WEBSOCKET_PUBLISH_RATE
    if rate is None:
        return
    now = time.monotonic()
    key = _client(request)
    burst = float(realtime_settings.WEBSOCKET_PUBLISH_BURST)
    with _buckets_lock:
        bucket = _buckets.pop(key, None) or TokenBucket(float(rate), burst, now)
        _buckets[key] = bucket  # the most recent last
        while len(_buckets) > RATE_CLIENTS:
            _buckets.popitem(last=False)
        allowed = bucket.take(now)
    if not allowed:
        raise rate_limited(rate, ref)


def forget_rates() -> None:
    """Forget every client's publish rate (when the settings change: tests)."""
    with _buckets_lock:
        _buckets.clear()


def _on_setting_changed(*, setting: str, **kwargs: object) -> None:
    if setting == "REALTIME":
        forget_rates()


setting_changed.connect(_on_setting_changed)


def _reply(text: str, status: int = 200) -> HttpResponse:
    response = HttpResponse(text, status=status, content_type="application/json")
    response["Cache-Control"] = "no-store"
    return response


def _error(exc: protocol.ProtocolError) -> HttpResponse:
    response = _reply(exc.reply(), STATUSES.get(exc.code, 400))
    if exc.code == protocol.UNAVAILABLE:
        response["Retry-After"] = retry_after()
    elif exc.code == protocol.RATE_LIMITED:  # a token comes back in 1/rate seconds
        response["Retry-After"] = str(max(1, math.ceil(1 / float(realtime_settings.WEBSOCKET_PUBLISH_RATE))))
    return response


@transaction.non_atomic_requests
@csrf_protect
@require_POST
def publish(request: HttpRequest, **url_kwargs: object) -> HttpResponse:
    """Store the event of a ``{"type": "publish", ...}`` JSON body if the hook allows it; answer ``ack`` or ``error``.

    *url_kwargs* are an ``include()``'s extra arguments, as for health().
    """
    limit = int(realtime_settings.WEBSOCKET_MAX_MESSAGE_SIZE)
    try:
        if request.content_type != "application/json":
            raise protocol.ProtocolError(protocol.BAD_MESSAGE, "send the message as application/json")
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise protocol.ProtocolError(protocol.BAD_MESSAGE, "bad Content-Length") from None
        if length > limit:
            raise protocol.ProtocolError(protocol.TOO_LARGE, f"message is larger than {limit} bytes")
        # Read at most one byte past the limit, whatever Content-Length said (or did not).
        body = request.read(limit + 1)
        if len(body) > limit:
            raise protocol.ProtocolError(protocol.TOO_LARGE, f"message is larger than {limit} bytes")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise protocol.ProtocolError(protocol.BAD_JSON, "message is not UTF-8") from None
        message = protocol.parse(text, limit)
        if not isinstance(message, protocol.Publish):
            raise protocol.ProtocolError(
                protocol.BAD_MESSAGE, "this endpoint takes publish messages only", getattr(message, "ref", None)
            )
        channel, event = check_publish(message)
        _check_rate(request, message.ref)
        user = getattr(request, "user", None) or AnonymousUser()
        return _reply(store_publish(user, channel, event, message.data, message.ref))
    except protocol.ProtocolError as exc:
        return _error(exc)
