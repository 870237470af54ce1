"""The demo's live board (testproject/board): who owns an item, what a bad title gets, the live count."""

import pytest
from django.contrib.auth.models import User
from django.test import Client

from django_realtime import live
from django_realtime.testing import assert_broadcasts, assert_no_broadcasts, capture_broadcasts
from testproject.board.models import TOTAL_CHANNEL, TOTAL_ID, Item

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.urls")]


def test_an_item_belongs_to_the_signed_in_user_who_made_it_and_to_nobody_for_a_guest():
    ann = User.objects.create_user("ann")
    client = Client()
    client.force_login(ann)
    mine = client.post("/board/items/", {"title": "Milk", "owner": "someone else"}).json()["id"]
    guest = Client().post("/board/items/", {"title": "Bread"}).json()["id"]
    assert Item.objects.get(pk=mine).owner == ann  # the session says who, never a posted field
    assert Item.objects.get(pk=guest).owner is None
    # An edit renames; it never changes hands.
    assert Client().post(f"/board/items/{mine}/", {"title": "Oat milk"}).status_code == 200
    assert Item.objects.get(pk=mine).owner == ann


def test_the_mine_column_lists_the_viewers_own_items_only():
    ann, bob = User.objects.create_user("ann"), User.objects.create_user("bob")
    Item.objects.create(title="ann's", owner=ann)
    Item.objects.create(title="bob's", owner=bob)
    client = Client()
    client.force_login(ann)
    html = client.get("/board/").content.decode()
    mine = html[html.index('id="board-mine"') :]
    assert "ann&#x27;s" in mine and "bob&#x27;s" not in mine and '<b id="mine-count">1</b>' in mine
    # A guest has no column of its own to refresh: its page follows no refresh channel (no refetch per change).
    for path in ("/board/", "/board/plain/"):
        guest = Client().get(path).content.decode()
        assert "Sign in" in guest and "board:counts" not in guest and "board%3Acounts" not in guest
    assert "board%3Acounts" in html


@pytest.mark.parametrize(
    ("title", "error"), [("", b"needs a title"), ("   ", b"needs a title"), ("x" * 201, b"at most 200 characters")]
)
def test_a_bad_title_is_refused_with_a_reason_and_changes_nothing(title, error):
    item = Item.objects.create(title="kept")
    for path in ("/board/items/", f"/board/items/{item.pk}/"):
        with assert_no_broadcasts():
            response = Client().post(path, {"title": title})
        assert response.status_code == 400 and error in response.content
    assert list(Item.objects.values_list("title", flat=True)) == ["kept"]


def test_the_count_of_items_is_updated_in_the_transaction_of_each_create_and_delete():
    with assert_broadcasts(TOTAL_CHANNEL, "update") as sent:
        item = Item.objects.create(title="Milk")
    assert sent[0].target == TOTAL_ID and f'innerHTML:#{TOTAL_ID}">1</div>' in sent[0].html
    with assert_no_broadcasts(TOTAL_CHANNEL):
        item.title = "Oat milk"
        item.save()  # the count is the same
    with assert_broadcasts(TOTAL_CHANNEL, "update") as sent:
        item.delete()
    assert f'innerHTML:#{TOTAL_ID}">0</div>' in sent[0].html
    with capture_broadcasts() as sent, live.suppressed():
        Item.objects.create(title="imported")
    assert list(sent) == []
