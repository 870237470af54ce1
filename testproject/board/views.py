"""The live board: a list kept live by htmx (``/board/``) or by live.js (``/board/plain/``).

Anyone may add, rename and delete items (the demo is one shared board); an
item made by a signed-in user is theirs, and each page lists its viewer's own
items in a "mine" column that a refresh keeps up to date.  Changes made in
the admin or in ``manage.py shell`` reach the open pages the same way.
"""

from django.db import transaction
from django.http import HttpResponseBadRequest, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_POST

from .models import Item

MAX_TITLE = 200


def _page(request, template):
    # Unevaluated querysets: {% live_region %} takes its cursor before they are read.
    mine = Item.objects.filter(owner=request.user) if request.user.is_authenticated else Item.objects.none()
    context = {"items": Item.objects.select_related("owner"), "mine": mine}
    return render(request, template, context)


def board(request):
    """The board with htmx: its SSE extension applies every change and refetches "mine" on a refresh."""
    return _page(request, "board/board.html")


def board_plain(request):
    """The same board without htmx: live.js binds its regions."""
    return _page(request, "board/board_plain.html")


def _title(request):
    """Return the posted title, stripped, or raise ValueError."""
    title = request.POST.get("title", "").strip()
    if not title:
        raise ValueError("An item needs a title")
    if len(title) > MAX_TITLE:
        raise ValueError(f"A title has at most {MAX_TITLE} characters")
    return title


@require_POST
@transaction.atomic  # the row and its broadcast commit together
def create(request):
    try:
        title = _title(request)
    except ValueError as error:
        return HttpResponseBadRequest(str(error))
    owner = request.user if request.user.is_authenticated else None
    item = Item.objects.create(title=title, owner=owner)
    return JsonResponse({"id": item.pk})


@require_POST
@transaction.atomic
def edit(request, pk):
    item = get_object_or_404(Item.objects.select_for_update(), pk=pk)
    try:
        item.title = _title(request)
    except ValueError as error:
        return HttpResponseBadRequest(str(error))
    item.save(update_fields=["title"])
    return JsonResponse({"id": item.pk})


@require_POST
@transaction.atomic
def delete(request, pk):
    get_object_or_404(Item, pk=pk).delete()
    return JsonResponse({"id": pk})
