from django.http import HttpResponse
from django.test import RequestFactory

from django_realtime.sse.middleware import GZipMiddleware
from django_realtime.sse.responses import SSEResponse


def process(response):
    request = RequestFactory().get("/", HTTP_ACCEPT_ENCODING="gzip")
    return GZipMiddleware(lambda r: response)(request)


def test_event_streams_pass_uncompressed():
    response = process(SSEResponse(iter([b"data: x\n\n"])))
    assert not response.has_header("Content-Encoding")
    assert list(response.streaming_content) == [b"data: x\n\n"]


def test_other_responses_are_still_compressed():
    assert process(HttpResponse("x" * 1000))["Content-Encoding"] == "gzip"
