"""Render later in Chromium: the log's events, renders finished out of order, applied by htmx and by live.js.

No server: the events are the ones the package stored (tasks run by hand, in
reverse order), fed to the page in log order as each client receives them
(htmx's SSE extension swaps the ``live`` events, live.js applies them); the
page must end as a fresh render of the list.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import django_htmx
import pytest
from django.db import transaction

from django_realtime.live import declarations, later
from django_realtime.live.actions import LIVE_EVENT
from django_realtime.models import Event
from testproject.board.models import ITEMS_CHANNEL, Item
from tests.support.browser import launched_chromium

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not later.available(), reason="no tasks framework (django.tasks or django-tasks)"),
]

STATIC = Path(django_htmx.__file__).parent / "static" / "django_htmx"
LIVE_JS = Path(__file__).parent.parent / "django_realtime" / "static" / "django_realtime" / "live.js"
BACKENDS = "django.tasks.backends" if later._task.__module__.startswith("django.tasks") else "django_tasks.backends"
#: The list as a viewer reads it: each element's id and title (an element with no title shows none).
ITEMS = """() => Array.from(document.querySelectorAll('#board-items > *'),
  (e) => e.id + '|' + ((e.querySelector && e.querySelector('.title')) || {textContent: ''}).textContent.trim())"""


@pytest.fixture
def deferred(settings):
    settings.TASKS = {"default": {"BACKEND": f"{BACKENDS}.dummy.DummyBackend"}}
    original = declarations._registry[Item]
    declarations._registry[Item] = dataclasses.replace(original, render="later", refreshes=None)
    backend = later.render_later.get_backend()  # type: ignore[attr-defined]
    backend.clear()
    yield backend.results
    declarations._registry[Item] = original


@pytest.mark.django_db(transaction=True)
def test_inserts_keep_commit_order_and_the_newest_render_wins_when_renders_finish_out_of_order(deferred):
    with transaction.atomic():
        milk = Item.objects.create(title="Milk")
    bread = Item.objects.create(title="Bread")
    # A page loaded here, after the creates' envelopes and before any render: its list, and its cursor.
    cursor = Event.objects.order_by("-id").values_list("id", flat=True)[0]
    reloaded = "".join(
        later.render_fragment(i, "board/_item.html", f"board-item-{i.pk}") for i in Item.objects.order_by("id")
    )
    milk.title = "Oat milk"
    milk.save()
    tasks = list(deferred)
    for result in reversed(tasks):  # the newest render first, the create of Milk's last
        result.task.call(*result.args, **result.kwargs)
    stored = Event.objects.filter(channel=ITEMS_CHANNEL, event=LIVE_EVENT).order_by("id")
    data = [e.data for e in stored]
    since_reload = [e.data for e in stored if e.id > cursor]
    fresh = [f"board-item-{i.pk}|{i.title}" for i in Item.objects.order_by("id")]
    assert fresh == [f"board-item-{milk.pk}|Oat milk", f"board-item-{bread.pk}|Bread"]

    # Chromium after the database work: Playwright's sync API runs an event loop, where the ORM refuses to run.
    for browser in launched_chromium():
        for client in ("htmx", "live.js"):
            assert apply_in_chromium(browser, client, data) == fresh, client
            assert apply_in_chromium(browser, client, since_reload, reloaded) == fresh, f"{client}, reloaded"
            # A page that shows the items already and gets their placeholders (its cursor was taken before the
            # creates committed, its list read after) keeps showing them until the renders come.
            shown = [f"board-item-{milk.pk}|Milk", f"board-item-{bread.pk}|Bread"]
            assert apply_in_chromium(browser, client, data[:2], reloaded) == shown, client


def apply_in_chromium(browser: Any, client: str, data: list[str], items: str = "") -> list[str]:
    """Apply *data* (the ``live`` events, in log order) as *client* does to a list of *items*; return its items."""
    page = browser.new_page()
    try:
        page.set_content(f'<ul id="board-items">{items}</ul><span id="sink" hx-swap="none"></span>')
        if client == "htmx":
            page.add_script_tag(path=str(STATIC / "htmx-2.min.js"))
            # What htmx's SSE extension does with each event sse-swap names: a swap that applies the out-of-band parts.
            apply = "(data) => htmx.swap(document.getElementById('sink'), data, {swapStyle: 'none'})"
        else:
            page.add_script_tag(path=str(LIVE_JS))
            apply = "(data) => DjangoRealtimeLive.applyAction(data)"
        for one in data:
            page.evaluate(apply, one)
        page.wait_for_timeout(100)  # htmx settles its swaps on a timer
        assert page.evaluate("() => document.querySelectorAll('#board-items template').length") == 0
        return page.evaluate(ITEMS)
    finally:
        page.close()
