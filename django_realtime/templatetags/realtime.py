"""Template tags for realtime.js: ``{% load realtime %}``, ``{% realtime_script %}``, ``{% realtime_cursor %}``."""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from django import template
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.wsgi import WSGIRequest
from django.templatetags.static import static
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.module_loading import import_string

register = template.Library()
logger = logging.getLogger("django_realtime")


def _events_url() -> str:
    try:
        return reverse("django_realtime:events")
    except NoReverseMatch:  # the SSE endpoint is not in the URLconf, or under another namespace
        return "/events/"


#: The transports realtime.js knows, for ``transports=``.
TRANSPORTS = ("websocket", "sse")


def _transports(value: str) -> str:
    names = value.replace(",", " ").split()
    unknown = [name for name in names if name not in TRANSPORTS]
    if unknown or not names:
        raise template.TemplateSyntaxError(
            f"realtime_script transports= takes 'websocket', 'sse' or both, separated by spaces, not {value!r}"
        )
    return " ".join(dict.fromkeys(names))


@lru_cache(maxsize=8)
def _routes_websockets(dotted_path: str) -> bool:
    """Return whether the ASGI application at *dotted_path* routes WebSockets."""
    try:
        application = import_string(dotted_path)
    except ImportError:
        # The pages still render; they try WebSockets, as before the server could say, and fall back.
        logger.warning("django_realtime: ASGI_APPLICATION %r cannot be imported", dotted_path)
        return True
    mapping = getattr(application, "application_mapping", None)  # Channels' ProtocolTypeRouter
    if isinstance(mapping, dict):
        return "websocket" in mapping
    # Django's own handler serves HTTP only; any other application is taken at its word.
    return not isinstance(application, ASGIHandler)


def websockets_served(request: Any = None) -> bool:
    """Return whether the page rendered for *request* can open a WebSocket to this site.

    ``REALTIME["WEBSOCKETS"]`` decides if set. Otherwise a page served by a
    WSGI server (``runserver`` without daphne, gunicorn) is told no: its
    server answers ``/ws/`` with a 404. Under ASGI, the answer is whether
    ``ASGI_APPLICATION`` routes ``"websocket"``; an ASGI server started
    without that setting is taken to route them. Rendered without a request,
    ``ASGI_APPLICATION`` alone decides.
    """
    from ..conf import realtime_settings

    if realtime_settings.WEBSOCKETS is not None:
        return bool(realtime_settings.WEBSOCKETS)
    if isinstance(request, WSGIRequest):
        return False
    dotted_path = getattr(settings, "ASGI_APPLICATION", None)
    if not dotted_path:
        return request is not None  # an ASGI request from a server started with the application's path
    return _routes_websockets(dotted_path)


@register.simple_tag(takes_context=True)
def realtime_script(
    context: template.Context, ws_url: str = "/ws/", sse_url: str | None = None, transports: str | None = None
) -> str:
    """Include realtime.js as a plain script, telling it where the endpoints and the CSRF cookie are.

    The SSE URL defaults to the URLconf's ``django_realtime:events``; the
    WebSocket URL, which Channels routes outside the URLconf, to ``/ws/``.
    ``data-transports`` tells the page which transports the site serves, so
    that a site without WebSockets makes no failing handshake: given with
    ``transports=``, else from :func:`websockets_served`.
    """
    if transports is None:
        transports = "websocket sse" if websockets_served(context.get("request")) else "sse"
    return format_html(
        '<script src="{}" data-ws-url="{}" data-sse-url="{}" data-csrf-cookie="{}" data-transports="{}"></script>',
        static("django_realtime/realtime.js"),
        ws_url,
        sse_url if sse_url is not None else _events_url(),
        settings.CSRF_COOKIE_NAME,
        _transports(transports),
    )


@register.simple_tag
def realtime_cursor() -> str:
    """Return the cursor of the log now: a ``lastId`` that starts a subscription at this render.

    Events published after the page was rendered are delivered; earlier ones
    are not (docs/sse.md, "Starting from a page you rendered").  The ids of
    publishing transactions still in flight are pending in the cursor (their
    events are delivered when they commit), so it waits for none: it is this
    process's hub's cursor after a read that begins now if the hub runs
    (about a millisecond: concurrent renders share the read), else read
    from the log.  Only
    where too many transactions are in flight to name (or on MySQL, whose
    hub starts only once they have ended) does it wait, ``CURSOR_TIMEOUT``
    seconds at most; then it gives an empty string (follow from the moment
    the page connects).
    """
    from ..conf import realtime_settings
    from ..eventlog import tailer_for
    from ..hub import get_hub

    hub = get_hub()
    if hub.healthy():
        # This process's hub runs: a read of its that begins now covers every commit before the render and
        # names the ids of the publishers in flight (waiting for none of them).
        cursor = hub.fresh_cursor(timeout=float(realtime_settings.CURSOR_TIMEOUT))
        if cursor is not None:
            return str(cursor)
    try:
        return str(
            tailer_for(realtime_settings.DATABASE).start_horizon(timeout=float(realtime_settings.CURSOR_TIMEOUT))
        )
    except TimeoutError:
        logger.warning("django_realtime: {%% realtime_cursor %%} gave up waiting for publishers in flight")
        return ""
