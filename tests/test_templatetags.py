import pytest
from django.template import Context, Template, TemplateSyntaxError

pytestmark = pytest.mark.urls("tests.urls")


def render(tag: str, **context) -> str:
    return Template("{% load realtime %}" + tag).render(Context(context))


def test_realtime_script_tells_the_script_its_endpoints_and_the_csrf_cookie():
    assert render("{% realtime_script %}") == (
        '<script src="/static/django_realtime/realtime.js" data-ws-url="/ws/" data-sse-url="/events/"'
        ' data-csrf-cookie="csrftoken"></script>'
    )


def test_transports_tells_the_page_which_transports_the_site_serves():
    assert ' data-transports="sse">' in render('{% realtime_script transports="sse" %}')
    assert ' data-transports="websocket sse">' in render('{% realtime_script transports="websocket, sse" %}')


@pytest.mark.parametrize("value", ["", "ws", "sse polling", 'sse" onload="alert(1)'])
def test_an_unknown_transport_is_a_template_error(value):
    with pytest.raises(TemplateSyntaxError, match="takes 'websocket', 'sse' or both"):
        render("{% realtime_script transports=value %}", value=value)
