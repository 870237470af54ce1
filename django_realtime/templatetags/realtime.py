"""Template tags for realtime.js: ``{% load realtime %}``, ``{% realtime_script %}``, ``{% realtime_cursor %}``."""

from __future__ import annotations

import logging

from django import template
from django.conf import settings
from django.templatetags.static import static
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

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


@register.simple_tag
def realtime_script(ws_url: str = "/ws/", sse_url: str | None = None, transports: str | None = None) -> str:
    """Include realtime.js as a plain script, telling it where the endpoints and the CSRF cookie are.

    The SSE URL defaults to the URLconf's ``django_realtime:events``; the
    WebSocket URL, which Channels routes outside the URLconf, to ``/ws/``.
    ``transports="sse"`` tells the page that the site serves no WebSockets
    (a WSGI-only deployment), so ``"auto"`` goes straight to SSE without a
    failing handshake.
    """
    extra = format_html(' data-transports="{}"', _transports(transports)) if transports is not None else ""
    return format_html(
        '<script src="{}" data-ws-url="{}" data-sse-url="{}" data-csrf-cookie="{}"{}></script>',
        static("django_realtime/realtime.js"),
        ws_url,
        sse_url if sse_url is not None else _events_url(),
        settings.CSRF_COOKIE_NAME,
        extra,
    )


@register.simple_tag
def realtime_cursor() -> str:
    """Return the cursor of the log now: a ``lastId`` that starts a subscription at this render.

    Events published after the page was rendered are delivered; earlier ones
    are not (docs/sse.md, "Starting from a page you rendered").  The ids of
    publishing transactions still in flight are pending in the cursor (their
    events are delivered when they commit), so it waits for none: it is this
    process's hub's cursor if the hub runs, else read from the log.  Only
    where too many transactions are in flight to name (or on MySQL, whose
    hub starts only once they have ended) does it wait, ``CURSOR_TIMEOUT``
    seconds at most; then it gives an empty string (follow from the moment
    the page connects).
    """
    from ..conf import realtime_settings
    from ..hub import get_hub
    from ..log import tailer_for

    hub = get_hub()
    if hub.healthy():
        # This process's hub runs: its cursor names the ids of the publishers in flight, and waits for none.
        return str(hub.cursor)
    try:
        return str(
            tailer_for(realtime_settings.DATABASE).start_horizon(timeout=float(realtime_settings.CURSOR_TIMEOUT))
        )
    except TimeoutError:
        logger.warning("django_realtime: {%% realtime_cursor %%} gave up waiting for publishers in flight")
        return ""
