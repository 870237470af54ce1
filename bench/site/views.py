"""The benchmark's publish endpoint: publish() in the server process itself; and what the server runs."""

import os
import time

from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from django_realtime import publish

CHANNEL = "demo:bench"  # public in the demo settings (PUBLIC_CHANNELS "demo:*")


@csrf_exempt
@require_POST
def publish_event(request):
    """Publish ``{"t": now, "seq": ?seq}`` on ``?channel`` (default: the bench channel); t is the latency's start."""
    seq = int(request.GET["seq"])
    event = publish(request.GET.get("channel", CHANNEL), {"t": time.time(), "seq": seq})
    return JsonResponse({"id": event.id})


def ping(request):
    """Answer once the worker has loaded the project."""
    return HttpResponse("ok\n", content_type="text/plain")


def info(request):
    """Say where this process imported django_realtime and testproject from (symlinks resolved), and its pid."""
    import django_realtime
    import testproject

    return JsonResponse(
        {
            "django_realtime": os.path.dirname(os.path.realpath(django_realtime.__file__)),
            "testproject": os.path.dirname(os.path.realpath(testproject.__file__)),
            "pid": os.getpid(),
        }
    )
