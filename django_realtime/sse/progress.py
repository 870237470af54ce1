"""The SSE stream of one task's progress, opened by a URL signed for its viewer (docs/progress.md)."""

from __future__ import annotations

from django.core import signing
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.views.decorators.http import require_GET

from ..progress import channel_of_token
from .views import stream_channels


@transaction.non_atomic_requests
@require_GET
def progress_events(request: HttpRequest, token: str, **url_kwargs: object) -> HttpResponseBase:
    """Stream the progress channel that *token* opens to this request's viewer; 403 for anyone else.

    *url_kwargs* are an ``include()``'s extra arguments, as for health().

    The token is the authorization (it is signed for the viewer the page
    was rendered for), so the channel is not put to the ``AUTHORIZE`` hook.
    """
    try:
        channel = channel_of_token(token, request)
    except signing.BadSignature:
        return HttpResponse(
            "This progress stream is not yours: reload the page that shows it.\n",
            status=403,
            content_type="text/plain; charset=utf-8",
        )
    return stream_channels(request, [channel])
