"""A call between two logged-in users: WebRTC signalled on their pair channel (docs/webrtc.md).

``call:<pkA>-<pkB>`` is a pair channel (``PAIR_CHANNELS = ["call"]``): only
those two users may read it or publish to it, over either transport.  The
page holds no state of its own; static/chat/call.js does the rest.  Log in
first, for example at /admin/ as two users in two browsers.
"""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.http import Http404, HttpResponseForbidden
from django.shortcuts import get_object_or_404, render

from django_realtime.auth import pair_channel

#: The prefix of the calls' pair channels, one of PAIR_CHANNELS.
CALL_PREFIX = "call"


def call(request, peer):
    """Show a call with user *peer*, on the pair channel of the two users."""
    if not request.user.is_authenticated:
        return HttpResponseForbidden("Log in (for example at /admin/) to call someone.\n", content_type="text/plain")
    other = get_object_or_404(get_user_model(), pk=peer)
    if other.pk == request.user.pk:
        raise Http404("A call needs another user")
    transport = {"ws": "websocket", "sse": "sse"}.get(request.GET.get("transport", ""), "auto")
    config = {
        "me": request.user.pk,
        "peer": other.pk,
        "peerName": other.get_username(),
        "prefix": CALL_PREFIX,
        "channel": pair_channel(CALL_PREFIX, request.user, other),
        "transport": transport,
        "iceServers": settings.CALL_ICE_SERVERS,
    }
    return render(request, "chat/call.html", {"config": config, "peer": other})
