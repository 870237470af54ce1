"""The demo: chat rooms with presence, a dashboard fed from the shell, and a clock.

Everything live goes through the event log.  A room is one channel,
``chat:<room>``: it holds the room's messages (replayed from the start on
join, so the history needs no table of its own) and, as the package's
presence (``PRESENCE_CHANNELS``, docs/presence.md), the ``presence.join`` and
``presence.leave`` events of the pages that have it open: each page is
present under its nickname while its connection is open (see
static/chat/room.js).  Pages send over their WebSocket (``PUBLISH_CHANNELS``)
or, over SSE, by the POST view below, which checks what it publishes.
"""

import time

from django.http import Http404, HttpResponseBadRequest, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify
from django.views.decorators.http import require_POST

from django_realtime import event_stream, publish, publish_html

#: Longest message, in characters (the page enforces it too).
MAX_TEXT = 2000
#: Longest nickname, in characters.
MAX_NICK = 40
#: Longest room name: rooms are channel names, which allow 200 characters.
MAX_ROOM = 50
#: Rooms offered in the sidebar.
SUGGESTED_ROOMS = ["lobby", "random", "django"]
DASHBOARD_CHANNEL = "demo:dashboard"
TICKER_CHANNEL = "demo:ticker"


def _check_room(room):
    if len(room) > MAX_ROOM:
        raise Http404("No such room")


def _nick(request, given):
    """Return the sender's name: the logged-in user's, else the one the page gives."""
    if request.user.is_authenticated:
        return request.user.get_username()[:MAX_NICK]
    return given.strip()[:MAX_NICK] or "anonymous"


def index(request):
    return redirect("room", room="lobby")


def join(request):
    """Go to the room typed into the sidebar's form, its name made a slug."""
    room = slugify(request.GET.get("name", ""))[:MAX_ROOM] or "lobby"
    return redirect("room", room=room)


def room(request, room):
    _check_room(room)
    transport = {"ws": "websocket", "sse": "sse"}.get(request.GET.get("transport", ""), "auto")
    config = {
        "room": room,
        "chatChannel": f"chat:{room}",
        "sendUrl": reverse("send", args=[room]),
        "transport": transport,
        "user": request.user.get_username() if request.user.is_authenticated else "",
        # Signed-in users can call each other from the list of who is here (calls.py).
        "me": request.user.pk if request.user.is_authenticated else None,
        "callUrl": reverse("call", args=[0]),
        "maxText": MAX_TEXT,
        "maxNick": MAX_NICK,
    }
    rooms = sorted({*SUGGESTED_ROOMS, room})
    context = {"room": room, "rooms": rooms, "config": config, "transport": request.GET.get("transport", "")}
    return render(request, "chat/room.html", context)


@require_POST
def send(request, room):
    """Publish a chat message: how pages on the SSE transport send."""
    _check_room(room)
    text = request.POST.get("text", "").strip()
    if not text or len(text) > MAX_TEXT:
        return HttpResponseBadRequest(f"text must be 1 to {MAX_TEXT} characters")
    event = publish(f"chat:{room}", {"nick": _nick(request, request.POST.get("nick", "")), "text": text})
    return JsonResponse({"id": str(event.id)})


def dashboard(request):
    return render(request, "chat/dashboard.html", {"channel": DASHBOARD_CHANNEL})


@require_POST
def click(request):
    """Count a click: publish() from a view, as any view, signal or task may."""
    stored = publish(DASHBOARD_CHANNEL, {"source": "button"}, event="click")
    return JsonResponse({"id": str(stored.id)})


def clock(request):
    return render(request, "chat/clock.html")


@event_stream
def clock_stream(request):
    """Tick once a second: a plain generator, streamed by @event_stream."""
    for _ in range(3600):
        yield {"event": "tick", "data": {"now": timezone.now().isoformat()}}
        time.sleep(1)


def ticker(request):
    """A live list driven by htmx alone: its SSE extension swaps in the HTML each event carries."""
    return render(request, "chat/ticker.html", {"channel": TICKER_CHANNEL})


@require_POST
def ticker_post(request):
    """Render one item of the list from its template and publish the HTML: every open ticker page prepends it."""
    text = request.POST.get("text", "").strip()[:MAX_TEXT]
    if not text:
        return HttpResponseBadRequest("Say something")
    context = {"nick": _nick(request, request.POST.get("nick", "")), "text": text, "at": timezone.now()}
    stored = publish_html(TICKER_CHANNEL, "chat/ticker_item.html", context, event="tick")
    return JsonResponse({"id": str(stored.id)})
