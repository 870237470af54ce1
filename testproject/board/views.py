"""The live board: a list kept live by htmx (``/board/``) or by live.js (``/board/plain/``)."""

from django.db import transaction
from django.http import HttpResponseBadRequest, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_POST

from .models import Item

MAX_TITLE = 200
MAX_OWNER = 40


def _page(request, template):
    # Unevaluated querysets: {% live_region %} takes its cursor before they are read.
    viewer = request.GET.get("as", "")[:MAX_OWNER]
    context = {"items": Item.objects.all(), "viewer": viewer, "mine": Item.objects.filter(owner=viewer)}
    return render(request, template, context)


def board(request):
    """The board with htmx: its SSE extension applies every change and refetches the counts on a refresh."""
    return _page(request, "board/board.html")


def board_plain(request):
    """The same board without htmx: live.js binds its regions."""
    return _page(request, "board/board_plain.html")


def _fields(request):
    title = request.POST.get("title", "").strip()[:MAX_TITLE]
    return title, request.POST.get("owner", "").strip()[:MAX_OWNER]


@require_POST
@transaction.atomic  # the row and its broadcast commit together
def create(request):
    title, owner = _fields(request)
    if not title:
        return HttpResponseBadRequest("An item needs a title")
    item = Item.objects.create(title=title, owner=owner)
    return JsonResponse({"id": item.pk})


@require_POST
@transaction.atomic
def edit(request, pk):
    item = get_object_or_404(Item, pk=pk)
    title, owner = _fields(request)
    if not title:
        return HttpResponseBadRequest("An item needs a title")
    item.title, item.owner = title, owner
    item.save()
    return JsonResponse({"id": item.pk})


@require_POST
@transaction.atomic
def delete(request, pk):
    get_object_or_404(Item, pk=pk).delete()
    return JsonResponse({"id": pk})
