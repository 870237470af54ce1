import asyncio
import datetime
import decimal
import json
import uuid

import pytest
from django.db import transaction
from django.test import override_settings

from django_realtime import apublish, publish
from django_realtime.exceptions import EventTooLarge, InvalidChannelName, InvalidEventData, InvalidEventName
from django_realtime.models import Event
from tests import backends

RECORDING = {"BACKEND": "tests.backends.RecordingBackend"}


@pytest.fixture
def recorded():
    backends.notified.clear()
    with override_settings(REALTIME=RECORDING):
        yield backends.notified


@pytest.mark.django_db
def test_publish_stores_the_event_and_returns_it_with_its_id():
    event = publish("chat:lobby", {"text": "hi"}, event="said")
    stored = Event.objects.get(pk=event.id)
    assert (stored.channel, stored.event, stored.data) == ("chat:lobby", "said", {"text": "hi"})
    assert stored.data_json == '{"text":"hi"}'
    assert stored.created is not None


@pytest.mark.django_db
def test_ids_increase_with_each_publish():
    ids = [publish("c", n).id for n in range(5)]
    assert ids == sorted(ids) and len(set(ids)) == 5


@pytest.mark.django_db
def test_default_event_name_is_message_and_default_data_null():
    event = publish("c")
    assert (event.event, event.data_json) == ("message", "null")


@pytest.mark.django_db
def test_django_types_are_encoded_with_djangojsonencoder():
    when = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    value = {"when": when, "price": decimal.Decimal("1.10"), "uid": uuid.UUID(int=1)}
    assert publish("c", value).data == {
        "when": "2026-01-02T03:04:05Z",
        "price": "1.10",
        "uid": "00000000-0000-0000-0000-000000000001",
    }


@pytest.mark.django_db
def test_non_ascii_is_stored_verbatim():
    assert publish("c", "é😀\u2028").data_json == '"é😀\u2028"'


@pytest.mark.django_db
@pytest.mark.parametrize("data", ["a\ud800b", "\udfff", {"k": ["\ud83d"]}, {"\udc00": 1}])
def test_lone_surrogates_are_refused_and_nothing_is_stored(data):
    # No UTF-8 holds one: a ?data=text stream could not send it (a pair is one character, and fine).
    with pytest.raises(InvalidEventData, match="lone surrogate"):
        publish("c", data)
    assert not Event.objects.exists()
    pair = json.loads('"\\ud83d\\ude00"')  # JSON's escaped pair decodes to one character
    assert json.loads(publish("c", pair).data_json) == "😀"


@pytest.mark.django_db
@pytest.mark.parametrize("data", [float("nan"), float("inf"), {1, 2}, object(), {"k": b"bytes"}])
def test_data_that_is_not_json_is_refused_and_nothing_is_stored(data):
    with pytest.raises(InvalidEventData, match="not JSON-serialisable"):
        publish("c", data)
    assert not Event.objects.exists()


@pytest.mark.django_db
def test_data_over_the_size_limit_is_refused():
    with override_settings(REALTIME={"MAX_DATA_SIZE": 100}):
        publish("c", "x" * 98)
        with pytest.raises(EventTooLarge, match="more than MAX_DATA_SIZE"):
            publish("c", "x" * 99)
        with pytest.raises(EventTooLarge):
            publish("c", "é" * 50)  # 100 bytes of UTF-8 plus the quotes


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("channel", "event", "error"),
    [
        ("chat\nlobby", "message", InvalidChannelName),
        ("chat:lobby", "evil\r\ndata: forged", InvalidEventName),
        ("chat:lobby", "reset", InvalidEventName),
        ("", "message", InvalidChannelName),
    ],
)
def test_bad_names_are_refused_before_anything_is_stored(channel, event, error):
    with pytest.raises(error):
        publish(channel, "x", event=event)
    assert not Event.objects.exists()


@pytest.mark.django_db
def test_subscribers_are_notified_only_after_commit(recorded, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with transaction.atomic():
            event = publish("c", 1)
            assert recorded == []
    assert len(callbacks) == 1
    assert recorded == [("c", event.id)]


@pytest.mark.django_db
def test_a_rolled_back_publish_is_neither_stored_nor_notified(recorded, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(ZeroDivisionError):
            with transaction.atomic():
                publish("c", 1)
                raise ZeroDivisionError
    assert callbacks == [] and recorded == []
    assert not Event.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_apublish_publishes_from_async_code(recorded):
    event = asyncio.run(apublish("c", {"a": 1}, event="x"))
    assert Event.objects.get(pk=event.id).data == {"a": 1}
    assert recorded == [("c", event.id)]


@pytest.mark.django_db
def test_deeply_nested_data_is_refused_with_a_clear_error_and_nothing_is_stored():
    nested = []
    for _ in range(100_000):  # beyond every supported Python's JSON recursion limit (3.13's is far above 3.11's)
        nested = [nested]
    with pytest.raises(InvalidEventData, match="nested too deeply"):
        publish("c", nested)
    assert not Event.objects.exists()


def test_stored_json_is_compact():
    from django_realtime.publishing import encode_data

    assert json.loads(encode_data({"a": [1, 2]})) == {"a": [1, 2]}
    assert encode_data({"a": [1, 2]}) == '{"a":[1,2]}'


# Rows written without publish() ------------------------------------------------

BAD_ROWS = [
    pytest.param({"channel": "c", "event": "x\ndata: injected", "data_json": "1"}, InvalidEventName, id="event-lf"),
    pytest.param({"channel": "c", "event": "reset", "data_json": "1"}, InvalidEventName, id="event-reserved"),
    pytest.param({"channel": "bad channel", "data_json": "1"}, InvalidChannelName, id="channel"),
    pytest.param({"channel": "c", "data_json": '1,"channel":"other"'}, InvalidEventData, id="two-values"),
    pytest.param({"channel": "c", "data_json": "NaN"}, InvalidEventData, id="nan"),
    pytest.param({"channel": "c", "data_json": "{"}, InvalidEventData, id="unclosed"),
    pytest.param({"channel": "c", "data_json": "[" * 100_000 + "]" * 100_000}, InvalidEventData, id="deep"),
    pytest.param({"channel": "c", "data_json": '{"k":"a\\ud800"}'}, InvalidEventData, id="lone-surrogate"),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("fields", "error"), BAD_ROWS)
def test_the_orm_refuses_a_row_that_publish_would_refuse(fields, error):
    with pytest.raises(error):
        Event.objects.create(**fields)
    with pytest.raises(error):
        Event.objects.bulk_create([Event(channel="c", data_json="1"), Event(**fields)])
    assert not Event.objects.exists()


@pytest.mark.django_db
def test_loaddata_refuses_such_a_row_too(tmp_path):
    from django.core.management import call_command

    fixture = tmp_path / "events.json"
    fields = {"channel": "c", "event": "x\ny", "data_json": "1", "created": "2026-01-01T00:00:00Z"}
    fixture.write_text(json.dumps([{"model": "django_realtime.event", "pk": 1, "fields": fields}]))
    with pytest.raises(InvalidEventName):
        call_command("loaddata", str(fixture), verbosity=0)
    assert not Event.objects.exists()


@pytest.mark.django_db
def test_the_orm_stores_a_row_that_publish_would_store():
    stored = Event.objects.create(channel="c", event="said", data_json='{"a": [1, 2.5, "\\u2028"]}')
    assert Event.objects.get(pk=stored.pk).data == {"a": [1, 2.5, "\u2028"]}
