"""django_realtime.compat.eventstream: django-eventstream's send_event() on publish()."""

import inspect

import pytest
from django.db import transaction

from django_realtime import testing
from django_realtime.compat.eventstream import send_event
from django_realtime.exceptions import InvalidChannelName, InvalidEventData, InvalidEventName, UnsupportedOption
from django_realtime.models import Event

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls("tests.urls")]


def test_the_signature_is_django_eventstreams():
    # django_eventstream/eventstream.py, fanout/django-eventstream f77ffa7 (5.3.4).
    parameters = inspect.signature(send_event).parameters.values()
    assert [(p.name, p.kind, p.default) for p in parameters] == [
        ("channel", inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.empty),
        ("event_type", inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.empty),
        ("data", inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.empty),
        ("skip_user_ids", inspect.Parameter.POSITIONAL_OR_KEYWORD, None),
        ("async_publish", inspect.Parameter.POSITIONAL_OR_KEYWORD, True),
        ("json_encode", inspect.Parameter.POSITIONAL_OR_KEYWORD, True),
    ]


def test_send_event_publishes_the_data_under_the_event_type_and_a_stream_delivers_it(client):
    with testing.capture_events("chat:test") as published:
        stored = send_event("chat:test", "message", {"text": "hello world"})
    assert [(e.pk, e.channel, e.event, e.data) for e in published] == [
        (stored.pk, "chat:test", "message", {"text": "hello world"})
    ]
    response = client.get(f"/events/?channel=chat:test&lastEventId={stored.pk - 1}")
    [event] = testing.read_sse(response, 1)
    assert (event.id, event.event, event.data) == (str(stored.pk), "message", {"text": "hello world"})


def test_json_encode_false_publishes_the_value_of_the_json_text(client):
    stored = send_event("chat:test", "update", '{"text": "caf\\u00e9", "n": [1, 2]}', json_encode=False)
    response = client.get(f"/events/?channel=chat:test&lastEventId={stored.pk - 1}")
    [event] = testing.read_sse(response, 1)
    assert (event.event, event.data) == ("update", {"text": "café", "n": [1, 2]})


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"text": "hi"}, TypeError),
        (b'{"text": "hi"}', TypeError),
        ("<li>not JSON</li>", InvalidEventData),
        ("", InvalidEventData),
        ("NaN", InvalidEventData),
    ],
)
def test_json_encode_false_refuses_what_is_not_json_text_and_stores_nothing(data, error):
    with testing.capture_events() as published, pytest.raises(error, match="json_encode=False|JSON"):
        send_event("chat:test", "message", data, json_encode=False)
    assert published == []
    assert not Event.objects.exists()


@pytest.mark.parametrize("skip_user_ids", [["7"], ("7", "8"), {"7"}])
def test_skip_user_ids_is_refused_and_nothing_is_stored(skip_user_ids):
    with testing.capture_events() as published, pytest.raises(UnsupportedOption, match="skip_user_ids"):
        send_event("chat:test", "message", {"text": "hi"}, skip_user_ids=skip_user_ids)
    assert issubclass(UnsupportedOption, ValueError)  # as the docs say: except ValueError catches it
    assert published == []
    assert not Event.objects.exists()


@pytest.mark.parametrize("skip_user_ids", [None, [], ()])
def test_no_users_to_skip_publishes(skip_user_ids):
    with testing.capture_events() as published:
        send_event("chat:test", "message", 1, skip_user_ids=skip_user_ids)
    assert published.data() == [1]


@pytest.mark.parametrize("async_publish", [True, False])
def test_async_publish_either_way_stores_in_the_callers_transaction_before_returning(async_publish):
    with pytest.raises(RuntimeError), transaction.atomic():
        stored = send_event("chat:test", "message", "rolled back", async_publish=async_publish)
        assert Event.objects.filter(pk=stored.pk).exists()
        raise RuntimeError
    assert not Event.objects.exists()
    stored = send_event("chat:test", "message", "kept", async_publish=async_publish)
    assert Event.objects.get(pk=stored.pk).data == "kept"


@pytest.mark.parametrize(
    ("channel", "event_type", "error"),
    [
        ("room 1", "message", InvalidChannelName),
        ("chat:test", "stream-error\ndata: x", InvalidEventName),
        ("chat:test", "reset", InvalidEventName),
        ("chat:test", "error", InvalidEventName),
    ],
)
def test_names_follow_django_realtimes_rules(channel, event_type, error):
    with pytest.raises(error):
        send_event(channel, event_type, {"text": "hi"})
    assert not Event.objects.exists()
