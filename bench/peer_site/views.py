"""The peer's publish endpoint: send_event() in the server process itself."""

import time

from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from django_eventstream import send_event

CHANNEL = "demo:bench"


@csrf_exempt
@require_POST
def publish_event(request):
    """Send ``{"t": now, "seq": ?seq}`` on the bench channel; t is the latency's start."""
    seq = int(request.GET["seq"])
    send_event(request.GET.get("channel", CHANNEL), "message", {"t": time.time(), "seq": seq})
    return HttpResponse(status=204)


def ping(request):
    """Answer once the server has loaded the project."""
    return HttpResponse("ok\n", content_type="text/plain")
