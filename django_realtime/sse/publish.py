"""The publish endpoint: a WebSocket ``publish`` message sent as an HTTP POST, for pages on SSE.

A page whose connection is a Server-Sent Events stream cannot send on it.
This view takes the very message a WebSocket client sends, asks the same
``AUTHORIZE`` hook (action ``"publish"``) with the same limits, and answers
with the same ``ack`` or ``error`` JSON (docs/websocket.md), with a status.
It is CSRF-protected as a form post is: send the ``X-CSRFToken`` header.
Each client (its user, else its address: django_realtime.rates) may publish
WEBSOCKET_PUBLISH_RATE times a second, in bursts of WEBSOCKET_PUBLISH_BURST,
here and over WebSockets together, counted in each process.
"""

from __future__ import annotations

from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_POST

from .. import protocol, rates
from ..auth import user_or_anonymous
from ..client_publish import check_publish, store_publish
from ..conf import realtime_settings
from .views import retry_after

#: The HTTP status of each error code.
STATUSES = {
    protocol.FORBIDDEN: 403,
    protocol.TOO_LARGE: 413,
    protocol.UNAVAILABLE: 503,
    protocol.RATE_LIMITED: 429,
}


def check_rate(request: HttpRequest, kind: str, ref: protocol.Ref = None) -> None:
    """Raise RATE_LIMITED if the client of *request* has no token left for *kind* (django_realtime.rates)."""
    if not rates.limiter.take(rates.request_client(request), kind):
        raise protocol.ProtocolError(protocol.RATE_LIMITED, rates.rate_message(kind), ref)


def _reply(text: str, status: int = 200) -> HttpResponse:
    response = HttpResponse(text, status=status, content_type="application/json")
    response["Cache-Control"] = "no-store"
    return response


def _error(exc: protocol.ProtocolError) -> HttpResponse:
    response = _reply(exc.reply(), STATUSES.get(exc.code, 400))
    if exc.code == protocol.UNAVAILABLE:
        response["Retry-After"] = retry_after()
    elif exc.code == protocol.RATE_LIMITED:  # a token comes back in 1/rate seconds
        response["Retry-After"] = str(rates.retry_after(rates.PUBLISH))
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
        check_rate(request, rates.PUBLISH, message.ref)
        user = user_or_anonymous(getattr(request, "user", None))
        return _reply(store_publish(user, channel, event, message.data, message.ref))
    except protocol.ProtocolError as exc:
        return _error(exc)
