"""The benchmark's publish endpoint: publish() in the server process itself."""

import time

from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from django_realtime import publish

CHANNEL = "demo:bench"  # public in the demo settings (PUBLIC_CHANNELS "demo:*")


@csrf_exempt
@require_POST
def publish_event(request):
    """Publish ``{"t": now, "seq": ?seq}`` on the bench channel; t is the latency's start."""
    seq = int(request.GET["seq"])
    event = publish(request.GET.get("channel", CHANNEL), {"t": time.time(), "seq": seq})
    return JsonResponse({"id": event.id})


def ping(request):
    """Answer once the worker has loaded the project."""
    return HttpResponse("ok\n", content_type="text/plain")
