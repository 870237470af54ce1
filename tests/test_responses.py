import gc

import pytest
from django.core.handlers.wsgi import WSGIHandler, WSGIRequest
from django.test import RequestFactory

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
