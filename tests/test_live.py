"""Live models: what a model's changes publish, in which transaction, and the helpers that test it."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.db import transaction
from django.template import Context, Template, TemplateSyntaxError
from django.test import RequestFactory

from django_realtime import live
from django_realtime.cursor import Cursor
from django_realtime.live.actions import action_html, parse_action, root_of
from django_realtime.models import Event
from django_realtime.publishing import publish
from django_realtime.testing import assert_broadcasts, assert_no_broadcasts, capture_broadcasts
from testproject.board.models import COUNTS_CHANNEL, ITEMS_CHANNEL, TOTAL_CHANNEL, Item


def stored(channel: str) -> list[tuple[str, object]]:
    """Return the (event, data) of what the log holds on *channel*, oldest first."""
    return [(e.event, e.data) for e in Event.objects.filter(channel=channel).order_by("id")]


def actions_on(channel: str) -> list[str]:
    return [parse_action(channel, event, data).action for event, data in stored(channel)]  # type: ignore[union-attr]


# The wire form -------------------------------------------------------------


def test_each_action_is_one_template_that_htmx_swaps_out_of_band():
    li = '<li id="board-item-5">Milk</li>'
    assert action_html("append", target="list", dom_id="board-item-5", html=li) == (
        '<template data-live="append" data-live-target="list" data-live-id="board-item-5">'
        '<div hx-swap-oob="beforeend:body:not(:has(#board-item-5)) #list">' + li + "</div></template>"
    )
    assert 'hx-swap-oob="afterbegin:' in action_html("prepend", target="list", dom_id="board-item-5", html=li)
    assert 'hx-swap-oob="beforebegin:' in action_html("before", target="x", dom_id="board-item-5", html=li)
    assert 'hx-swap-oob="afterend:' in action_html("after", target="x", dom_id="board-item-5", html=li)
    assert action_html("replace", target="board-item-5", html=li) == (
        '<template data-live="replace" data-live-target="board-item-5">'
        '<li hx-swap-oob="outerHTML" id="board-item-5">Milk</li></template>'
    )
    assert '<div hx-swap-oob="innerHTML:#count">3</div>' in action_html("update", target="count", html="3")
    assert '<div hx-swap-oob="delete:#board-item-5"></div>' in action_html("remove", target="board-item-5")


def test_rows_are_wrapped_in_a_table_section_so_the_parser_keeps_them():
    tr = '<tr id="r-1"><td>1</td></tr>'
    assert '<tbody hx-swap-oob="beforeend:' in action_html("append", target="rows", dom_id="r-1", html=tr)


@pytest.mark.parametrize(
    ("html", "dom_id"),
    [("<li>no id</li>", "a-1"), ('<li id="a-2">other</li>', "a-1"), ('text <li id="a-1">', "a-1"), ("", "a-1")],
)
def test_an_inserted_or_replaced_fragment_must_be_the_element_of_its_id(html, dom_id):
    with pytest.raises(ValueError, match="must start with one element whose id is"):
        action_html("append", target="list", dom_id=dom_id, html=html)
    with pytest.raises(ValueError, match="must start with one element whose id is"):
        action_html("replace", target=dom_id, html=html)


@pytest.mark.parametrize("target", ["1abc", "a b", 'a"><script>', "#x", "", None, "x" * 201])
def test_targets_that_are_no_safe_dom_id_are_refused(target):
    with pytest.raises(ValueError, match="must start with a letter"):
        action_html("remove", target=target)


def test_an_unknown_action_is_refused():
    with pytest.raises(ValueError, match="unknown action 'morph'"):
        action_html("morph", target="x")


def test_root_of_finds_the_first_element_and_its_id():
    assert root_of('  <li class="a" id="x-1"><b id="y">') == ("li", "x-1")


# Names ---------------------------------------------------------------------


@pytest.mark.django_db
def test_dom_ids_and_channels_are_derived_from_the_instance():
    item = Item.objects.create(title="Milk")
    assert live.dom_id(item) == f"board-item-{item.pk}"
    assert live.dom_id(item, "mine") == f"mine-board-item-{item.pk}"
    assert live.channel_for(Item) == "live:board.item"
    assert live.channel_for(item) == f"live:board.item:{item.pk}"
    assert live.object_for_channel(live.channel_for(item)) == item
    assert live.object_for_channel("live:board.item:999999") is None
    assert live.object_for_channel("live:nope.model:1") is None
    assert live.object_for_channel("board:items") is None
    # Channel names come from strangers: a key that is no primary key names nothing, and raises nothing.
    assert live.object_for_channel("live:board.item:abc") is None
    assert live.object_for_channel("live:board.item:1_2e5") is None
    with pytest.raises(ValueError, match="no primary key"):
        live.dom_id(Item(title="unsaved"))


# Same transaction, exactly once, in order -------------------------------------


@pytest.mark.django_db(transaction=True)
def test_create_update_delete_publish_with_their_transaction_once_in_order():
    with transaction.atomic():
        item = Item.objects.create(title="Milk")
        # Stored with the row, before the commit: not left to an on-commit hook that a crash would skip.
        assert actions_on(ITEMS_CHANNEL) == ["append"]
        item.title = "Oat milk"
        item.save()
        item.delete()
    assert actions_on(ITEMS_CHANNEL) == ["append", "replace", "remove"]
    (_, appended), (_, replaced), _ = stored(ITEMS_CHANNEL)
    assert "Milk" in appended and "Oat milk" in replaced
    # One refresh for the whole transaction: the pages refetch once.
    assert actions_on(COUNTS_CHANNEL) == ["refresh"]


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_change_publishes_nothing():
    with pytest.raises(RuntimeError), transaction.atomic():
        Item.objects.create(title="Milk")
        raise RuntimeError("the view failed")
    assert stored(ITEMS_CHANNEL) == [] and stored(COUNTS_CHANNEL) == []
    assert not Item.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_refresh_rolled_back_with_its_savepoint_is_published_again():
    with transaction.atomic():
        with pytest.raises(RuntimeError), transaction.atomic():
            Item.objects.create(title="Milk")
            raise RuntimeError
        Item.objects.create(title="Bread")
    assert actions_on(COUNTS_CHANNEL) == ["refresh"]
    assert actions_on(ITEMS_CHANNEL) == ["append"]


@pytest.mark.django_db(transaction=True)
def test_a_refresh_noted_in_a_savepoint_rolled_back_is_forgotten_with_it():
    with transaction.atomic():
        live.refresh("a")
        with pytest.raises(RuntimeError), transaction.atomic():
            live.refresh("b")
            raise RuntimeError
        live.refresh("b")
        with transaction.atomic():
            live.refresh("a")  # published in the enclosing block already
    assert actions_on("a") == ["refresh"] and actions_on("b") == ["refresh"]


@pytest.mark.django_db(transaction=True)
def test_each_transaction_has_its_own_refresh():
    Item.objects.create(title="Milk")
    Item.objects.create(title="Bread")
    assert actions_on(COUNTS_CHANNEL) == ["refresh", "refresh"]


@pytest.mark.django_db(transaction=True)
def test_suppressed_blocks_broadcast_nothing():
    with live.suppressed():
        item = Item.objects.create(title="Imported")
        item.delete()
        live.refresh("board:counts")
        assert live.is_suppressed()
    assert not live.is_suppressed()
    assert stored(ITEMS_CHANNEL) == [] and stored(COUNTS_CHANNEL) == []


@pytest.mark.django_db
def test_queryset_delete_removes_each_row():
    items = [Item.objects.create(title=t) for t in "ab"]
    with assert_broadcasts(ITEMS_CHANNEL, "remove", "remove") as sent:
        Item.objects.all().delete()
    assert sorted(a.target for a in sent) == sorted(live.dom_id(i) for i in items)


@pytest.mark.django_db
def test_queryset_update_and_bulk_create_broadcast_only_when_told():
    item = Item.objects.create(title="Milk")
    with assert_no_broadcasts():
        Item.objects.filter(pk=item.pk).update(title="Oat milk")
        created = Item.objects.bulk_create([Item(title="Eggs")])
    with assert_broadcasts(ITEMS_CHANNEL, "replace", "append"):
        live.saved(Item.objects.filter(pk=item.pk))
        live.saved(created, created=True)
    with assert_broadcasts(ITEMS_CHANNEL, "remove"):
        live.deleted(item)


@pytest.mark.django_db
def test_loaddata_saves_are_not_broadcast():
    from django.db.models.signals import post_save

    with assert_no_broadcasts():
        post_save.send(sender=Item, instance=Item(pk=7, title="x"), created=True, raw=True, using="default")


# Security --------------------------------------------------------------------


@pytest.mark.django_db
def test_fragments_are_rendered_with_autoescaping():
    with capture_broadcasts(ITEMS_CHANNEL) as sent:
        Item.objects.create(title='<script>alert("x")</script>', owner=User.objects.create(username="<b>"))
    html = sent.fragments("append")[0]
    assert "<script>" not in html and "&lt;script&gt;" in html and "&lt;b&gt;" in html


# Refreshes and the originating request ------------------------------------------


@pytest.mark.django_db
def test_a_refresh_names_the_request_that_caused_it():
    with capture_broadcasts(COUNTS_CHANNEL) as sent, live.originating("page-1"):
        Item.objects.create(title="Milk")
    assert [(a.action, a.html) for a in sent] == [("refresh", "page-1")]


@pytest.mark.django_db
def test_the_middleware_takes_the_request_id_from_the_header_and_refuses_bad_ones():
    seen = []
    middleware = live.RequestIdMiddleware(lambda request: seen.append(live.requests.current_request_id()))
    factory = RequestFactory()
    middleware(factory.get("/", HTTP_REALTIME_REQUEST_ID="abc_DEF-1"))
    middleware(factory.get("/", HTTP_REALTIME_REQUEST_ID="x\r\ny"))
    middleware(factory.get("/"))
    assert seen == ["abc_DEF-1", None, None]
    with pytest.raises(ValueError, match="request id"):
        live.originating("a b").__enter__()


# Declarations --------------------------------------------------------------------


def test_declarations_are_checked():
    with pytest.raises(ValueError, match="broadcasts nothing"):
        live.register(Item)
    with pytest.raises(ValueError, match="needs target="):
        live.register(Item, to="x")
    with pytest.raises(ValueError, match="on_create is one of"):
        live.register(Item, to="x", target="t", on_create="replace")
    with pytest.raises(ValueError, match="on_update is"):
        live.register(Item, to="x", target="t", on_update="append")
    with pytest.raises(TypeError):
        live.register(object)  # type: ignore[arg-type]
    assert live.declaration_for(Item).target == "board-items"


@pytest.mark.django_db
def test_channels_and_targets_may_be_callables_of_the_instance():
    declaration = live.declaration_for(Item)
    live.register(Item, to=lambda item: [f"board:owner:{item.owner}"], target=lambda item: f"list-{item.owner}")
    try:
        with assert_broadcasts("board:owner:ann", "append") as sent:
            Item.objects.create(title="Milk", owner=User.objects.create(username="ann"))
        assert sent[0].target == "list-ann"
    finally:
        live.register(Item, to=declaration.to, target=declaration.target, refreshes=declaration.refreshes)


# Testing helpers ----------------------------------------------------------------


@pytest.mark.django_db
def test_assert_broadcasts_fails_on_other_actions_or_none():
    with pytest.raises(AssertionError, match=r"were \['append'\], not \['remove'\]"):
        with assert_broadcasts(ITEMS_CHANNEL, "remove"):
            Item.objects.create(title="Milk")
    with pytest.raises(AssertionError, match="no broadcast on"):
        with assert_broadcasts(ITEMS_CHANNEL):
            pass
    with pytest.raises(AssertionError, match="1 broadcasts on 'board:items', not 2"):
        with assert_broadcasts(ITEMS_CHANNEL, count=2):
            Item.objects.create(title="Bread")
    with pytest.raises(AssertionError, match="expected no broadcasts"):
        with assert_no_broadcasts():
            Item.objects.create(title="Eggs")


@pytest.mark.django_db
def test_capture_broadcasts_ignores_other_events():
    with capture_broadcasts() as sent:
        publish("board:items", {"not": "an action"})
        Item.objects.create(title="Milk")
    assert sent.actions() == [(ITEMS_CHANNEL, "append"), (COUNTS_CHANNEL, "refresh"), (TOTAL_CHANNEL, "update")]


# The template tags -------------------------------------------------------------


class Publisher:
    """Publishes an event when the template reads it: a change made while the region renders."""

    def __init__(self) -> None:
        self.id: int | None = None

    def __str__(self) -> str:
        self.id = publish("board:items", "during").id
        return "read"


@pytest.mark.django_db(transaction=True)
def test_a_region_takes_its_cursor_before_its_content_renders():
    publisher = Publisher()
    template = Template('{% load realtime_live %}{% live_region "board:items" id="r" %}{{ p }}{% endlive_region %}')
    html = template.render(Context({"p": publisher}))
    cursor = html.split('data-live-cursor="')[1].split('"')[0]
    assert not Cursor.parse(cursor).covers(publisher.id), "a change made during the render would be lost"


@pytest.mark.django_db
def test_the_htmx_region_connects_from_its_cursor_and_refreshes_on_refresh_and_reset():
    template = Template(
        '{% load realtime_live %}{% live_region "board:items" "board:counts" id="r" htmx=True src="/x/" %}'
        "<p>hi</p>{% endlive_region %}"
    )
    html = template.render(Context({}))
    assert 'hx-ext="sse"' in html and "channel=board%3Aitems&amp;channel=board%3Acounts&amp;data=text" in html
    assert "lastEventId=" in html and 'sse-swap="live" hx-swap="none"' in html
    assert "sse:live-refresh[detail.data!==" in html and "sse:reset" in html
    assert 'hx-get="/x/"' in html and 'hx-select="#r"' in html and "<p>hi</p>" in html


@pytest.mark.parametrize(
    ("tag", "error"),
    [
        ('{% live_region id="r" %}', "at least one channel"),
        ('{% live_region "a b" id="r" %}', "channel name"),
        ('{% live_region "c" %}', "live_region id"),
        ('{% live_region "c" id="r" bogus=1 %}', "takes no bogus"),
        ('{% live_region "c" id="r" tag="script" %}', "element name"),
    ],
)
@pytest.mark.django_db
def test_bad_regions_are_refused(tag, error):
    with pytest.raises((TemplateSyntaxError, ValueError), match=error):
        Template("{% load realtime_live %}" + tag + "{% endlive_region %}").render(Context({}))


@pytest.mark.django_db
def test_a_request_has_one_request_id_in_all_its_regions():
    request = RequestFactory().get("/board/?as=ann")
    html = Template(
        '{% load realtime_live %}{% live_region "board:items" id="a" %}{% endlive_region %}'
        '{% live_region "board:counts" id="b" htmx=True %}{% endlive_region %}{% live_request_id %}'
    ).render(Context({"request": request}))
    request_id = html.rsplit(">", 1)[1]
    assert f'data-live-request-id="{request_id}"' in html and f"Realtime-Request-Id&quot;: &quot;{request_id}" in html
    assert 'data-live-src="/board/?as=ann"' in html and 'hx-get="/board/?as=ann"' in html
    assert Cursor.parse(live.cursor()) is not None
