import json
import re
import time
from unittest.mock import ANY
from urllib.parse import quote

import pytest
from django.test import override_settings

from django_realtime import publish

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls("tests.urls")]


def first_chunks(response, count):
    chunks = []
    iterator = iter(response.streaming_content)
    for _ in range(count):
        chunks.append(next(iterator))
    response.close()
    return b"".join(chunks)


def test_a_stream_has_event_stream_headers_and_starts_with_retry(client):
    response = client.get("/events/?channel=chat:lobby", HTTP_ACCEPT_ENCODING="gzip")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream; charset=utf-8"
    assert response["Cache-Control"] == "no-cache"
    assert response["X-Accel-Buffering"] == "no"
    assert not response.has_header("Content-Encoding")
    assert not response.has_header("Connection")
    assert first_chunks(response, 1) == b"retry: 3000\n\n"


def test_replay_with_the_query_parameter_and_the_header_winning(client):
    ids = [publish("chat:a", n).id for n in range(3)]
    body = first_chunks(client.get(f"/events/?channel=chat:a&lastEventId={ids[0]}"), 2)
    assert [f"id: {i}\n".encode() in body for i in ids] == [False, True, True]
    body = first_chunks(client.get(f"/events/?channel=chat:a&lastEventId={ids[0]}", HTTP_LAST_EVENT_ID=str(ids[1])), 2)
    assert f"id: {ids[1]}\n".encode() not in body and f"id: {ids[2]}\n".encode() in body


@pytest.mark.parametrize("cursor", ["abc", "-1", "1.5", "99999999999999999999", "0x10"])
def test_a_malformed_cursor_gets_a_clear_400(client, cursor):
    response = client.get("/events/?channel=chat:a", HTTP_LAST_EVENT_ID=cursor)
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/plain")
    assert b"Invalid Last-Event-ID" in response.content and b"decimal number" in response.content
    assert client.get(f"/events/?channel=chat:a&lastEventId={cursor}").status_code == 400


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", b"Give at least one channel"),
        ("?channel=", b"must not be empty"),
        ("?channel=a%20b", b"may contain only"),
        ("?channel=a%0Ab", b"must not contain CR, LF or NUL"),
        ("?" + "&".join(f"channel=chat:{n}" for n in range(17)), b"Too many channels: at most 16"),
    ],
)
def test_bad_channel_parameters_get_a_clear_400(client, query, message):
    response = client.get(f"/events/{query}")
    assert response.status_code == 400
    assert message in response.content


def test_a_channel_the_hook_denies_gets_403_naming_it(client):
    response = client.get("/events/?channel=chat:ok&channel=secret&channel=admin")
    assert response.status_code == 403
    assert response.content == b"not allowed to subscribe to secret, admin\n"


def test_the_authorize_hook_is_asked_with_user_channel_and_action(client):
    calls = []

    def hook(user, channel, action):
        calls.append((user.is_authenticated, channel, action))
        return channel == "mine"

    with override_settings(REALTIME={"AUTHORIZE": hook}):
        assert client.get("/events/?channel=mine").status_code == 200
        assert client.get("/events/?channel=theirs").status_code == 403
    assert calls == [(False, "mine", "subscribe"), (False, "theirs", "subscribe")]


def test_only_get_is_allowed(client):
    assert client.post("/events/?channel=chat:a").status_code == 405


def test_channels_given_by_the_urlconf_need_no_parameter_and_no_hook(client):
    event = publish("alerts", "x")
    publish("chat:a", "not this one")
    body = first_chunks(client.get(f"/news/?channel=ignored&lastEventId={event.id - 1}"), 2)
    assert f"id: {event.id}\n".encode() in body and b"not this one" not in body
    assert client.get("/included/").status_code == 200
    assert client.get("/included/health/").status_code == 200  # the include's channels= are not its


def test_stream_channels_serves_a_view_of_your_own(client):
    event = publish("private:mine", {"n": 1})
    body = first_chunks(client.get(f"/mine/?lastEventId={event.id - 1}"), 2)
    assert body.endswith(f'id: {event.id}\nevent: message\ndata: {{"n":1}}\n\n'.encode())


def test_a_log_that_cannot_be_read_gets_503(client, monkeypatch):
    from django_realtime.hub import Hub

    monkeypatch.setattr(Hub, "ensure_ready", lambda self, timeout=10.0: False)
    response = client.get("/events/?channel=chat:a")
    assert response.status_code == 503
    assert response["Retry-After"] == "3"  # RETRY, 3000 ms by default
    assert response.content == b"The event log cannot be read right now; try again later.\n"


def test_health_says_ok_while_the_hub_reads_the_log(client):
    response = client.get("/events/health/")
    for _ in range(50):  # the first request starts the hub
        if response.status_code == 200:
            break
        time.sleep(0.1)
        response = client.get("/events/health/")
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    health = response.json()
    assert health["status"] == "ok" and health["ready"] and health["reader"] == "running"
    assert health["error"] is None


def test_health_is_503_with_the_kind_of_error_while_the_log_cannot_be_read(client, monkeypatch):
    from django_realtime.hub import get_hub

    hub = get_hub()
    assert hub.ensure_ready()
    monkeypatch.setattr(hub, "read_succeeded", lambda: None)  # the reader's next read must not clear the error
    hub.read_failed(ConnectionRefusedError("secret host name"))
    response = client.get("/events/health/")
    assert response.status_code == 503
    assert response["Retry-After"] == "3"
    health = response.json()
    assert health["status"] == "unavailable"
    assert health["error"] == "ConnectionRefusedError"  # the kind only: details are for the log


@pytest.mark.parametrize("cursor", ["1%0D%0A", "%201", "1%E2%80%A8"])
def test_a_cursor_with_whitespace_is_malformed_too(client, cursor):
    assert client.get(f"/events/?channel=chat:a&lastEventId={cursor}").status_code == 400


def test_past_max_streams_a_stream_gets_503_with_retry_after_until_one_closes(client):
    with override_settings(REALTIME={"PUBLIC_CHANNELS": ["chat:*"], "MAX_STREAMS": 2}):
        first = client.get("/events/?channel=chat:a")
        second = client.get("/events/?channel=chat:a")
        assert first.status_code == second.status_code == 200
        refused = client.get("/events/?channel=chat:a")
        assert refused.status_code == 503
        assert refused["Retry-After"] == "3"
        assert refused.content == b"This server has too many open streams right now; try again later.\n"
        first.close()  # as the server does when the client leaves
        third = client.get("/events/?channel=chat:a")
        assert third.status_code == 200
        second.close()
        third.close()


def test_include_channel_puts_each_event_after_a_line_naming_its_channel(client):
    first = publish("chat:a", {"n": 1})
    second = publish("chat:b", {"n": 2})
    body = first_chunks(
        client.get(f"/events/?channel=chat:a&channel=chat:b&include=channel&lastEventId={first.id - 1}"), 2
    )
    assert body == (
        f"retry: 3000\n\nid: {first.id - 1}\n\n".encode()
        + f'channel: chat:a\nid: {first.id}\nevent: message\ndata: {{"n":1}}\n\n'.encode()
        + f'channel: chat:b\nid: {second.id}\nevent: message\ndata: {{"n":2}}\n\n'.encode()
    )


def test_without_include_a_stream_carries_no_channel_lines(client):
    event = publish("chat:a", {"n": 1})
    body = first_chunks(client.get(f"/events/?channel=chat:a&lastEventId={event.id - 1}"), 2)
    assert b"channel:" not in body and f"id: {event.id}\n".encode() in body


def test_include_channel_works_for_stream_channels_views_too(client):
    event = publish("private:mine", {"n": 1})
    body = first_chunks(client.get(f"/mine/?include=channel&lastEventId={event.id - 1}"), 2)
    assert body.endswith(f'channel: private:mine\nid: {event.id}\nevent: message\ndata: {{"n":1}}\n\n'.encode())


@pytest.mark.parametrize("value", ["", "channels", "channel\r\nid: 1", "CHANNEL"])
@pytest.mark.parametrize("path", ["/events/?channel=chat:a&", "/mine/?"])
def test_an_unknown_include_gets_a_clear_400(client, path, value):
    response = client.get(path + "include=" + quote(value))
    assert response.status_code == 400
    assert b"Invalid include" in response.content and b"the only one is 'channel'" in response.content
    assert b"\r\nid: 1" not in response.content


def _events(body):
    """Split an SSE body into its events, each a list of its lines."""
    return [block.split("\n") for block in body.decode().split("\n\n") if block]


def test_with_include_channel_a_denied_or_invalid_channel_gets_an_error_event_and_the_others_stream(client):
    event = publish("chat:ok", {"n": 1})
    query = "channel=secret&channel=chat:ok&channel=a%0Aid:%201&channel=admin&include=channel"
    response = client.get(f"/events/?{query}&lastEventId={event.id - 1}")
    assert response.status_code == 200
    events = _events(first_chunks(response, 2))
    assert events[:2] == [["retry: 3000"], [f"id: {event.id - 1}"]]
    del events[1]
    errors = [json.loads(lines[1].removeprefix("data: ")) for lines in events[1:4]]
    assert [lines[0] for lines in events[1:4]] == ["event: error"] * 3
    assert all(len(lines) == 2 for lines in events[1:4])  # no id, no channel line: the line break stays escaped
    assert errors == [
        {"channel": "a\nid: 1", "code": "invalid_channel", "message": ANY},
        {"channel": "secret", "code": "forbidden", "message": "not allowed to subscribe to secret"},
        {"channel": "admin", "code": "forbidden", "message": "not allowed to subscribe to admin"},
    ]
    assert "must not contain CR, LF or NUL" in errors[0]["message"]
    assert events[4] == ["channel: chat:ok", f"id: {event.id}", "event: message", 'data: {"n":1}']


def test_with_include_channel_a_request_with_no_allowed_channel_is_refused_whole(client):
    response = client.get("/events/?channel=secret&channel=a%20b&include=channel")
    assert response.status_code == 403
    assert b"Invalid channel: channel name may contain only" in response.content
    assert b"not allowed to subscribe to secret" in response.content
    assert client.get("/events/?channel=a%20b&include=channel").status_code == 400


def test_with_include_channel_a_live_stream_says_which_cursor_it_starts_at(client):
    before = publish("chat:a", 1)
    body = first_chunks(client.get("/events/?channel=chat:a&include=channel"), 1)
    # An id with no data: the client's last event id, so a reconnect before any event resumes from here.
    (start,) = re.fullmatch(rb"retry: 3000\n\nid: (\d+)\n\n", body).groups()
    assert int(start) >= before.id


def test_data_text_sends_string_data_as_it_is_multi_line_html_intact_and_other_data_as_json(client):
    from django_realtime import publish_html
    from django_realtime.testing import read_sse

    html = publish_html("chat:ticker", "chat/ticker_item.html", {"nick": "ann", "text": "<script>x</script>"})
    publish("chat:ticker", {"n": 1})
    publish("chat:ticker", "a\r\nb\rc")
    response = client.get(f"/events/?channel=chat:ticker&data=text&lastEventId={html.id - 1}")
    first, second, third = read_sse(response, 3)
    assert first.raw == html.data and '\n  <b class="nick">ann</b>\n' in first.raw  # its lines, joined as sent
    assert "&lt;script&gt;x&lt;/script&gt;" in first.raw  # the template escaped what a stranger typed
    assert first.id == str(html.id)
    assert second.data == {"n": 1}  # not a string: JSON, as without ?data=text
    assert third.raw == "a\nb\nc"  # every line break the spec knows starts a new data: line
    plain = read_sse(client.get(f"/events/?channel=chat:ticker&lastEventId={html.id - 1}"), 1)
    assert plain[0].data == html.data  # the default stays JSON


@pytest.mark.parametrize("query", ["data=html", "data=text&data=json", "data="])
def test_a_bad_data_parameter_gets_a_clear_400(client, query):
    response = client.get(f"/events/?channel=chat:a&{query}")
    assert response.status_code == 400
    assert b"data" in response.content


def test_with_include_channel_the_channels_past_max_channels_are_refused_in_band_alone(client):
    event = publish("chat:0", {"n": 1})
    channels = "&".join(f"channel=chat:{n}" for n in range(18))
    response = client.get(f"/events/?{channels}&include=channel&lastEventId={event.id - 1}")
    assert response.status_code == 200
    events = _events(first_chunks(response, 2))
    errors = [json.loads(lines[1].removeprefix("data: ")) for lines in events if lines[0] == "event: error"]
    assert [(error["channel"], error["code"]) for error in errors] == [
        ("chat:16", "too_many_channels"),
        ("chat:17", "too_many_channels"),
    ]
    assert ["channel: chat:0", f"id: {event.id}", "event: message", 'data: {"n":1}'] in events
