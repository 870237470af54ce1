"""The live progress bar of a task: ``{% load realtime_progress %}``, ``{% progress_bar task %}`` (docs/progress.md)."""

from __future__ import annotations

from typing import Any

from django import template
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.safestring import SafeString, mark_safe

from ..progress import PENDING, TEMPLATE_NAME, Progress, progress_channel, shown_progress, stream_token
from .realtime import realtime_cursor

register = template.Library()


@register.simple_tag(takes_context=True)
def progress_bar(
    context: template.Context, task: Any, pending_message: str = "", template_name: str = TEMPLATE_NAME
) -> SafeString:
    """Render *task*'s progress bar as it stands, following the task live with htmx's SSE extension.

    The bar shows the newest progress event of the log, read after taking
    the cursor the stream starts from: nothing published after the render
    is missed, and a reload shows the current state at once.  A bar that
    has ended (done, failed) is rendered as it ended, and follows nothing.
    The stream URL is signed for the viewer of the page (the request's
    user, else its session), and refused to anyone else.
    """
    request = getattr(context, "request", None) or context.get("request")
    if request is None:
        raise template.TemplateSyntaxError(
            "progress_bar needs the request: render the template with render(request, ...) or a RequestContext"
        )
    dom_id = "realtime-" + progress_channel(task).replace(":", "-")
    cursor = realtime_cursor()  # before reading the newest state: what follows it is streamed
    shown = shown_progress(task)
    if shown is not None and shown[1]:
        return format_html('<div id="{}" class="realtime-progress-stream">{}</div>', dom_id, mark_safe(shown[0]))
    # The HTML in the log was rendered (and escaped) by the reporter: it is shown as it is, as htmx would swap it in.
    html = shown[0] if shown is not None else Progress(PENDING, None, pending_message).render(template_name)
    query = {"data": "text", **({"lastEventId": cursor} if cursor else {})}
    url = reverse("django_realtime:progress", args=[stream_token(task, request)]) + "?" + urlencode(query)
    return format_html(
        '<div id="{}" class="realtime-progress-stream" hx-ext="sse" sse-connect="{}" sse-swap="progress,progress.end"'
        ' sse-close="progress.end" hx-swap="innerHTML">{}</div>',
        dom_id,
        url,
        mark_safe(html),
    )
