import gc

import pytest
from django.core.handlers.wsgi import WSGIHandler, WSGIRequest
from django.test import RequestFactory, override_settings

pytestmark = pytest.mark.django_db(transaction=True)


def live_requests():
    gc.collect()
    return [obj for obj in gc.get_objects() if isinstance(obj, WSGIRequest)]


def test_an_open_stream_does_not_keep_its_request_alive():
    """A stream lives for hours: the request (META, the resolver match, the user) must not live with it."""
    environ = RequestFactory().get("/events/", {"channel": "chat:lobby"}).environ
    before = len(live_requests())
    response = WSGIHandler()(environ, lambda status, headers: None)
    assert response.status_code == 200
    stream = iter(response)  # what the server does when it starts to stream
    assert next(stream).startswith(b"retry:")
    assert len(live_requests()) == before
    response.close()


def test_a_stream_ended_at_shutdown_is_told_a_retry_drawn_up_to_shutdown_retry():
    from django_realtime.sse.responses import parting

    with override_settings(REALTIME={"SHUTDOWN_RETRY": 400}):
        retries = {int(parting().decode("ascii").removeprefix("retry: ").strip()) for _ in range(200)}
    assert retries <= set(range(401))
    assert len(retries) > 50  # spread: its clients do not all come back at once


@pytest.mark.parametrize("value", [-1, 1.5, "1000", True, None])
def test_a_shutdown_retry_that_is_not_milliseconds_is_refused(value):
    from django.core.exceptions import ImproperlyConfigured

    from django_realtime.sse.responses import parting

    with override_settings(REALTIME={"SHUTDOWN_RETRY": value}), pytest.raises(ImproperlyConfigured, match="SHUTDOWN"):
        parting()
