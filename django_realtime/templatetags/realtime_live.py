"""Template tags of live regions: ``{% load realtime_live %}``, ``{% live_region %}``, ``{% dom_id %}``.

A region is an element whose content the page keeps in step with its
channels: htmx's SSE extension (``htmx=True``) or live.js applies each action
as it commits, and fetches the region again on a refresh or a ``reset``.
"""

from __future__ import annotations

import json
import secrets
from typing import Any
from urllib.parse import urlencode

from django import template
from django.db import models
from django.templatetags.static import static
from django.utils.html import format_html
from django.utils.safestring import SafeString

from ..live.actions import LIVE_EVENT, REFRESH_EVENT, validate_dom_id
from ..live.broadcasting import channel_for
from ..live.broadcasting import dom_id as instance_dom_id
from ..names import validate_channel
from .realtime import _events_url, realtime_cursor

register = template.Library()

#: Milliseconds a page waits for more refreshes before it fetches its region (refreshes come in bursts).
REFRESH_DEBOUNCE_MS = 200


@register.simple_tag(takes_context=True)
def live_request_id(context: template.Context) -> str:
    """Return this request's id: a page sends it as ``Realtime-Request-Id`` and skips the refreshes it caused."""
    request = context.get("request")
    if request is None:
        return secrets.token_urlsafe(12)
    if not hasattr(request, "_realtime_request_id"):
        request._realtime_request_id = secrets.token_urlsafe(12)
    return request._realtime_request_id


@register.simple_tag
def dom_id(instance: models.Model, prefix: str | None = None) -> str:
    """Return the DOM id of *instance*, the one its live actions address (``live.dom_id``)."""
    return instance_dom_id(instance, prefix)


@register.simple_tag
def live_script() -> str:
    """Include live.js, after ``{% realtime_script %}``: it binds every ``{% live_region %}`` without htmx."""
    return format_html('<script src="{}" defer></script>', static("django_realtime/live.js"))


def _channel(value: Any) -> str:
    if isinstance(value, models.Model) or (isinstance(value, type) and issubclass(value, models.Model)):
        return channel_for(value)
    return validate_channel(value)


class LiveRegionNode(template.Node):
    def __init__(self, args: list[Any], kwargs: dict[str, Any], nodelist: template.NodeList) -> None:
        self.args, self.kwargs, self.nodelist = args, kwargs, nodelist

    def render(self, context: template.Context) -> str:
        channels = list(dict.fromkeys(_channel(arg.resolve(context)) for arg in self.args))
        options = {name: value.resolve(context) for name, value in self.kwargs.items()}
        unknown = set(options) - {"id", "htmx", "src", "tag", "cursor", "class"}
        if unknown:
            raise template.TemplateSyntaxError(f"live_region takes no {', '.join(sorted(unknown))}")
        if not channels:
            raise template.TemplateSyntaxError("live_region needs at least one channel")
        region = validate_dom_id(options.get("id"), "live_region id")
        tag = options.get("tag", "div")
        if tag not in ("div", "section", "ul", "ol", "tbody", "table", "main", "article", "span"):
            raise template.TemplateSyntaxError(f"live_region tag= is an element name such as div or ul, not {tag!r}")
        # The cursor first, then the content: every change after the cursor reaches the page, so none made
        # while the content is read (querysets are read as they render) is lost (docs/live.md, "Exactness").
        cursor = options.get("cursor") or realtime_cursor()
        request = context.get("request")
        src = options.get("src") or (request.get_full_path() if request is not None else "")
        request_id = live_request_id(context)
        content = self.nodelist.render(context)
        css = format_html(' class="{}"', options["class"]) if options.get("class") else ""
        if options.get("htmx"):
            # No cursor (realtime_cursor gave up waiting, CURSOR_TIMEOUT): follow from the connection on.
            since = [("lastEventId", cursor)] if cursor else []
            query = urlencode([*(("channel", c) for c in channels), ("data", "text"), *since])
            trigger = f"sse:{REFRESH_EVENT}[detail.data!=='{request_id}'] delay:{REFRESH_DEBOUNCE_MS}ms, sse:reset"
            return format_html(
                '<{tag} id="{id}"{css} hx-ext="sse" sse-connect="{url}" hx-get="{src}" hx-trigger="{trigger}" '
                'hx-select="#{id}" hx-target="this" hx-swap="outerHTML" hx-headers="{headers}">'
                '<span hidden sse-swap="{event}" hx-swap="none"></span>{content}</{tag}>',
                tag=tag,
                id=region,
                css=css,
                url=f"{_events_url()}?{query}",
                src=src,
                trigger=trigger,
                headers=json.dumps({"Realtime-Request-Id": request_id}),
                event=LIVE_EVENT,
                content=SafeString(content),
            )
        return format_html(
            '<{tag} id="{id}"{css} data-live-channels="{channels}" data-live-cursor="{cursor}" '
            'data-live-request-id="{request_id}" data-live-src="{src}">{content}</{tag}>',
            tag=tag,
            id=region,
            css=css,
            channels=" ".join(channels),
            cursor=cursor,
            request_id=request_id,
            src=src,
            content=SafeString(content),
        )


@register.tag
def live_region(parser: template.base.Parser, token: template.base.Token) -> LiveRegionNode:
    """``{% live_region "board:items" item id="board" htmx=True %}...{% endlive_region %}``: a region kept live.

    Channels are names, model instances or model classes (their
    ``live.channel_for()`` channel).  ``id`` (required) is the region's DOM
    id; ``htmx=True`` wires htmx's SSE extension, else live.js binds it;
    ``src`` is the URL a refresh fetches (default: this page); ``tag`` the
    element (default ``div``); ``cursor`` one taken in the view, before it read
    the state (default: taken here, before the content renders).
    """
    bits = token.split_contents()[1:]
    args, kwargs = [], {}
    for bit in bits:
        name, sep, value = bit.partition("=")
        if sep and name.isidentifier():
            kwargs[name] = parser.compile_filter(value)
        else:
            args.append(parser.compile_filter(bit))
    nodelist = parser.parse(("endlive_region",))
    parser.delete_first_token()
    return LiveRegionNode(args, kwargs, nodelist)
