"""django_realtime.testing and the event_published signal, as a project's tests would use them."""

import asyncio
import threading
import time

import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import connections, transaction
from django.test import override_settings

from django_realtime import publish, testing
from django_realtime.hub import get_hub
from django_realtime.models import Event
from django_realtime.signals import event_published
from django_realtime.websocket.routing import websocket_urlpatterns

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls("tests.urls")]


def publish_and_close(channel, data):
    """publish() on a thread of its own, which closes its connection: Python 3.13 warns of one left to the GC."""
    try:
        publish(channel, data)
    finally:
        connections.close_all()


@pytest.fixture
def sent():
    received = []

    def receiver(sender, event, using, **kwargs):
        received.append((event.channel, event.data, using))

    event_published.connect(receiver)
    yield received
    event_published.disconnect(receiver)


def test_event_published_is_sent_on_commit_and_never_for_a_rollback(sent):
    with transaction.atomic():
        publish("chat:a", 1)
        assert sent == []
    assert sent == [("chat:a", 1, "default")]
    with pytest.raises(RuntimeError), transaction.atomic():
        publish("chat:a", 2)
        raise RuntimeError
    publish("chat:a", 3)  # autocommit: at once
    assert sent == [("chat:a", 1, "default"), ("chat:a", 3, "default")]


def test_event_published_is_sent_for_rows_written_through_the_orm(sent):
    Event.objects.create(channel="chat:a", event="message", data_json="1")
    Event.objects.bulk_create([Event(channel="chat:b", data_json="2"), Event(channel="chat:b", data_json="3")])
    assert sent == [("chat:a", 1, "default"), ("chat:b", 2, "default"), ("chat:b", 3, "default")]


def test_capture_events_sees_what_is_published_committed_or_not_of_one_channel_if_asked():
    with testing.capture_events() as everything, testing.capture_events("chat:b") as only_b:
        with pytest.raises(RuntimeError), transaction.atomic():
            publish("chat:a", "rolled back")
            raise RuntimeError
        publish("chat:b", {"n": 1}, event="notice")
    publish("chat:b", "after")
    assert everything.data() == ["rolled back", {"n": 1}]
    assert [(e.channel, e.event) for e in only_b] == [("chat:b", "notice")]


def test_read_sse_returns_the_first_events_of_a_live_stream_parsed(client):
    first = publish("chat:a", {"n": 1})
    publish("chat:a", "two\nlines", event="notice")
    response = client.get(f"/events/?channel=chat:a&lastEventId={first.id - 1}")
    events = testing.read_sse(response, 2)
    assert [(e.id, e.event, e.data) for e in events] == [
        (str(first.id), "message", {"n": 1}),
        (str(first.id + 1), "notice", "two\nlines"),
    ]


def test_read_sse_waits_for_a_live_event_published_from_another_thread(client):
    with override_settings(REALTIME={**settings.REALTIME, "BACKEND": "inprocess", "KEEPALIVE": 0.2}):
        response = client.get("/events/?channel=chat:live")
        later = threading.Timer(0.3, publish_and_close, ("chat:live", "live"))
        later.start()
        [event] = testing.read_sse(response, 1, timeout=5)
        later.join()
        assert event.data == "live"


def test_read_sse_gives_up_after_its_timeout_with_what_it_read(client):
    with override_settings(REALTIME={**settings.REALTIME, "BACKEND": "inprocess", "KEEPALIVE": 0.1}):
        response = client.get("/events/?channel=chat:quiet")
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="0 of 1 events"):
            testing.read_sse(response, 1, timeout=0.5)
        assert time.monotonic() - started < 3


def test_read_sse_refuses_a_response_that_is_not_a_stream(client):
    with pytest.raises(TypeError, match="not a streaming response"):
        testing.read_sse(client.get("/events/?channel=bad channel"), 1)


def test_the_sse_parser_follows_the_standard():
    parser = testing.SSEParser()
    events = parser.feed(b"retry: 10\n: comment\nid: 7\r\nevent: x\ndata:a\ndata:  b\n\ndata: c\n")
    assert events == [testing.SSEEvent("7", "x", "a\n b")]
    assert parser.feed("\n") == [testing.SSEEvent("7", "message", "c")]  # the id sticks, as in a browser
    assert parser.feed("id: bad\0id\ndata: d\n\n") == [testing.SSEEvent("7", "message", "d")]


def test_read_websocket_returns_the_first_events_a_communicator_receives():
    async def scenario():
        communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws/")
        assert (await communicator.connect(5))[0]
        await communicator.send_json_to({"type": "subscribe", "channel": "chat:ws"})
        await asyncio.sleep(0.2)
        await asyncio.to_thread(publish_and_close, "chat:ws", {"n": 1})
        try:
            return await testing.read_websocket(communicator, 1, timeout=5)
        finally:
            await communicator.disconnect()

    [message] = asyncio.run(scenario())
    assert (message["type"], message["channel"], message["data"]) == ("event", "chat:ws", {"n": 1})


def test_reset_gives_the_next_stream_a_fresh_hub():
    hub = get_hub()
    testing.reset()
    assert get_hub() is not hub
    assert hub.stopping
