"""The demo chat: rooms streamed over SSE, messages sent by POST."""

import time

from django.http import HttpResponseBadRequest, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from django_realtime import event_stream, publish

MAX_TEXT = 2000


def index(request):
    return redirect("room", room="lobby")


def room(request, room):
    return render(request, "chat/room.html", {"room": room, "channel": f"chat:{room}"})


@require_POST
def send(request, room):
    text = request.POST.get("text", "").strip()
    nick = request.POST.get("nick", "").strip()[:40] or "anonymous"
    if not text or len(text) > MAX_TEXT:
        return HttpResponseBadRequest(f"text must be 1 to {MAX_TEXT} characters")
    event = publish(f"chat:{room}", {"nick": nick, "text": text}, event="message")
    return JsonResponse({"id": str(event.id)})


def clock(request):
    return render(request, "chat/clock.html")


@event_stream
def clock_stream(request):
    """Tick once a second: a plain generator, streamed by @event_stream."""
    for _ in range(3600):
        yield {"event": "tick", "data": {"now": timezone.now().isoformat()}}
        time.sleep(1)
