"""The WebSocket consumer under channels.testing.WebsocketCommunicator: every message type and error code."""

import asyncio
import json
from contextlib import asynccontextmanager

import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import OperationalError
from django.test import override_settings

from django_realtime import protocol
from django_realtime.db import run_released
from django_realtime.hub import Hub, get_hub
from django_realtime.models import Event
from django_realtime.publishing import publish
from django_realtime.retention import prune
from django_realtime.websocket.routing import websocket_urlpatterns
from tests.test_hub import feed

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 5


def realtime(**overrides):
    """Override some REALTIME keys, keeping the test settings' others."""
    return override_settings(REALTIME={**settings.REALTIME, **overrides})


def with_user(application, user):
    async def app(scope, receive, send):
        return await application({**scope, "user": user}, receive, send)

    return app


class Client:
    """A WebsocketCommunicator that speaks the protocol's JSON."""

    def __init__(self, communicator):
        self.communicator = communicator

    async def send(self, message):
        await self.communicator.send_to(text_data=message if isinstance(message, str) else json.dumps(message))

    async def receive(self):
        return json.loads(await self.communicator.receive_from(TIMEOUT))

    async def take(self, count):
        return [await self.receive() for _ in range(count)]

    async def request(self, message):
        await self.send(message)
        return await self.receive()

    async def closed_with(self):
        output = await self.communicator.receive_output(TIMEOUT)
        assert output["type"] == "websocket.close", output
        return output.get("code")

    async def silent(self):
        """Return whether nothing is waiting to be received: a ping gets the very next message."""
        return await self.request({"type": "ping", "ref": "silent?"}) == {"type": "pong", "ref": "silent?"}


@asynccontextmanager
async def connected(application=None):
    communicator = WebsocketCommunicator(application or URLRouter(websocket_urlpatterns), "/ws/")
    accepted, _ = await communicator.connect(TIMEOUT)
    assert accepted
    try:
        yield Client(communicator)
    finally:
        await communicator.disconnect(timeout=TIMEOUT)


def run(coroutine):
    return asyncio.run(coroutine)


async def apublish(channel, data=None, **kwargs):
    return await run_released(publish, channel, data, **kwargs)


# ping -------------------------------------------------------------------------


def test_ping_gets_a_pong_with_its_ref():
    async def main():
        async with connected() as client:
            assert await client.request({"type": "ping"}) == {"type": "pong"}
            assert await client.request({"type": "ping", "ref": 7}) == {"type": "pong", "ref": 7}

    run(main())


# subscribe --------------------------------------------------------------------


def test_subscribe_without_last_id_confirms_with_a_cursor_and_delivers_only_later_events():
    async def main():
        old = await apublish("chat:a", "old")
        async with connected() as client:
            reply = await client.request({"type": "subscribe", "channel": "chat:a", "ref": "s"})
            assert reply == {"type": "subscribed", "channel": "chat:a", "last_id": str(old.id), "ref": "s"}
            new = await apublish("chat:a", {"n": 1}, event="said")
            assert await client.receive() == {
                "type": "event",
                "channel": "chat:a",
                "id": str(new.id),
                "event": "said",
                "data": {"n": 1},
            }

    run(main())


def test_subscribe_with_last_id_replays_stored_events_in_order_then_goes_live():
    async def main():
        ids = [(await apublish("chat:r", n)).id for n in range(4)]
        await apublish("chat:other", "not this one")
        async with connected() as client:
            reply = await client.request({"type": "subscribe", "channel": "chat:r", "last_id": str(ids[0])})
            assert reply == {"type": "subscribed", "channel": "chat:r", "last_id": str(ids[0])}
            replayed = await client.take(3)
            assert [(m["id"], m["data"]) for m in replayed] == [(str(i), n) for n, i in enumerate(ids) if n]
            live = await apublish("chat:r", "live")
            assert (await client.receive())["id"] == str(live.id)
            assert await client.silent()

    run(main())


def test_replay_longer_than_the_hubs_buffer_comes_from_the_log_without_gap_or_duplicate():
    async def main():
        ids = [(await apublish("chat:long", n)).id for n in range(30)]
        async with connected() as client:
            await client.request({"type": "subscribe", "channel": "chat:long", "last_id": "0"})
            assert [int(m["id"]) for m in await client.take(30)] == ids
            assert await client.silent()

    with realtime(BUFFER_SIZE=4):
        get_hub().ensure_ready()
        run(main())


def test_several_subscriptions_share_one_connection():
    async def main():
        async with connected() as client:
            for channel in ["chat:x", "chat:y"]:
                assert (await client.request({"type": "subscribe", "channel": channel}))["type"] == "subscribed"
            x = await apublish("chat:x", "x")
            y = await apublish("chat:y", "y")
            got = await client.take(2)
            assert sorted((m["channel"], m["id"]) for m in got) == [("chat:x", str(x.id)), ("chat:y", str(y.id))]

    run(main())


def test_a_connection_waits_as_one_stream_of_all_its_channels_and_is_woken_once_per_batch():
    async def main():
        hub = get_hub()
        async with connected() as client:
            for channel in ["chat:x", "chat:y"]:
                await client.request({"type": "subscribe", "channel": channel})
            assert await client.silent()
            group = hub._groups[frozenset({"chat:x", "chat:y"})]
            assert (len(hub._groups), group.count) == (1, 1), "one follow loop per connection, not per subscription"
            woken = group.wakeups
            start = hub.horizon
            await asyncio.to_thread(
                feed, hub, (start + 1, "chat:x", "message", "1"), (start + 2, "chat:y", "message", "2")
            )
            assert [m["id"] for m in await client.take(2)] == [str(start + 1), str(start + 2)]
            assert group.wakeups == woken + 1
            await client.request({"type": "unsubscribe", "channel": "chat:y"})
            assert await client.silent()
            assert list(hub._groups) == [frozenset({"chat:x"})]
        for _ in range(100):
            if not hub._groups:
                break
            await asyncio.sleep(0.01)
        assert hub._groups == {}, "a closed connection leaves the hub"

    with realtime(KEEPALIVE=3600):
        run(main())


def test_a_last_id_from_the_future_gets_a_reset_then_live_events():
    async def main():
        await apublish("chat:f", 1)
        async with connected() as client:
            await client.request({"type": "subscribe", "channel": "chat:f", "last_id": "999999999"})
            reset = await client.receive()
            horizon = str(get_hub().horizon)
            assert reset == {
                "type": "reset",
                "channel": "chat:f",
                "reason": "unknown",
                "last_id": "999999999",
                "resume_id": horizon,
            }
            live = await apublish("chat:f", 2)
            assert (await client.receive())["id"] == str(live.id)

    run(main())


def test_a_last_id_older_than_the_retained_history_gets_a_reset_then_what_is_left():
    ids = [publish("chat:e", n).id for n in range(5)]
    prune(older_than=None, grace=0, keep=2)

    async def main():
        async with connected() as client:
            await client.request({"type": "subscribe", "channel": "chat:e", "last_id": str(ids[0])})
            assert await client.receive() == {
                "type": "reset",
                "channel": "chat:e",
                "reason": "expired",
                "last_id": str(ids[0]),
                "resume_id": str(ids[0]),
            }
            assert [int(m["id"]) for m in await client.take(2)] == ids[3:]
            live = await apublish("chat:e", "after")
            assert (await client.receive())["id"] == str(live.id)

    run(main())


def test_subscribing_twice_to_a_channel_is_already_subscribed():
    async def main():
        async with connected() as client:
            await client.request({"type": "subscribe", "channel": "chat:a"})
            reply = await client.request({"type": "subscribe", "channel": "chat:a", "last_id": "0", "ref": 2})
            assert reply == {
                "type": "error",
                "code": "already_subscribed",
                "message": "already subscribed to chat:a",
                "ref": 2,
            }

    run(main())


def test_subscriptions_beyond_max_channels_are_too_many_channels():
    async def main():
        async with connected() as client:
            for name in ["chat:1", "chat:2"]:
                await client.request({"type": "subscribe", "channel": name})
            reply = await client.request({"type": "subscribe", "channel": "chat:3"})
            assert reply["code"] == "too_many_channels"
            assert reply["message"] == "at most 2 subscriptions per connection"
            await client.request({"type": "unsubscribe", "channel": "chat:1"})
            assert (await client.request({"type": "subscribe", "channel": "chat:3"}))["type"] == "subscribed"

    with realtime(MAX_CHANNELS=2):
        run(main())


def test_a_malformed_last_id_is_a_bad_message():
    async def main():
        async with connected() as client:
            for bad in ["abc", "-1", "1.5", "99999999999999999999"]:
                reply = await client.request({"type": "subscribe", "channel": "chat:a", "last_id": bad})
                assert reply["code"] == "bad_message"
                assert reply["message"].startswith("last_id: event id must be a decimal number")

    run(main())


@pytest.mark.parametrize("kind", ["subscribe", "unsubscribe", "publish"])
def test_a_bad_channel_name_is_invalid_channel(kind):
    async def main():
        async with connected() as client:
            for bad, words in [("", "must not be empty"), ("a b", "may contain only"), ("a\nb", "CR, LF or NUL")]:
                reply = await client.request({"type": kind, "channel": bad, "data": 1, "ref": "r"})
                assert (reply["type"], reply["code"], reply["ref"]) == ("error", "invalid_channel", "r")
                assert words in reply["message"]

    run(main())


def test_subscribing_to_a_channel_the_hook_denies_is_forbidden():
    async def main():
        async with connected() as client:
            reply = await client.request({"type": "subscribe", "channel": "secret", "ref": 1})
            assert reply == {
                "type": "error",
                "code": "forbidden",
                "message": "not allowed to subscribe to secret",  # as over SSE, and as a publish is refused
                "ref": 1,
            }
            await apublish("secret", "hidden")
            assert await client.silent()

    run(main())


def test_the_hook_is_asked_with_the_connections_user_the_channel_and_the_action():
    calls = []

    def hook(user, channel, action):
        calls.append((user, channel, action))
        return channel.startswith("mine")

    async def main():
        async with connected(with_user(URLRouter(websocket_urlpatterns), "alice")) as client:
            await client.request({"type": "subscribe", "channel": "mine:a"})
            await client.request({"type": "subscribe", "channel": "theirs"})
            await client.request({"type": "publish", "channel": "mine:b", "data": 1})
            await client.request({"type": "publish", "channel": "theirs", "data": 1})

    with realtime(AUTHORIZE=hook):
        run(main())
    assert calls == [
        ("alice", "mine:a", "subscribe"),
        ("alice", "theirs", "subscribe"),
        ("alice", "mine:b", "publish"),
        ("alice", "theirs", "publish"),
    ]


def test_without_auth_middleware_the_hook_is_asked_as_anonymous():
    users = []

    def hook(user, channel, action):
        users.append(user.is_authenticated)
        return True

    async def main():
        async with connected() as client:
            await client.request({"type": "subscribe", "channel": "anything"})

    with realtime(AUTHORIZE=hook):
        run(main())
    assert users == [False]


# unsubscribe ------------------------------------------------------------------


def test_unsubscribe_confirms_and_no_event_of_the_channel_follows():
    async def main():
        async with connected() as client:
            await client.request({"type": "subscribe", "channel": "chat:u"})
            await client.request({"type": "subscribe", "channel": "chat:v"})
            reply = await client.request({"type": "unsubscribe", "channel": "chat:u", "ref": "x"})
            assert reply == {"type": "unsubscribed", "channel": "chat:u", "ref": "x"}
            await apublish("chat:u", "gone")
            v = await apublish("chat:v", "here")
            assert (await client.receive())["id"] == str(v.id)
            assert await client.silent()

    run(main())


def test_an_unsubscribe_while_a_batch_is_sent_stops_the_rest_of_the_batch(monkeypatch):
    """The events of a batch not yet sent when the client unsubscribes never follow its unsubscribed."""
    from django_realtime.websocket import consumer

    unwrap_send, unsubscribe = consumer.unwrap_send, consumer.RealtimeConsumer.unsubscribe
    unsubscribed = asyncio.Event()

    def held_after_the_first_event(send):
        send = unwrap_send(send)
        first = True

        async def held_send(message):
            nonlocal first
            await send(message)
            if first and json.loads(message["text"])["type"] == "event":
                first = False
                await unsubscribed.wait()  # the rest of the batch waits for the unsubscribe

        return held_send

    async def unsubscribe_then_release(self, request):
        reply = await unsubscribe(self, request)
        unsubscribed.set()
        return reply

    monkeypatch.setattr(consumer, "unwrap_send", held_after_the_first_event)
    monkeypatch.setattr(consumer.RealtimeConsumer, "unsubscribe", unsubscribe_then_release)

    async def main():
        start = await apublish("chat:b", "before")
        ids = [(await apublish("chat:b", n)).id for n in range(5)]
        async with connected() as client:
            await client.request({"type": "subscribe", "channel": "chat:b", "last_id": str(start.id)})
            assert (await client.receive())["id"] == str(ids[0])  # one batch: the replay of all five
            reply = await client.request({"type": "unsubscribe", "channel": "chat:b", "ref": "u"})
            assert reply == {"type": "unsubscribed", "channel": "chat:b", "ref": "u"}
            assert await client.silent(), "events of chat:b after its unsubscribed"

    run(main())


def test_an_unsubscribe_while_events_wait_for_room_drops_those_not_yet_queued(monkeypatch):
    """Under daphne (the hub's wake-up sends): events not yet queued at the unsubscribe never follow its reply."""
    from django_realtime.websocket import consumer
    from django_realtime.websocket.outbox import Outbox

    writable = asyncio.Event()  # daphne's write buffer has room
    writable.set()
    waiting, unsubscribed = asyncio.Event(), asyncio.Event()
    put, unsubscribe = Outbox.put, consumer.RealtimeConsumer.unsubscribe

    async def put_waiting(self, text):
        waiting.set()
        await put(self, text)

    async def unsubscribe_noted(self, request):
        reply = await unsubscribe(self, request)
        unsubscribed.set()
        return reply

    monkeypatch.setattr(consumer, "adapt_connection", lambda send: writable)
    monkeypatch.setattr(Outbox, "put", put_waiting)
    monkeypatch.setattr(consumer.RealtimeConsumer, "unsubscribe", unsubscribe_noted)

    async def main():
        hub = get_hub()
        async with connected() as client:
            await client.request({"type": "subscribe", "channel": "chat:d"})
            writable.clear()  # the client stops reading
            start = hub.horizon
            await asyncio.to_thread(feed, hub, *[(start + n, "chat:d", "message", str(n)) for n in range(1, 6)])
            await waiting.wait()  # one event queued, the next waits for room
            await client.send({"type": "unsubscribe", "channel": "chat:d", "ref": "u"})
            await unsubscribed.wait()
            writable.set()
            sent = []  # those queued, or waiting for room, before the unsubscribe
            while (message := await client.receive())["type"] == "event":
                sent.append(int(message["id"]) - start)
            assert message == {"type": "unsubscribed", "channel": "chat:d", "ref": "u"}
            assert sent == list(range(1, len(sent) + 1)) and len(sent) < 5
            assert await client.silent(), "events of chat:d after its unsubscribed"

    with realtime(WEBSOCKET_SEND_BUFFER=1):
        run(main())


def test_unsubscribing_from_a_channel_not_subscribed_is_not_subscribed():
    async def main():
        async with connected() as client:
            reply = await client.request({"type": "unsubscribe", "channel": "chat:n", "ref": 5})
            assert reply == {"type": "error", "code": "not_subscribed", "message": "not subscribed to chat:n", "ref": 5}

    run(main())


# publish ----------------------------------------------------------------------


def test_publish_stores_the_event_acks_its_id_and_reaches_subscribers():
    async def main():
        async with connected() as listener, connected() as sender:
            await listener.request({"type": "subscribe", "channel": "chat:p"})
            ack = await sender.request(
                {"type": "publish", "channel": "chat:p", "event": "said", "data": {"t": "hi"}, "ref": "p1"}
            )
            assert ack["type"] == "ack" and ack["ref"] == "p1" and ack["channel"] == "chat:p"
            stored = await run_released(Event.objects.get, id=int(ack["id"]))
            assert (stored.channel, stored.event, stored.data) == ("chat:p", "said", {"t": "hi"})
            assert await listener.receive() == {
                "type": "event",
                "channel": "chat:p",
                "id": ack["id"],
                "event": "said",
                "data": {"t": "hi"},
            }

    run(main())


def test_publish_without_event_name_sends_message_and_null_data_is_data():
    async def main():
        async with connected() as client:
            await client.request({"type": "subscribe", "channel": "chat:d"})
            await client.send({"type": "publish", "channel": "chat:d", "data": None})
            got = {m["type"]: m for m in await client.take(2)}
            assert got["event"]["event"] == "message" and got["event"]["data"] is None
            assert got["ack"]["id"] == got["event"]["id"] and "ref" not in got["ack"]

    run(main())


def test_publishing_where_the_hook_denies_is_forbidden_and_stores_nothing():
    async def main():
        async with connected() as client:
            reply = await client.request({"type": "publish", "channel": "demo:x", "data": 1, "ref": 9})
            assert reply == {
                "type": "error",
                "code": "forbidden",
                "message": "not allowed to publish to demo:x",
                "ref": 9,
            }
            assert await client.silent()

    run(main())
    assert not Event.objects.filter(channel="demo:x").exists()


@pytest.mark.parametrize(("event", "words"), [("bad name", "may contain only"), ("reset", "reserved"), ("", "empty")])
def test_a_bad_event_name_is_a_bad_message(event, words):
    async def main():
        async with connected() as client:
            reply = await client.request({"type": "publish", "channel": "chat:a", "event": event, "data": 1})
            assert reply["code"] == "bad_message" and words in reply["message"]

    run(main())


def test_data_over_max_data_size_is_too_large_and_nothing_is_stored():
    async def main():
        async with connected() as client:
            reply = await client.request({"type": "publish", "channel": "chat:big", "data": "x" * 50, "ref": 1})
            assert (reply["code"], reply["ref"]) == ("too_large", 1)
            assert "MAX_DATA_SIZE" in reply["message"]

    with realtime(MAX_DATA_SIZE=20):
        run(main())
    assert not Event.objects.filter(channel="chat:big").exists()


def test_publishes_beyond_the_rate_are_rate_limited_and_not_stored():
    async def main():
        async with connected() as client:
            replies = [await client.request({"type": "publish", "channel": "chat:rl", "data": n}) for n in range(4)]
            assert [r["type"] for r in replies] == ["ack", "ack", "error", "error"]
            assert replies[2]["code"] == "rate_limited"
            assert replies[2]["message"] == "more than 0.01 publishes per second; wait and retry"
            assert await client.silent()

    with realtime(WEBSOCKET_PUBLISH_RATE=0.01, WEBSOCKET_PUBLISH_BURST=2):
        run(main())
    assert Event.objects.filter(channel="chat:rl").count() == 2


def test_no_rate_limit_when_the_rate_is_none():
    async def main():
        async with connected() as client:
            replies = [await client.request({"type": "publish", "channel": "chat:nl", "data": n}) for n in range(5)]
            assert {r["type"] for r in replies} == {"ack"}

    with realtime(WEBSOCKET_PUBLISH_RATE=None, WEBSOCKET_PUBLISH_BURST=1):
        run(main())


def test_a_database_failure_while_publishing_is_unavailable_and_the_connection_stays(monkeypatch, caplog):
    def failing(*args, **kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr("django_realtime.client_publish.publish", failing)

    async def main():
        async with connected() as client:
            reply = await client.request({"type": "publish", "channel": "chat:a", "data": 1, "ref": 3})
            assert (reply["code"], reply["ref"]) == ("unavailable", 3)
            assert await client.silent()

    run(main())
    assert "could not store an event" in caplog.text


# Malformed messages -----------------------------------------------------------


def test_invalid_json_is_bad_json_and_the_connection_stays_usable():
    async def main():
        async with connected() as client:
            reply = await client.request("{not json")
            assert reply["type"] == "error" and reply["code"] == "bad_json" and "ref" not in reply
            assert await client.silent()

    run(main())


@pytest.mark.parametrize(
    ("message", "words"),
    [
        ("[1, 2]", "must be a JSON object"),
        ('{"type": "shout"}', "unknown type"),
        ('{"channel": "chat:a"}', "needs a type field"),
        ('{"type": "subscribe", "channel": 5}', "needs a channel field"),
        ('{"type": "ping", "ref": [1]}', "ref must be"),
    ],
)
def test_a_message_of_the_wrong_shape_is_a_bad_message(message, words):
    async def main():
        async with connected() as client:
            reply = await client.request(message)
            assert reply["code"] == "bad_message" and words in reply["message"]
            assert await client.silent()

    run(main())


def test_a_binary_frame_is_a_bad_message_not_a_crash():
    async def main():
        async with connected() as client:
            await client.communicator.send_to(bytes_data=b'{"type": "ping"}')
            reply = await client.receive()
            assert reply == {
                "type": "error",
                "code": "bad_message",
                "message": "binary frames are not part of the protocol",
            }
            assert await client.silent()

    run(main())


def test_a_message_over_the_size_limit_is_too_large_and_the_connection_stays_usable():
    async def main():
        async with connected() as client:
            reply = await client.request({"type": "publish", "channel": "chat:a", "data": "x" * 300, "ref": 1})
            assert reply == {"type": "error", "code": "too_large", "message": "message is larger than 256 bytes"}
            assert await client.silent()

    with realtime(WEBSOCKET_MAX_MESSAGE_SIZE=256):
        run(main())


# Closing ----------------------------------------------------------------------


def test_a_client_that_does_not_read_is_closed_as_slow_consumer_and_resumes_without_loss(monkeypatch):
    monkeypatch.setattr(
        "django_realtime.websocket.consumer.adapt_connection", lambda send: asyncio.Event()
    )  # never writable

    async def main():
        start = await apublish("chat:slow", "before")
        communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws/")
        await communicator.connect(TIMEOUT)
        slow = Client(communicator)
        await slow.send({"type": "subscribe", "channel": "chat:slow", "last_id": str(start.id)})
        ids = [(await apublish("chat:slow", "y" * 40)).id for _ in range(6)]
        assert await slow.closed_with() == protocol.CLOSE_SLOW_CONSUMER
        await communicator.disconnect()
        monkeypatch.undo()
        async with connected() as client:
            await client.request({"type": "subscribe", "channel": "chat:slow", "last_id": str(start.id)})
            assert [int(m["id"]) for m in await client.take(6)] == ids

    with realtime(WEBSOCKET_SEND_BUFFER=100, WEBSOCKET_SEND_TIMEOUT=0.2):
        run(main())


def test_a_connection_is_closed_with_4001_when_its_lifetime_ends():
    async def main():
        communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws/")
        await communicator.connect(TIMEOUT)
        assert await Client(communicator).closed_with() == protocol.CLOSE_LIFETIME
        await communicator.disconnect()

    with realtime(WEBSOCKET_MAX_LIFETIME=0.1):
        run(main())


def test_a_log_that_cannot_be_read_closes_the_connection_with_4002(monkeypatch):
    monkeypatch.setattr(Hub, "ensure_ready", lambda self, timeout=10.0: False)

    async def main():
        communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws/")
        accepted, _ = await communicator.connect(TIMEOUT)
        assert accepted
        assert await Client(communicator).closed_with() == protocol.CLOSE_UNAVAILABLE
        await communicator.disconnect()

    run(main())


def test_past_max_streams_a_connection_is_closed_with_4002_until_one_leaves():
    async def opened():
        communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws/")
        accepted, _ = await communicator.connect(TIMEOUT)
        assert accepted
        return communicator, Client(communicator)

    async def main():
        first, first_client = await opened()
        second, second_client = await opened()
        refused, refused_client = await opened()
        assert await refused_client.closed_with() == protocol.CLOSE_UNAVAILABLE
        await refused.disconnect()
        # The two seated ones are served; the refused one gave back no seat it never had.
        assert await first_client.request({"type": "ping"}) == {"type": "pong"}
        assert await second_client.request({"type": "ping"}) == {"type": "pong"}
        assert get_hub().seats.taken == 2
        await first.disconnect()
        third, third_client = await opened()
        assert await third_client.request({"type": "ping"}) == {"type": "pong"}
        await second.disconnect()
        await third.disconnect()
        assert get_hub().seats.taken == 0

    with realtime(MAX_STREAMS=2):
        run(main())


def test_an_authorize_hook_that_raises_fails_the_request_not_the_connection(caplog):
    async def main():
        async with connected() as client:
            reply = await client.request({"type": "subscribe", "channel": "chat:a", "ref": 1})
            assert (reply["type"], reply["code"], reply["ref"]) == ("error", "unavailable", 1)
            assert await client.request({"type": "ping"}) == {"type": "pong"}
            assert get_hub().seats.taken == 1

    with realtime(AUTHORIZE="tests.test_consumer.raising_hook"):
        run(main())
    assert get_hub().seats.taken == 0
    assert "AUTHORIZE hook raised for subscribe chat:a" in caplog.text


def raising_hook(user, channel, action):
    raise OperationalError("the database behind the hook is down")


def test_a_connection_that_crashes_gives_its_seat_back(monkeypatch):
    async def crash(self, request):
        raise RuntimeError("a bug")

    monkeypatch.setattr("django_realtime.websocket.consumer.RealtimeConsumer.subscribe", crash)

    async def main():
        communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws/")
        accepted, _ = await communicator.connect(TIMEOUT)
        assert accepted
        assert get_hub().seats.taken == 1
        await Client(communicator).send({"type": "subscribe", "channel": "chat:a"})
        with pytest.raises(RuntimeError, match="a bug"):
            await communicator.receive_output(TIMEOUT)
        assert get_hub().seats.taken == 0

    with realtime(MAX_STREAMS=1):
        run(main())


def test_a_subscription_that_fails_closes_the_connection_with_4002(monkeypatch, caplog):
    def failing(*args, **kwargs):
        raise OperationalError("no such table")

    monkeypatch.setattr("django_realtime.streams.Follower.step", failing)

    async def main():
        communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws/")
        await communicator.connect(TIMEOUT)
        client = Client(communicator)
        assert (await client.request({"type": "subscribe", "channel": "chat:a"}))["type"] == "subscribed"
        assert await client.closed_with() == protocol.CLOSE_UNAVAILABLE
        await communicator.disconnect()

    run(main())
    assert "subscription to chat:a failed" in caplog.text


# The demo's ASGI application --------------------------------------------------


@pytest.mark.parametrize(("origin", "accepted"), [(b"http://testserver", True), (b"http://evil.example", False)])
def test_the_demo_serves_ws_behind_the_origin_check(origin, accepted):
    from testproject.asgi import application

    async def main():
        communicator = WebsocketCommunicator(
            application, "/ws/", headers=[(b"origin", origin), (b"host", b"testserver")]
        )
        connected_, _ = await communicator.connect(TIMEOUT)
        assert connected_ is accepted
        if accepted:
            client = Client(communicator)
            assert await client.request({"type": "ping"}) == {"type": "pong"}
        await communicator.disconnect()

    run(main())


def test_every_request_of_the_protocol_has_a_handler_that_the_consumer_defines():
    from typing import get_args

    from django_realtime.websocket.consumer import HANDLERS, RealtimeConsumer

    assert set(HANDLERS) == set(get_args(protocol.Request))
    assert all(callable(getattr(RealtimeConsumer, name, None)) for name in HANDLERS.values())
