import time
from contextlib import contextmanager

import pytest
from django.http import HttpResponse
from django.test import RequestFactory

from django_realtime.sse.middleware import GZipMiddleware
from django_realtime.sse.responses import SSEResponse
from tests.support.browser import launched_chromium
from tests.support.servers import EventStream, manage, project_env, publish_event, running_server


def process(response):
    request = RequestFactory().get("/", HTTP_ACCEPT_ENCODING="gzip")
    return GZipMiddleware(lambda r: response)(request)


def test_event_streams_pass_uncompressed():
    response = process(SSEResponse(iter([b"data: x\n\n"])))
    assert not response.has_header("Content-Encoding")
    assert list(response.streaming_content) == [b"data: x\n\n"]


def test_other_responses_are_still_compressed():
    assert process(HttpResponse("x" * 1000))["Content-Encoding"] == "gzip"


# What django_realtime.W001 warns about, in a real browser ----------------------------


@pytest.fixture(scope="module")
def chromium():
    with contextmanager(launched_chromium)() as browser:
        yield browser


@pytest.mark.server
@pytest.mark.browser
@pytest.mark.parametrize("kind", ["gunicorn-gevent", "daphne"])
def test_djangos_gzip_middleware_keeps_events_from_the_browser(chromium, tmp_path, kind):
    env = project_env(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    env["DJANGO_SETTINGS_MODULE"] = "tests.gzip_settings"
    manage(env, "migrate", "--verbosity", "0")
    with running_server(kind, env, tmp_path / "server.log") as server:
        page = chromium.new_page()
        try:
            page.goto(f"{server.url}/clock/")
            page.evaluate(
                """() => {
                    window.received = [];
                    const source = new EventSource("/events/?channel=demo:gzip");
                    source.onopen = () => window.received.push("open");
                    source.onmessage = (event) => window.received.push(event.data);
                }"""
            )
            page.wait_for_function("window.received.includes('open')", timeout=10_000)
            # A client that asks for no compression gets the event: it was published and sent.
            identity = {"Accept-Encoding": "identity"}
            with EventStream(server.events_url(), params=[("channel", "demo:gzip")], headers=identity) as plain:
                publish_event(env, "demo:gzip", "held back")
                assert plain.next().data == '"held back"'
            time.sleep(2.0)  # plenty: the uncompressed stream had it in milliseconds
            received = page.evaluate("window.received")
        finally:
            page.close()

    # Under WSGI the gzip stream holds it in its buffer; under ASGI each chunk is a gzip
    # member of its own, and Chromium decodes the first member only (the retry: line).
    assert received == ["open"]
