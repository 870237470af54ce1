"""The event log in Django's admin: read-only browsing, and publishing by hand through publish()."""

import pytest
from django.contrib.auth.models import Permission, User

from django_realtime import publish
from django_realtime.models import Event, PresenceMember, PresenceProcess, PruneMark
from django_realtime.testing import capture_events

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/django_realtime/event/"


@pytest.fixture
def staff(client):
    user = User.objects.create_user("staff", password="x", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_event", "add_event", "view_prunemark"]))
    client.force_login(user)
    return client


def test_the_log_is_listed_newest_first_searchable_and_filtered_by_channel_kind_and_event(staff):
    publish("chat:lobby", {"text": "hello"})
    publish("user:7", {"text": "private"}, event="notice")
    publish("chat:other", "x" * 200)
    page = staff.get(CHANGELIST).content.decode()
    assert page.index("chat:other") < page.index("user:7") < page.index("chat:lobby")
    assert "x" * 78 + "…" in page and "x" * 79 not in page  # data is previewed, not dumped
    assert "user:7" not in staff.get(CHANGELIST, {"kind": "chat"}).content.decode()
    assert "chat:" not in staff.get(CHANGELIST, {"event": "notice"}).content.decode()
    found = staff.get(CHANGELIST, {"q": "hello"}).content.decode()
    assert "chat:lobby" in found and "user:7" not in found
    assert staff.get(CHANGELIST, {"created__year": "2001"}).status_code == 200  # the date hierarchy


def test_an_event_cannot_be_changed_or_deleted(staff):
    event = publish("chat:lobby", 1)
    page = staff.get(f"{CHANGELIST}{event.id}/change/")
    assert page.status_code == 200 and b'name="channel"' not in page.content
    assert staff.post(f"{CHANGELIST}{event.id}/change/", {"channel": "chat:x"}).status_code == 403
    assert staff.post(f"{CHANGELIST}{event.id}/delete/", {"post": "yes"}).status_code == 403
    assert Event.objects.get(id=event.id).channel == "chat:lobby"


def test_adding_publishes_through_publish_and_redirects_to_the_log(staff):
    assert b"Publish" in staff.get(f"{CHANGELIST}add/").content
    with capture_events() as published:
        response = staff.post(
            f"{CHANGELIST}add/", {"channel": "chat:lobby", "event": "notice", "payload": '{"text": "by hand"}'}
        )
    assert response.status_code == 302 and response["Location"] == CHANGELIST
    [event] = published
    assert (event.channel, event.event, event.data) == ("chat:lobby", "notice", {"text": "by hand"})
    assert f"Published event {event.id} to chat:lobby" in staff.get(CHANGELIST).content.decode()


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"channel": "chat:lobby", "event": "message", "payload": "{oops"}, "Not JSON"),
        ({"channel": "bad channel", "event": "message", "payload": "1"}, "channel"),
        ({"channel": "chat:lobby", "event": "reset", "payload": "1"}, "reserved"),
    ],
)
def test_bad_input_is_shown_on_the_form_and_nothing_is_stored(staff, fields, error):
    response = staff.post(f"{CHANGELIST}add/", fields)
    assert response.status_code == 200 and error in response.content.decode()
    assert not Event.objects.exists()


def test_publishing_needs_the_add_permission(client):
    user = User.objects.create_user("viewer", password="x", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_event"))
    client.force_login(user)
    assert client.get(CHANGELIST).status_code == 200
    assert client.post(f"{CHANGELIST}add/", {"channel": "chat:a", "event": "m", "payload": "1"}).status_code == 403
    assert not Event.objects.exists()


def test_prune_marks_are_listed(staff):
    PruneMark.objects.create(channel="chat:lobby", pruned_through=41)
    page = staff.get("/admin/django_realtime/prunemark/").content.decode()
    assert "chat:lobby" in page and "41" in page


def test_presence_members_and_processes_are_listed_and_cannot_be_added_changed_or_deleted(client):
    from django.utils import timezone

    # A superuser: every permission but what the admin itself takes away.
    client.force_login(User.objects.create_superuser("root", password="x"))
    staff = client
    PresenceProcess.objects.create(key="a" * 32, seen=timezone.now())
    PresenceMember.objects.create(connection="b" * 32, process="a" * 32, channel="chat:lobby", user="ada")
    page = staff.get("/admin/django_realtime/presencemember/").content.decode()
    assert "ada" in page and "chat:lobby" in page
    assert "a" * 32 in staff.get("/admin/django_realtime/presenceprocess/").content.decode()
    for model in ("presencemember", "presenceprocess"):
        assert staff.get(f"/admin/django_realtime/{model}/add/").status_code == 403
    member = f"/admin/django_realtime/presencemember/{'b' * 32}/"
    assert staff.post(f"{member}change/", {"user": "eve"}).status_code == 403
    assert staff.post(f"{member}delete/", {"post": "yes"}).status_code == 403
    assert PresenceMember.objects.get().user == "ada"


def test_the_admin_index_names_each_model_in_plain_english(admin_client):
    page = admin_client.get("/admin/").content.decode()
    assert "Presence processes" in page and "Skipped ids" in page
    assert "processs" not in page and "idss" not in page.lower()
