"""The authorization hook of docs/security.md, checked over SSE and WebSockets.

``authorize`` below is the documented example, verbatim.  The settings point
``AUTHORIZE`` at it by its dotted path, as a project would.
"""

import asyncio
import json
from contextlib import asynccontextmanager

import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.test import override_settings

from django_realtime import publish
from django_realtime.auth import SUBSCRIBE
from django_realtime.auth import authorize as default_authorize
from django_realtime.db import run_released
from django_realtime.websocket.routing import websocket_urlpatterns

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls("tests.urls")]

TIMEOUT = 5


# The example of docs/security.md ---------------------------------------------


def authorize(user, channel, action):
    """Let users read their own channel, staff the staff channels, and anyone what the settings allow."""
    if channel.startswith("user:"):
        # Exactly "user:<pk>": a prefix test would let user 1 read "user:12".
        return action == SUBSCRIBE and user.is_authenticated and channel == f"user:{user.pk}"
    if channel.startswith("staff:"):
        return action == SUBSCRIBE and user.is_active and user.is_staff
    # Everything else: PUBLIC_CHANNELS for subscribing, PUBLISH_CHANNELS for publishing.
    return default_authorize(user, channel, action)


# -----------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _the_documented_settings():
    with override_settings(
        REALTIME={
            **settings.REALTIME,
            "AUTHORIZE": "tests.test_security_examples.authorize",
            "PUBLIC_CHANNELS": ["news", "chat:*"],
            "PUBLISH_CHANNELS": ["chat:*"],
        }
    ):
        yield


@pytest.fixture
def users():
    User = get_user_model()
    ann = User.objects.create_user("ann")
    bob = User.objects.create_user("bob")
    boss = User.objects.create_user("boss", is_staff=True)
    return ann, bob, boss


def read(response, count):
    """Return the first *count* chunks of an SSE response as one bytes, and close it."""
    iterator = iter(response.streaming_content)
    try:
        return b"".join(next(iterator) for _ in range(count))
    finally:
        response.close()


# SSE ------------------------------------------------------------------------


def test_sse_a_user_reads_their_own_channel_by_replay_and_live(client, users):
    ann, _, _ = users
    old = publish(f"user:{ann.pk}", {"text": "old"})
    client.force_login(ann)
    body = read(client.get(f"/events/?channel=user:{ann.pk}", HTTP_LAST_EVENT_ID=str(old.id - 1)), 2)
    assert f'id: {old.id}\nevent: message\ndata: {{"text":"old"}}\n\n'.encode() in body

    response = client.get(f"/events/?channel=user:{ann.pk}")
    assert response.status_code == 200
    new = publish(f"user:{ann.pk}", {"text": "new"})
    assert f"id: {new.id}\n".encode() in read(response, 2)


def test_sse_another_users_channel_is_denied_live_and_by_replay(client, users):
    ann, bob, _ = users
    secret = publish(f"user:{bob.pk}", {"text": "bob's secret"})
    client.force_login(ann)
    for response in (
        client.get(f"/events/?channel=user:{bob.pk}"),
        client.get(f"/events/?channel=user:{bob.pk}", HTTP_LAST_EVENT_ID=str(secret.id - 1)),
        client.get(f"/events/?channel=user:{bob.pk}&lastEventId=0"),
        # One denied channel among allowed ones denies the whole request.
        client.get(f"/events/?channel=user:{ann.pk}&channel=news&channel=user:{bob.pk}", HTTP_LAST_EVENT_ID="0"),
    ):
        assert response.status_code == 403
        assert response.content == f"not allowed to subscribe to user:{bob.pk}\n".encode()


def test_sse_a_visitor_gets_public_channels_only(client, users):
    ann, _, _ = users
    news = publish("news", "hello")
    body = read(client.get("/events/?channel=news&channel=chat:lobby", HTTP_LAST_EVENT_ID=str(news.id - 1)), 2)
    assert f"id: {news.id}\n".encode() in body
    assert client.get(f"/events/?channel=user:{ann.pk}").status_code == 403
    assert client.get("/events/?channel=user:None").status_code == 403  # AnonymousUser.pk is None
    assert client.get("/events/?channel=secret").status_code == 403  # in no PUBLIC_CHANNELS pattern


def test_sse_staff_channels_are_denied_to_non_staff(client, users):
    ann, _, boss = users
    alert = publish("staff:alerts", "disk full")
    client.force_login(ann)
    assert client.get("/events/?channel=staff:alerts", HTTP_LAST_EVENT_ID="0").status_code == 403
    client.force_login(boss)
    body = read(client.get("/events/?channel=staff:alerts", HTTP_LAST_EVENT_ID=str(alert.id - 1)), 2)
    assert f"id: {alert.id}\n".encode() in body


# WebSocket ------------------------------------------------------------------


def as_user(user):
    """The endpoint with *user* in the scope, as AuthMiddlewareStack puts it there."""
    application = URLRouter(websocket_urlpatterns)

    async def app(scope, receive, send):
        return await application({**scope, "user": user}, receive, send)

    return app


class Socket:
    def __init__(self, communicator):
        self.communicator = communicator

    async def request(self, message):
        await self.communicator.send_to(text_data=json.dumps(message))
        return await self.receive()

    async def receive(self):
        return json.loads(await self.communicator.receive_from(TIMEOUT))

    async def silent(self):
        """Return whether nothing else was sent: a ping's pong is the very next message."""
        return await self.request({"type": "ping", "ref": "silent?"}) == {"type": "pong", "ref": "silent?"}


@asynccontextmanager
async def socket(user):
    communicator = WebsocketCommunicator(as_user(user), "/ws/")
    accepted, _ = await communicator.connect(TIMEOUT)
    assert accepted
    try:
        yield Socket(communicator)
    finally:
        await communicator.disconnect(timeout=TIMEOUT)


def forbidden(channel, ref, action="subscribe"):
    return {"type": "error", "code": "forbidden", "message": f"not allowed to {action} to {channel}", "ref": ref}


def test_websocket_a_user_reads_their_own_channel_by_replay_and_live(users):
    ann, _, _ = users
    channel = f"user:{ann.pk}"
    old = publish(channel, "old")

    async def main():
        async with socket(ann) as ws:
            reply = await ws.request({"type": "subscribe", "channel": channel, "last_id": str(old.id - 1)})
            assert reply == {"type": "subscribed", "channel": channel, "last_id": str(old.id - 1)}
            assert (await ws.receive())["id"] == str(old.id)
            new = await run_released(publish, channel, "new")
            assert await ws.receive() == {
                "type": "event",
                "channel": channel,
                "id": str(new.id),
                "event": "message",
                "data": "new",
            }

    asyncio.run(main())


def test_websocket_another_users_channel_is_denied_live_and_by_replay(users):
    ann, bob, _ = users
    channel = f"user:{bob.pk}"
    publish(channel, "bob's secret")

    async def main():
        async with socket(ann) as ws:
            assert await ws.request({"type": "subscribe", "channel": channel, "ref": 1}) == forbidden(channel, 1)
            reply = await ws.request({"type": "subscribe", "channel": channel, "last_id": "0", "ref": 2})
            assert reply == forbidden(channel, 2)
            await run_released(publish, channel, "bob's next secret")
            # Writing to another user's channel is denied too, and nothing was delivered.
            reply = await ws.request({"type": "publish", "channel": channel, "data": "spoof", "ref": 3})
            assert reply == forbidden(channel, 3, "publish")
            assert await ws.silent()

    asyncio.run(main())


def test_websocket_staff_channels_are_denied_to_non_staff(users):
    ann, _, boss = users
    alert = publish("staff:alerts", "disk full")

    async def main():
        async with socket(ann) as ws:
            reply = await ws.request({"type": "subscribe", "channel": "staff:alerts", "last_id": "0", "ref": "s"})
            assert reply == forbidden("staff:alerts", "s")
            assert await ws.silent()
        async with socket(AnonymousUser()) as ws:
            reply = await ws.request({"type": "subscribe", "channel": "staff:alerts", "ref": "a"})
            assert reply == forbidden("staff:alerts", "a")
        async with socket(boss) as ws:
            reply = await ws.request({"type": "subscribe", "channel": "staff:alerts", "last_id": str(alert.id - 1)})
            assert reply["type"] == "subscribed"
            assert (await ws.receive())["data"] == "disk full"

    asyncio.run(main())


def test_websocket_public_channels_follow_the_settings(users):
    async def main():
        async with socket(AnonymousUser()) as ws:
            assert (await ws.request({"type": "subscribe", "channel": "news"}))["type"] == "subscribed"
            assert (await ws.request({"type": "publish", "channel": "news", "data": 1, "ref": 1})) == forbidden(
                "news", 1, "publish"
            )
            assert (await ws.request({"type": "publish", "channel": "chat:lobby", "data": 1}))["type"] == "ack"

    asyncio.run(main())
