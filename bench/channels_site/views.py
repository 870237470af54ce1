"""The baseline's publish endpoint: ``group_send`` in the daphne process that holds the sockets."""

import itertools
import time

from channels.layers import get_channel_layer
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from bench.channels_site.consumers import GROUP

CHANNEL = "demo:bench"
_ids = itertools.count(1)


@csrf_exempt
@require_POST
async def publish_event(request):
    """Send ``{"t": now, "seq": ?seq}`` to the group; t is the latency's start."""
    seq = int(request.GET["seq"])
    event_id = next(_ids)
    event = {"type": "event", "channel": CHANNEL, "id": str(event_id), "event": "message"}
    event["data"] = {"t": time.time(), "seq": seq}
    await get_channel_layer().group_send(GROUP, {"type": "bench.event", "event": event})
    return JsonResponse({"id": event_id})


def stats(request):
    """Report what the channel layer sent and dropped, and how many sockets the group holds."""
    layer = get_channel_layer()
    members = len(layer.groups.get(GROUP, {}))
    return JsonResponse({"layer_sent": layer.sent, "layer_dropped": layer.dropped, "group_members": members})


def ping(request):
    """Answer once the server has loaded the project."""
    return HttpResponse("ok\n", content_type="text/plain")
