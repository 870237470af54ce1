import pytest
from django.template import Context, Template, TemplateSyntaxError
from django.test import AsyncRequestFactory, RequestFactory, override_settings

pytestmark = pytest.mark.urls("tests.urls")


def render(tag: str, **context) -> str:
    return Template("{% load realtime %}" + tag).render(Context(context))


def test_realtime_script_tells_the_script_its_endpoints_and_the_csrf_cookie():
    assert render("{% realtime_script %}") == (
        '<script src="/static/django_realtime/realtime.js" data-ws-url="/ws/" data-sse-url="/events/"'
        ' data-csrf-cookie="csrftoken" data-transports="websocket sse"></script>'
    )


def transports_told(**context) -> str:
    html = render("{% realtime_script %}", **context)
    return html.split(' data-transports="')[1].split('"')[0]


def test_a_page_served_by_wsgi_is_told_the_site_serves_no_websockets():
    # runserver without daphne, gunicorn: /ws/ is a 404 there, so the page must not try it.
    assert transports_told(request=RequestFactory().get("/")) == "sse"


def test_a_page_served_by_asgi_is_told_websockets_where_asgi_application_routes_them():
    assert transports_told(request=AsyncRequestFactory().get("/")) == "websocket sse"
    with override_settings(ASGI_APPLICATION="tests.asgi_http_only.application"):
        assert transports_told(request=AsyncRequestFactory().get("/")) == "sse"
        assert transports_told() == "sse"


def test_an_asgi_application_that_cannot_be_imported_leaves_the_pages_rendering_and_trying_websockets(caplog):
    with override_settings(ASGI_APPLICATION="tests.no_such_module.application"):
        assert transports_told(request=AsyncRequestFactory().get("/")) == "websocket sse"
    assert "cannot be imported" in caplog.text


def test_a_new_project_without_asgi_application_is_told_sse_only():
    with override_settings(ASGI_APPLICATION=None):
        assert transports_told() == "sse"
        # An ASGI server started with the application's path: taken to route WebSockets.
        assert transports_told(request=AsyncRequestFactory().get("/")) == "websocket sse"


@pytest.mark.parametrize(("websockets", "expected"), [(True, "websocket sse"), (False, "sse")])
def test_the_websockets_setting_overrides_what_is_inferred(settings, websockets, expected):
    # gunicorn for the pages, daphne for /ws/ behind one proxy: the setting says so.
    settings.REALTIME = {**settings.REALTIME, "WEBSOCKETS": websockets}
    assert transports_told(request=RequestFactory().get("/")) == expected
    assert transports_told(request=AsyncRequestFactory().get("/")) == expected


def test_transports_tells_the_page_which_transports_the_site_serves():
    assert ' data-transports="sse">' in render('{% realtime_script transports="sse" %}')
    assert ' data-transports="websocket sse">' in render('{% realtime_script transports="websocket, sse" %}')


@pytest.mark.parametrize("value", ["", "ws", "sse polling", 'sse" onload="alert(1)'])
def test_an_unknown_transport_is_a_template_error(value):
    with pytest.raises(TemplateSyntaxError, match="takes 'websocket', 'sse' or both"):
        render("{% realtime_script transports=value %}", value=value)
