"""The publish endpoint (django_realtime.sse.publish): a WebSocket publish message over an HTTP POST."""

import json

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client, override_settings

from django_realtime.models import Event

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls("tests.urls")]

URL = "/events/publish/"
JSON = "application/json"


@pytest.fixture(autouse=True)
def _pairs_and_chat():
    realtime = {**settings.REALTIME, "PUBLISH_CHANNELS": ["chat:*"], "PAIR_CHANNELS": ["call"]}
    with override_settings(REALTIME=realtime):
        yield


def post(client, message, **extra):
    body = message if isinstance(message, (str, bytes)) else json.dumps(message)
    return client.post(URL, body, content_type=extra.pop("content_type", "application/json"), **extra)


def logged_in(username):
    user = get_user_model().objects.create_user(username)
    client = Client()
    client.force_login(user)
    return user, client


def test_an_allowed_publish_is_stored_and_acknowledged_as_over_a_websocket():
    response = post(Client(), {"type": "publish", "channel": "chat:a", "event": "said", "data": {"t": 1}, "ref": 4})
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    reply = response.json()
    event = Event.objects.get()
    assert reply == {"type": "ack", "channel": "chat:a", "id": str(event.id), "ref": 4}
    assert (event.channel, event.event, json.loads(event.data_json)) == ("chat:a", "said", {"t": 1})


def test_a_pair_channel_takes_publishes_from_its_two_users_only():
    ann, ann_client = logged_in("ann")
    bob, bob_client = logged_in("bob")
    _eve, eve_client = logged_in("eve")
    channel = f"call:{ann.pk}-{bob.pk}"
    assert post(ann_client, {"type": "publish", "channel": channel, "data": 1}).status_code == 200
    assert post(bob_client, {"type": "publish", "channel": channel, "data": 2}).status_code == 200
    for client in (eve_client, Client()):
        response = post(client, {"type": "publish", "channel": channel, "data": "forged offer", "ref": "x"})
        assert response.status_code == 403
        assert response.json() == {
            "type": "error",
            "code": "forbidden",
            "message": f"not allowed to publish to {channel}",
            "ref": "x",
        }
    assert [json.loads(e.data_json) for e in Event.objects.order_by("id")] == [1, 2]


def test_a_post_without_the_csrf_token_is_refused():
    client = Client(enforce_csrf_checks=True)
    response = post(client, {"type": "publish", "channel": "chat:a", "data": 1})
    assert response.status_code == 403
    assert not Event.objects.exists()
    client.get("/room/lobby/")  # sets the CSRF cookie, as the page does
    token = client.cookies["csrftoken"].value
    assert post(client, {"type": "publish", "channel": "chat:a", "data": 1}, HTTP_X_CSRFTOKEN=token).status_code == 200


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        ("{nope", "application/json", 400, "bad_json"),
        (b"\xff\xfe", "application/json", 400, "bad_json"),
        ('{"type": "subscribe", "channel": "chat:a"}', "application/json", 400, "bad_message"),
        ('{"type": "publish", "channel": "chat:a"}', "application/json", 400, "bad_message"),
        ('{"type": "publish", "channel": "chat a", "data": 1}', "application/json", 400, "invalid_channel"),
        ('{"type": "publish", "channel": "chat:a", "event": "reset", "data": 1}', JSON, 400, "bad_message"),
        ("type=publish&channel=chat:a&data=1", "application/x-www-form-urlencoded", 400, "bad_message"),
        ('{"type": "publish", "channel": "news", "data": 1}', "application/json", 403, "forbidden"),
    ],
)
def test_a_bad_or_refused_message_is_an_error_and_stores_nothing(body, content_type, status, code):
    response = post(Client(), body, content_type=content_type)
    assert (response.status_code, response.json()["code"]) == (status, code)
    assert not Event.objects.exists()


def test_a_message_over_the_websocket_limit_is_too_large_and_not_read():
    realtime = {**settings.REALTIME, "PUBLISH_CHANNELS": ["chat:*"], "WEBSOCKET_MAX_MESSAGE_SIZE": 100}
    with override_settings(REALTIME=realtime):
        big = {"type": "publish", "channel": "chat:a", "data": "x" * 100}
        response = post(Client(), big)
        assert (response.status_code, response.json()["code"]) == (413, "too_large")
        assert post(Client(), {"type": "publish", "channel": "chat:a", "data": "x"}).status_code == 200
    assert Event.objects.count() == 1


def test_data_over_max_data_size_is_too_large():
    with override_settings(REALTIME={**settings.REALTIME, "PUBLISH_CHANNELS": ["chat:*"], "MAX_DATA_SIZE": 10}):
        response = post(Client(), {"type": "publish", "channel": "chat:a", "data": "x" * 20})
    assert (response.status_code, response.json()["code"]) == (413, "too_large")
    assert not Event.objects.exists()


def test_only_post_is_allowed():
    assert Client().get(URL).status_code == 405


def test_a_client_publishing_past_the_rate_is_refused_with_429_and_nothing_is_stored_and_others_go_on():
    realtime = {**settings.REALTIME, "PUBLISH_CHANNELS": ["chat:*"], "WEBSOCKET_PUBLISH_BURST": 3}
    with override_settings(REALTIME=realtime):
        _ann, ann_client = logged_in("ann")
        message = {"type": "publish", "channel": "chat:a", "data": "x", "ref": 1}
        assert [post(ann_client, message).status_code for _ in range(3)] == [200, 200, 200]
        refused = post(ann_client, message)
        assert refused.status_code == 429
        assert refused["Retry-After"] == "1"
        assert refused.json() == {
            "type": "error",
            "code": "rate_limited",
            "message": "more than 10 publishes per second; wait and retry",
            "ref": 1,
        }
        assert Event.objects.count() == 3
        # Another user, and an anonymous client, have buckets of their own.
        _bob, bob_client = logged_in("bob")
        assert post(bob_client, message).status_code == 200
        assert post(Client(), message).status_code == 200


def test_without_a_rate_a_client_publishes_as_often_as_it_likes():
    realtime = {**settings.REALTIME, "PUBLISH_CHANNELS": ["chat:*"], "WEBSOCKET_PUBLISH_RATE": None}
    with override_settings(REALTIME=realtime):
        _ann, ann_client = logged_in("ann")
        message = {"type": "publish", "channel": "chat:a", "data": "x"}
        assert {post(ann_client, message).status_code for _ in range(25)} == {200}
