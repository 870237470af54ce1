"""Render later: the envelope with the row, the HTML from a task, and renders that never go back in time."""

from __future__ import annotations

import dataclasses
import json
import threading

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connections, transaction

from django_realtime import live
from django_realtime.checks import check_render_later
from django_realtime.live import declarations, later
from django_realtime.live.actions import LIVE_EVENT, PENDING_EVENT, action_html, parse_action, pending_html
from django_realtime.models import Event
from testproject.board.models import ITEMS_CHANNEL, Item
from tests.support.servers import manage, project_env

pytestmark = pytest.mark.skipif(not later.available(), reason="no tasks framework (django.tasks or django-tasks)")

#: Where the tasks framework's backends live: Django's own (6.0+), or the backport's.
BACKENDS = "django.tasks.backends" if later._task.__module__.startswith("django.tasks") else "django_tasks.backends"


@pytest.fixture
def rendered_later():
    """Declare the board's items with render='later' for the test (refreshes left out: they are not rendered)."""
    original = declarations._registry[Item]
    declarations._registry[Item] = dataclasses.replace(original, render="later", refreshes=None)
    yield
    declarations._registry[Item] = original


@pytest.fixture
def deferred(settings):
    """Enqueue tasks without running them (the tasks framework's DummyBackend); return the queue."""
    settings.TASKS = {"default": {"BACKEND": f"{BACKENDS}.dummy.DummyBackend"}}
    from django_realtime.live.later import render_later

    backend = render_later.get_backend()  # type: ignore[attr-defined]
    backend.clear()
    return backend.results


def events(channel: str = ITEMS_CHANNEL, after: int = 0) -> list[tuple[str, str]]:
    return [(e.event, e.data) for e in Event.objects.filter(channel=channel, id__gt=after).order_by("id")]


def run(result) -> bool:
    return result.task.call(*result.args, **result.kwargs)


# The envelope with the row, the fragment after the commit --------------------


def test_the_envelope_names_the_action_and_carries_no_html():
    assert pending_html("append", target="board-items", dom_id="board-item-5") == (
        '<template data-live="append" data-live-target="board-items" data-live-id="board-item-5" '
        "data-live-pending></template>"
    )
    # Not an action: the testing helpers, htmx (no sse-swap on it) and live.js leave it alone.
    assert parse_action(ITEMS_CHANNEL, PENDING_EVENT, pending_html("replace", target="board-item-5")) is None
    with pytest.raises(ValueError, match="must start with a letter"):
        pending_html("replace", target="x y")


def test_render_is_now_or_later():
    with pytest.raises(ValueError, match="render is 'now' or 'later'"):
        live.register(Item, to=ITEMS_CHANNEL, target="board-items", render="soon")


@pytest.mark.django_db(transaction=True)
def test_the_envelope_is_stored_with_the_row_and_the_html_follows_after_the_commit(rendered_later, settings):
    settings.TASKS = {"default": {"BACKEND": f"{BACKENDS}.immediate.ImmediateBackend"}}
    with transaction.atomic():
        item = Item.objects.create(title="Milk")
        element = live.dom_id(item)
        # In the row's transaction, in commit order: an empty <template> of the item's DOM id, where it goes.
        placeholder = f'<template id="{element}" data-live-pending></template>'
        assert events() == [(LIVE_EVENT, action_html("append", target="board-items", dom_id=element, html=placeholder))]
    # After the commit, the task's render takes the placeholder's place.
    (event, data) = events()[1]
    assert parse_action(ITEMS_CHANNEL, event, data) == live.Action(ITEMS_CHANNEL, "replace", element, None, data)
    assert f'<li hx-swap-oob="outerHTML" id="{element}"' in data and "Milk" in data

    item.title = "Oat milk"
    item.save()
    # An update's envelope changes nothing on a page: the page keeps the last render until the next.
    assert events()[2] == (PENDING_EVENT, pending_html("replace", target=element))
    assert events()[3][0] == LIVE_EVENT and "Oat milk" in events()[3][1] and 'data-live="replace"' in events()[3][1]
    # A removal renders nothing: no envelope, no task.
    item.delete()
    assert len(events()) == 5 and 'data-live="remove"' in events()[4][1]


@pytest.mark.django_db(transaction=True)
def test_nothing_is_enqueued_before_the_commit_nor_after_a_rollback(rendered_later, deferred):
    with transaction.atomic():
        Item.objects.create(title="Milk")
        assert deferred == []  # a worker that ran now would not see the row
    assert len(deferred) == 1
    with pytest.raises(RuntimeError), transaction.atomic():
        Item.objects.create(title="Bread")
        raise RuntimeError("the view failed")
    assert len(deferred) == 1 and len(events()) == 1


@pytest.mark.django_db(transaction=True)
def test_suppressed_changes_publish_no_envelope_and_enqueue_nothing(rendered_later, deferred):
    with live.suppressed():
        Item.objects.create(title="imported")
    assert deferred == [] and events() == []


# Order: renders that finish out of order ------------------------------------


@pytest.mark.django_db(transaction=True)
def test_tasks_run_in_reverse_order_leave_the_newest_html_last(rendered_later, deferred):
    item = Item.objects.create(title="v1")
    item.title = "v2"
    item.save()
    # A page reloaded here, between the envelopes and their renders, shows v2 and follows from this cursor.
    cursor = Event.objects.order_by("-id").values_list("id", flat=True).first() or 0
    fresh = later.render_fragment(Item.objects.get(), "board/_item.html", live.dom_id(item))
    assert len(deferred) == 2
    assert run(deferred[1]) and run(deferred[0])  # the update's render first, then the create's
    after = events(after=cursor)
    assert [e for e, _ in after] == [LIVE_EVENT, LIVE_EVENT]
    # Each task rendered the row as it is now: the create's late render cannot bring v1 back.
    assert all("v2" in data and "v1" not in data for _, data in after)
    assert fresh in after[-1][1].replace(' hx-swap-oob="outerHTML"', "").replace("<template", "\n<template")


def _race(alias: str, deferred: list) -> list[str]:
    """Run the render of v1 while another connection saves v2 mid-render; return the titles rendered, in log order."""
    item = Item.objects.using(alias).create(title="v1")
    first = deferred[-1]
    saved = threading.Event()
    original = later.render_fragment

    def slow_render(instance, template, dom_id):
        html = original(instance, template, dom_id)
        if not saved.is_set():

            def save_v2() -> None:
                try:
                    Item.objects.using(alias).filter(pk=item.pk).update(title="v2")
                    live.saved(Item.objects.using(alias).get(pk=item.pk), using=alias)
                finally:
                    connections.close_all()

            # Another connection, in another thread: a second request saving while this task renders.
            thread = threading.Thread(target=save_v2)
            thread.start()
            thread.join()
            saved.set()
        return html

    later.render_fragment = slow_render  # type: ignore[assignment]
    try:
        assert run(first)
    finally:
        later.render_fragment = original  # type: ignore[assignment]
    # v2's own render (its saving thread enqueued it on that thread's backend): it runs after the stale one.
    assert run(first)
    titles = []
    for e in Event.objects.using(alias).filter(channel=ITEMS_CHANNEL, event=LIVE_EVENT).order_by("id")[1:]:
        # After the create's placeholder, every render:
        titles.append("v2" if ">v2<" in e.data else "v1" if ">v1<" in e.data else "?")
    return titles


@pytest.mark.django_db(transaction=True)
def test_a_render_whose_row_changed_meanwhile_is_redone_not_published_stale(rendered_later, deferred):
    # The stale render of v1 would land after v2's envelope: it renders again instead, and shows v2.
    assert _race("default", deferred) == ["v2", "v2"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, databases=["default", "postgres"])
def test_on_postgresql_a_render_whose_row_changed_meanwhile_is_redone(rendered_later, deferred, settings):
    settings.REALTIME = {**settings.REALTIME, "BACKEND": "polling", "DATABASE": "postgres"}
    assert _race("postgres", deferred) == ["v2", "v2"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, databases=["default", "postgres"])
def test_on_postgresql_a_save_waits_while_a_render_of_its_row_is_published(rendered_later, deferred, settings):
    settings.REALTIME = {**settings.REALTIME, "BACKEND": "polling", "DATABASE": "postgres"}
    item = Item.objects.using("postgres").create(title="v1")
    original = later._publish
    seen: dict[str, object] = {}

    def save_v2() -> None:
        try:
            Item.objects.using("postgres").filter(pk=item.pk).update(title="v2")
        finally:
            connections.close_all()

    def publish_while_another_saves(*args):
        # Checked and locked: a save of the row from another connection now waits for this transaction.
        thread = threading.Thread(target=save_v2)
        thread.start()
        thread.join(0.5)
        seen["waited"], seen["thread"] = thread.is_alive(), thread
        original(*args)

    later._publish = publish_while_another_saves  # type: ignore[assignment]
    try:
        assert run(deferred[0])
    finally:
        later._publish = original  # type: ignore[assignment]
    seen["thread"].join(10)  # type: ignore[attr-defined]
    assert seen["waited"] is True
    assert Item.objects.using("postgres").get(pk=item.pk).title == "v2"


@pytest.mark.django_db(transaction=True, databases=["default", "mysql"])
def test_on_mariadb_a_render_whose_row_changed_meanwhile_is_redone(rendered_later, deferred, settings):
    # InnoDB's REPEATABLE READ: the locking read inside the transaction sees the newest committed row.
    settings.REALTIME = {**settings.REALTIME, "BACKEND": "polling", "DATABASE": "mysql"}
    assert _race("mysql", deferred) == ["v2", "v2"]


@pytest.mark.django_db(transaction=True)
def test_a_render_of_a_deleted_row_publishes_nothing(rendered_later, deferred):
    item = Item.objects.create(title="Milk")
    item.delete()
    assert run(deferred[0]) is False
    # The placeholder's insert, then its removal: the task found no row and published no render.
    assert [parse_action(ITEMS_CHANNEL, e, d).action for e, d in events()] == ["append", "remove"]  # type: ignore[union-attr]


# Without a tasks framework ---------------------------------------------------


@pytest.mark.django_db
def test_without_a_tasks_framework_render_later_is_a_clear_error_and_a_system_check(rendered_later, monkeypatch):
    monkeypatch.setattr(later, "_task", None)
    with pytest.raises(ImproperlyConfigured, match="render='later' needs Django's tasks framework"):
        Item.objects.create(title="Milk")
    with live.suppressed():
        Item.objects.create(title="imported")  # nothing to render, nothing needed
    (error,) = check_render_later(None)
    assert error.id == "django_realtime.E007" and "board.Item" in error.msg
    monkeypatch.undo()
    assert check_render_later(None) == []


@pytest.mark.django_db(transaction=True)
def test_a_row_that_changes_during_every_render_is_rendered_under_its_lock(rendered_later, deferred):
    item = Item.objects.create(title="v0")
    original = later.render_fragment
    calls = []

    def busy_render(instance, template, dom_id):
        calls.append(instance.title)
        html = original(instance, template, dom_id)
        if len(calls) <= later.ATTEMPTS:  # another writer commits while each optimistic render runs

            def save() -> None:
                try:
                    Item.objects.filter(pk=item.pk).update(title=f"v{len(calls)}")
                finally:
                    connections.close_all()

            thread = threading.Thread(target=save)
            thread.start()
            thread.join()
        return html

    later.render_fragment = busy_render  # type: ignore[assignment]
    try:
        assert run(deferred[0])
    finally:
        later.render_fragment = original  # type: ignore[assignment]
    # Three renders thrown away, then one under the lock, of the newest state.
    assert calls == ["v0", "v1", "v2", "v3"]
    (_, data) = events()[-1]
    assert ">v3<" in data and 'data-live="replace"' in data


@pytest.mark.django_db(transaction=True)
def test_tasks_enqueued_here_run_in_another_process_in_reverse_order_and_the_newest_is_last(rendered_later, deferred):
    """The tasks as a worker gets them (a path and JSON arguments), run in a process of their own, newest first."""
    item = Item.objects.create(title="v1")
    item.title = "v2"
    item.save()
    jobs = [{"path": r.task.module_path, "args": json.loads(json.dumps(r.args))} for r in reversed(deferred)]
    env = project_env(f"sqlite:///{connections['default'].settings_dict['NAME']}")
    env["LATER_JOBS"] = json.dumps(jobs)
    code = (
        "import json, os\n"
        "from django.utils.module_loading import import_string\n"
        "for job in json.loads(os.environ['LATER_JOBS']):\n"
        "    print(import_string(job['path']).call(*job['args']))\n"
    )
    assert manage(env, "shell", "--verbosity", "0", input=code).split()[-2:] == ["True", "True"]
    renders = [data for event, data in events() if event == LIVE_EVENT][1:]  # after the create's placeholder
    assert len(renders) == 2 and all(">v2<" in data for data in renders)
