import threading

import pytest
from django.http import HttpResponseForbidden
from django.test import RequestFactory

from django_realtime import ServerEvent, event_stream
from django_realtime.sse.decorators import to_sse
from django_realtime.sse.encoding import KEEPALIVE


@pytest.mark.parametrize(
    ("item", "encoded"),
    [
        ("plain\ntext", b"data: plain\ndata: text\n\n"),
        ({"data": {"a": 1}, "event": "tick", "id": "5"}, b'id: 5\nevent: tick\ndata: {"a":1}\n\n'),
        ({"data": "raw"}, b"data: raw\n\n"),
        ({"data": [1, 2]}, b"data: [1,2]\n\n"),
        (ServerEvent(data=None, event="ping"), b"event: ping\ndata: null\n\n"),
        (ServerEvent("x", retry=500), b"retry: 500\n\ndata: x\n\n"),
    ],
)
def test_what_a_generator_yields_becomes_sse(item, encoded):
    assert to_sse(item) == encoded


@pytest.mark.parametrize(
    ("item", "error"),
    [
        ({"event": "a\nb", "data": 1}, ValueError),
        ({"id": "1\r\nevent: forged", "data": 1}, ValueError),
        ({"data": 1, "colour": "red"}, TypeError),
        (42, TypeError),
        ({"data": float("nan")}, ValueError),
    ],
)
def test_what_cannot_be_sent_safely_is_refused(item, error):
    with pytest.raises(error):
        to_sse(item)


def stream(view, path="/"):
    response = view(RequestFactory().get(path))
    return response, iter(response.streaming_content)


def test_a_generator_view_streams_with_sse_headers():
    @event_stream
    def view(request):
        yield "one"
        yield {"event": "two", "data": 2}

    response, chunks = stream(view)
    assert response["Content-Type"] == "text/event-stream; charset=utf-8"
    assert list(chunks) == [b"retry: 3000\n\n", b"data: one\n\n", b"event: two\ndata: 2\n\n"]


def test_keepalives_go_out_while_the_generator_blocks_and_closing_stops_it():
    release, closed = threading.Event(), threading.Event()

    @event_stream(keepalive=0.05)
    def view(request):
        try:
            release.wait(5)
            yield "late"
            yield "never"
        finally:
            closed.set()

    response, chunks = stream(view)
    assert next(chunks).startswith(b"retry:")
    assert next(chunks) == KEEPALIVE
    release.set()
    while (chunk := next(chunks)) == KEEPALIVE:
        pass
    assert chunk == b"data: late\n\n"
    response.close()
    assert closed.wait(5)


def test_a_view_may_return_a_response_instead():
    @event_stream
    def view(request):
        return HttpResponseForbidden("no")

    assert view(RequestFactory().get("/")).status_code == 403


def test_an_exception_in_the_generator_ends_the_stream_and_is_logged(caplog):
    @event_stream
    def view(request):
        yield "before"
        raise RuntimeError("boom")

    _, chunks = stream(view)
    assert list(chunks)[1:] == [b"data: before\n\n"]
    assert "boom" in caplog.text


def test_an_async_view_is_refused_at_decoration():
    with pytest.raises(TypeError, match="plain \\(sync\\) generator"):

        @event_stream
        async def view(request):
            yield "x"
