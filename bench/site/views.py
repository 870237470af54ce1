"""The benchmark's publish endpoint: publish() in the server process itself; and what the server runs."""

import os
import time

from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from django_realtime import publish

CHANNEL = "demo:bench"  # public in the demo settings (PUBLIC_CHANNELS "demo:*")

#: With BENCH_PAYLOAD=html (bench.run --payload html), each event also carries a live model's
#: ``replace`` action as the demo's board publishes it (docs/live.md): 444 bytes of HTML, as pages
#: on a live region receive it.
LIVE_ACTION = (
    '<template data-live="replace" data-live-target="board-item-1"><li hx-swap-oob="outerHTML" '
    'id="board-item-1" class="item" data-pk="1"><span class="title">Renamed</span> '
    '<span class="owner muted"></span> <span class="item-actions"><button type="button" class="link" '
    'data-board-edit aria-label="Rename Renamed">Rename</button> <button type="button" class="link" '
    'data-board-delete aria-label="Delete Renamed">Delete</button></span></li>\n</template>'
)


def payload(seq: int) -> dict:
    """Return an event's data: ``{"t": now, "seq": seq}``, plus the live action under BENCH_PAYLOAD=html."""
    data = {"t": time.time(), "seq": seq}
    if os.environ.get("BENCH_PAYLOAD") == "html":
        data["html"] = LIVE_ACTION
    return data


@csrf_exempt
@require_POST
def publish_event(request):
    """Publish ``{"t": now, "seq": ?seq}`` on ``?channel`` (default: the bench channel); t is the latency's start."""
    seq = int(request.GET["seq"])
    event = publish(request.GET.get("channel", CHANNEL), payload(seq))
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
