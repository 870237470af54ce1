"""Presence over the WebSocket protocol (join, leave, presence) and over SSE (?presence=, the presence/ endpoint)."""

import json

import pytest
from django.conf import settings
from django.db import OperationalError
from django.test import override_settings

from django_realtime import publish
from django_realtime.db import run_released
from django_realtime.hub import get_hub
from django_realtime.models import Event, PresenceMember
from django_realtime.presence import JOIN, LEAVE, Registry
from tests.test_consumer import connected, run
from tests.test_views import _events, first_chunks

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls("tests.urls")]


@pytest.fixture(autouse=True)
def _presence_on_chat():
    with override_settings(REALTIME={**settings.REALTIME, "PRESENCE_CHANNELS": ["chat:*"]}):
        yield


# WebSocket --------------------------------------------------------------------


def test_a_websocket_joins_sees_itself_in_the_snapshot_and_leaves():
    async def main():
        async with connected() as client:
            await client.request({"type": "subscribe", "channel": "chat:a"})
            await client.send({"type": "join", "channel": "chat:a", "name": "ada", "info": {"c": 1}, "ref": 1})
            # The reply and the connection's own join event come in either order.
            messages = {message["type"]: message for message in await client.take(2)}
            joined, event = messages["joined"], messages["event"]
            assert joined == {
                "type": "joined",
                "channel": "chat:a",
                "connection": joined["connection"],
                "user": "ada",
                "ref": 1,
            }
            assert (event["event"], event["data"]) == (
                JOIN,
                {"connection": joined["connection"], "user": "ada", "info": {"c": 1}},
            )
            snapshot = await client.request({"type": "presence", "channel": "chat:a", "ref": 2})
            assert snapshot["members"] == [{"connection": joined["connection"], "user": "ada", "info": {"c": 1}}]
            assert int(snapshot["cursor"]) >= 0 and snapshot["ref"] == 2
            await client.send({"type": "leave", "channel": "chat:a", "ref": 3})
            messages = {message["type"]: message for message in await client.take(2)}
            assert messages["left"] == {"type": "left", "channel": "chat:a", "ref": 3}
            event = messages["event"]
            assert (event["event"], event["data"]) == (LEAVE, {"connection": joined["connection"], "user": "ada"})
            assert (await client.request({"type": "presence", "channel": "chat:a"}))["members"] == []

    run(main())


def test_a_websocket_that_closes_leaves_every_channel_it_joined():
    async def main():
        async with connected() as client:
            for channel in ("chat:a", "chat:b"):
                assert (await client.request({"type": "join", "channel": channel, "name": "ada"}))["type"] == "joined"

    run(main())
    assert not PresenceMember.objects.exists()
    assert sorted(Event.objects.filter(event=LEAVE).values_list("channel", flat=True)) == ["chat:a", "chat:b"]


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ({"type": "join", "channel": "secret", "name": "ada"}, "forbidden"),  # no PRESENCE_CHANNELS pattern
        ({"type": "join", "channel": "chat:a"}, "bad_message"),  # anonymous and no name
        ({"type": "join", "channel": "chat:a", "name": "ada", "info": [1]}, "bad_message"),
        ({"type": "join", "channel": "chat:a", "name": "ada", "info": {"x": "y" * 2000}}, "too_large"),
        ({"type": "join", "channel": "chat:a", "name": 5}, "bad_message"),
        ({"type": "join", "channel": "a\nb", "name": "ada"}, "invalid_channel"),
        ({"type": "leave", "channel": "chat:a"}, "not_joined"),
        ({"type": "presence", "channel": "secret"}, "forbidden"),  # seeing who is here needs subscribe
    ],
)
def test_websocket_presence_requests_that_break_the_rules_get_an_error_and_write_nothing(message, code):
    async def main():
        async with connected() as client:
            reply = await client.request({**message, "ref": "r"})
            assert (reply["type"], reply["code"], reply["ref"]) == ("error", code, "r"), reply
            assert await client.silent()

    run(main())
    assert not PresenceMember.objects.exists() and not Event.objects.exists()


def test_joining_twice_is_an_error_and_the_first_join_stands():
    async def main():
        async with connected() as client:
            await client.request({"type": "join", "channel": "chat:a", "name": "ada"})
            reply = await client.request({"type": "join", "channel": "chat:a", "name": "ada"})
            assert reply["code"] == "already_joined"
            assert await run_released(PresenceMember.objects.count) == 1

    run(main())


def test_joins_beyond_max_channels_are_too_many_channels():
    async def main():
        async with connected() as client:
            for channel in ("chat:a", "chat:b"):
                assert (await client.request({"type": "join", "channel": channel, "name": "ada"}))["type"] == "joined"
            reply = await client.request({"type": "join", "channel": "chat:c", "name": "ada"})
            assert reply["code"] == "too_many_channels", reply
            assert "present on at most 2 channels" in reply["message"]
            assert await run_released(PresenceMember.objects.count) == 2

    with override_settings(REALTIME={**settings.REALTIME, "PRESENCE_CHANNELS": ["chat:*"], "MAX_CHANNELS": 2}):
        run(main())


# SSE --------------------------------------------------------------------------


def test_an_sse_stream_is_present_while_it_streams_and_leaves_when_it_closes(client):
    response = client.get("/events/?channel=chat:a&presence=chat:a&name=ada&info=%7B%22c%22%3A1%7D")
    assert response.status_code == 200
    member = PresenceMember.objects.get()
    assert (member.channel, member.user, json.loads(member.info_json)) == ("chat:a", "ada", {"c": 1})
    assert response["Realtime-Presence"] == f"chat:a {member.connection}"  # which member the stream is
    listed = client.get("/events/presence/?channel=chat:a")
    assert listed.status_code == 200 and listed["Content-Type"] == "application/json"
    assert listed.json()["members"] == [{"connection": member.connection, "user": "ada", "info": {"c": 1}}]
    response.close()  # as the server does when the client leaves
    assert not PresenceMember.objects.exists()
    assert [row.event for row in Event.objects.order_by("id")] == [JOIN, LEAVE]
    assert client.get("/events/presence/?channel=chat:a").json()["members"] == []


def test_an_sse_stream_of_several_channels_is_told_its_member_on_each_it_joined(client):
    response = client.get(
        "/events/?channel=chat:a&channel=chat:b&channel=chat:c&presence=chat:b&presence=chat:a&name=ada"
    )
    members = dict(PresenceMember.objects.values_list("channel", "connection"))
    assert sorted(members) == ["chat:a", "chat:b"]
    named = dict(part.split(" ") for part in response["Realtime-Presence"].split(", "))
    assert named == members
    response.close()
    plain = client.get("/events/?channel=chat:a")
    assert not plain.has_header("Realtime-Presence")
    plain.close()


def test_an_sse_stream_delivers_its_own_join_event(client):
    response = client.get("/events/?channel=chat:a&presence=chat:a&name=ada")
    body = first_chunks(response, 2)
    assert _events(body)[1][:2] == [f"id: {Event.objects.get(event=JOIN).id}", f"event: {JOIN}"]


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        ("channel=chat:a&presence=chat:b&name=ada", 400, "is not a channel of this stream"),
        ("channel=public:a&presence=public:a&name=ada", 403, "Not allowed to be present on: public:a"),
        ("channel=chat:a&presence=chat:a", 400, "give a name"),
        ("channel=chat:a&presence=chat:a&name=ada&info=%5B1%5D", 400, "info must be a JSON object"),
        ("channel=chat:a&presence=chat:a&name=ada&info=nope", 400, "info must be a JSON object"),
    ],
)
def test_without_include_channel_a_refused_presence_refuses_the_stream(client, query, status, message):
    with override_settings(
        REALTIME={**settings.REALTIME, "PRESENCE_CHANNELS": ["chat:*"], "PUBLIC_CHANNELS": ["chat:*", "public:*"]}
    ):
        response = client.get(f"/events/?{query}")
        assert response.status_code == status
        assert message in response.content.decode()
    assert not PresenceMember.objects.exists() and not Event.objects.exists()


def test_with_include_channel_a_refused_presence_is_an_error_event_and_the_channel_streams(client):
    with override_settings(
        REALTIME={**settings.REALTIME, "PRESENCE_CHANNELS": ["chat:*"], "PUBLIC_CHANNELS": ["chat:*", "public:*"]}
    ):
        response = client.get(
            "/events/?channel=public:a&channel=chat:b&presence=public:a&presence=chat:b&include=channel"
        )
        assert response.status_code == 200
        events = _events(first_chunks(response, 1))
    errors = [json.loads(lines[1].removeprefix("data: ")) for lines in events if lines[0] == "event: error"]
    assert errors == [
        {"channel": "public:a", "code": "presence_forbidden", "message": "Not allowed to be present on: public:a"},
        {"channel": "chat:b", "code": "bad_presence", "message": "give a name to be present as: you are not signed in"},
    ]
    assert not PresenceMember.objects.exists()


@pytest.mark.parametrize(
    ("query", "status"),
    [("channel=secret", 403), ("channel=a%0Ab", 400), ("", 400)],
)
def test_the_presence_endpoint_refuses_what_a_subscription_would(client, query, status):
    assert client.get(f"/events/presence/?{query}").status_code == status


def test_a_stream_refused_a_seat_joins_nothing(client):
    with override_settings(REALTIME={**settings.REALTIME, "PRESENCE_CHANNELS": ["chat:*"], "MAX_STREAMS": 1}):
        first = client.get("/events/?channel=chat:a&presence=chat:a&name=ada")
        refused = client.get("/events/?channel=chat:a&presence=chat:a&name=bob")
        assert refused.status_code == 503
        assert list(PresenceMember.objects.values_list("user", flat=True)) == ["ada"]
        first.close()


def test_a_stream_whose_presence_cannot_be_written_leaves_what_it_joined_and_takes_no_seat(client, monkeypatch):
    """A DatabaseError at its second channel's join: the stream is refused (503) and its first join undone."""
    insert = Registry._insert

    def insert_all_but_chat_b(self, members):
        if any(member.channel == "chat:b" for member in members):
            raise OperationalError("the database went away")
        insert(self, members)

    monkeypatch.setattr(Registry, "_insert", insert_all_but_chat_b)
    response = client.get("/events/?channel=chat:a&channel=chat:b&presence=chat:a&presence=chat:b&name=ada")
    assert response.status_code == 503
    assert not PresenceMember.objects.exists(), "the member on chat:a stayed"
    assert [row.event for row in Event.objects.order_by("id")] == [JOIN, LEAVE]
    assert get_hub().seats.taken == 0


def test_an_asgi_stream_that_ends_because_the_log_cannot_be_read_leaves_presence(monkeypatch, caplog):
    """Django's ASGI handler closes a response, which leaves its presence, only if its stream ends cleanly."""
    from asgiref.testing import ApplicationCommunicator
    from django.core.handlers.asgi import ASGIHandler

    def unreadable(*args, **kwargs):
        raise OperationalError("the database went away")

    publish("chat:a", "before the hub")
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/events/",
        # From 0: older than the hub, which starts with the stream, so the stream reads the log.
        "query_string": b"channel=chat:a&presence=chat:a&name=ada&lastEventId=0",
        "headers": [(b"host", b"testserver")],
    }
    monkeypatch.setattr("django_realtime.streams.read_page", unreadable)

    async def main():
        communicator = ApplicationCommunicator(ASGIHandler(), scope)
        await communicator.send_input({"type": "http.request"})
        await communicator.wait(5)  # the handler returns once the stream has ended and its response is closed
        messages = []
        while not communicator.output_queue.empty():
            messages.append(communicator.output_queue.get_nowait())
        return messages

    start, *body = run(main())
    assert start["status"] == 200
    assert b"".join(message.get("body", b"") for message in body).startswith(b"retry:")
    assert "ends a stream of chat:a" in caplog.text
    assert not PresenceMember.objects.exists(), "the stream's member stayed"
    assert [row.event for row in Event.objects.order_by("id")] == ["message", JOIN, LEAVE]
    assert get_hub().seats.taken == 0


def identity_that_raises(user, channel, name):
    raise RuntimeError("the identity hook is broken")


def test_an_identity_hook_that_raises_leaves_no_seat_no_member_and_the_websocket_open(client):
    with override_settings(
        REALTIME={**settings.REALTIME, "PRESENCE_CHANNELS": ["chat:*"], "PRESENCE_IDENTITY": identity_that_raises}
    ):
        client.raise_request_exception = False
        response = client.get("/events/?channel=chat:a&presence=chat:a&name=ada")
        assert response.status_code == 500
        assert get_hub().seats.taken == 0, "a server error takes no seat"

        async def main():
            async with connected() as client:
                reply = await client.request({"type": "join", "channel": "chat:a", "name": "ada"})
                assert reply["code"] == "unavailable", reply
                assert (await client.request({"type": "ping"}))["type"] == "pong", "the connection stays"

        run(main())
    assert not PresenceMember.objects.exists() and not Event.objects.exists()
