"""A call between two logged-in users: WebRTC signalled on their pair channel (docs/webrtc.md).

``call:<pkA>-<pkB>`` is a pair channel (``PAIR_CHANNELS = ["call"]``): only
those two users may read it or publish to it, over either transport.  The
page holds no state of its own; static/chat/call.js does the rest.  Sign in
first (``sign_in``: a name is enough), as two users in two browsers.  Who may
be called from a room is the server's to say: ``present_as`` puts each
member's pk in its presence info.
"""

import re
import unicodedata
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth import get_user_model, login, logout
from django.db import IntegrityError, transaction
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from django_realtime.auth import pair_channel
from django_realtime.presence import identify

#: The prefix of the calls' pair channels, one of PAIR_CHANNELS.
CALL_PREFIX = "call"
#: A name one may sign in under: what Django's usernames allow, 2 to 30 characters.
NAME_PATTERN = re.compile(r"[\w.@+-]{2,30}\Z")


def present_as(user, channel, name):
    """Present a room's member as the default hook does, with ``info.pk`` set by the server (PRESENCE_IDENTITY).

    The room lists a Call link for the members whose ``pk`` is a number: a
    signed-in user's, never a guest's (None), whatever pk the page claimed.
    """
    return {"user": identify(user, channel, name), "info": {"pk": user.pk if user.is_authenticated else None}}


def _next(request):
    """Where to go after signing in or out: the page that asked, if it is on this site."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return target
    return "/"


def account_name(name):
    """Return the account name of *name*: NFKC, as Django normalises usernames, then case-folded.

    Names that look alike are one account: "ａｌｉｃｅ" (fullwidth), "Alice" and
    "alice" are all "alice", and "Élodie" is "élodie", whatever the database's
    collation does with case (SQLite's LIKE folds ASCII only).
    """
    folded = get_user_model().normalize_username(name).casefold()
    return unicodedata.normalize("NFKC", folded)  # casefolding may undo NFKC: redo it


def sign_in(request):
    """Sign in under a new name alone: a demo account with no password, so that guests can call each other.

    A name taken already is refused, whoever took it, however it is typed:
    nobody signs in as someone else, or as a look-alike of them.
    """
    error = ""
    name = request.POST.get("name", "").strip()
    if request.method == "POST":
        account = account_name(name)
        taken = f"{name} is taken: choose another name."
        if not NAME_PATTERN.match(account):
            error = "A name has 2 to 30 letters, digits or . @ + - _"
        # iexact also finds accounts made before names were folded ("Ann"), where it can (ASCII).
        elif get_user_model().objects.filter(username__iexact=account).exists():
            error = taken
        else:
            try:
                with transaction.atomic():  # a savepoint: the request may be atomic (ATOMIC_REQUESTS)
                    user = get_user_model().objects.create_user(account)  # no password: it signs in here, once
            except IntegrityError:  # another sign-in took the name since the check
                error = taken
            else:
                login(request, user)
                return redirect(_next(request))
    return render(request, "chat/sign_in.html", {"error": error, "name": name, "next": _next(request)})


@require_POST
def sign_out(request):
    logout(request)
    return redirect(_next(request))


def call(request, peer):
    """Show a call with user *peer*, on the pair channel of the two users."""
    if not request.user.is_authenticated:
        return redirect(f"{reverse('sign-in')}?{urlencode({'next': request.get_full_path()})}")
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
