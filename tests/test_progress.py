"""Live task progress (django_realtime.progress): the throttle, the end, the channel, the signed stream, the tag."""

from __future__ import annotations

import math
import uuid
from types import SimpleNamespace

import pytest
from django.contrib.auth import get_user_model
from django.template import Context, RequestContext, Template, TemplateSyntaxError
from django.test import Client, RequestFactory, override_settings
from django.utils.safestring import mark_safe

from django_realtime.exceptions import InvalidProgress, ProgressEnded
from django_realtime.models import Event
from django_realtime.names import validate_channel
from django_realtime.progress import (
    DONE,
    END_EVENT,
    FAILED,
    PROGRESS_EVENT,
    ProgressReporter,
    progress_channel,
    progress_reporter,
    stream_token,
)
from django_realtime.testing import capture_progress, read_sse

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls("tests.urls")]


class Clock:
    """A clock the test moves by hand: the throttle is checked without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def reporter(task: str, rate: float = 2.0, **options) -> tuple[ProgressReporter, Clock]:
    clock = Clock()
    return ProgressReporter(task, rate=rate, clock=clock, **options), clock


def events_of(task: str) -> list[Event]:
    return list(Event.objects.filter(channel=progress_channel(task)).order_by("id"))


# The throttle -----------------------------------------------------------------------------------------


def test_a_report_sooner_than_the_rate_allows_is_held_and_replaced_by_the_next():
    task = uuid.uuid4().hex
    p, clock = reporter(task, rate=2.0)  # one event per half second
    with capture_progress(task) as published:
        assert p.report(0.1, "one") is True
        clock.now += 0.1
        assert p.report(0.2, "two") is False
        clock.now += 0.1
        assert p.report(0.3, "three") is False
        clock.now += 0.3  # 0.5 s after the first
        assert p.report(0.4, "four") is True
    assert published.fractions() == [0.1, 0.4]
    assert published.messages() == ["one", "four"]
    assert [event.event for event in events_of(task)] == [PROGRESS_EVENT] * 2


def test_a_burst_publishes_at_most_rate_events_a_second_and_the_end_carries_the_last_report():
    task = uuid.uuid4().hex
    p, clock = reporter(task, rate=5.0)
    with capture_progress(task) as published:
        sent_at = []
        with p:
            for step in range(1, 1001):  # 1,000 reports over one second
                if p.report(step / 1000, f"row {step}"):
                    sent_at.append(clock.now)
                clock.now += 0.001
    assert 4 <= len(sent_at) <= 5
    assert all(b - a >= 0.2 - 1e-9 for a, b in zip(sent_at, sent_at[1:], strict=False))
    # The last report was held back; the end, published at once, shows its message.
    assert published.outcome.state == DONE
    assert published[-1].message == "row 1000"
    assert len(published) == len(sent_at) + 1


def test_flush_publishes_the_held_report_at_once():
    task = uuid.uuid4().hex
    p, clock = reporter(task, rate=1.0)
    with capture_progress(task) as published:
        p.report(0.1)
        clock.now += 0.01
        p.report(0.5, "a long step follows")
        assert p.flush() is True
        assert p.flush() is False  # nothing held any more
    assert published.fractions() == [0.1, 0.5]


def test_a_report_that_changes_nothing_shown_costs_no_event():
    task = uuid.uuid4().hex
    p, clock = reporter(task)
    p.report(0.5, "same")
    clock.now += 10
    assert p.report(0.5, "same") is False
    assert p.report(0.50001, "same") is False  # the bar shows 50.0% either way
    assert p.report(0.51, "same") is True
    assert len(events_of(task)) == 2


def test_an_unknown_fraction_shows_an_indeterminate_bar():
    task = uuid.uuid4().hex
    progress_reporter(task).report(None, "Preparing")
    data = events_of(task)[0].data
    assert 'data-state="running"' in data and "data-percent" not in data
    assert '<progress max="100"></progress>' in data and "Preparing" in data


# The end ----------------------------------------------------------------------------------------------


def test_done_publishes_the_result_at_once_escaped_unless_marked_safe():
    task = uuid.uuid4().hex
    p, _ = reporter(task)
    p.report(0.2)
    with capture_progress(task) as published:
        p.done("<b>42 rows</b>")  # within the rate's interval: the end is never held
    (event,) = events_of(task)[-1:]
    assert event.event == END_EVENT
    assert "&lt;b&gt;42 rows&lt;/b&gt;" in event.data and 'data-state="done"' in event.data
    assert 'data-percent="100.0"' in event.data
    assert published.outcome.state == DONE

    other = uuid.uuid4().hex
    progress_reporter(other).done(mark_safe('<a href="/r/1/">the report</a>'))
    assert '<a href="/r/1/">the report</a>' in events_of(other)[-1].data


def test_fail_shows_the_message_and_how_far_the_task_got():
    task = uuid.uuid4().hex
    p, clock = reporter(task)
    p.report(0.25, "Parsing")
    clock.now += 0.01
    p.report(0.6, "Rendering")  # held back, then carried by the end
    p.fail("The <data source> went away")
    data = events_of(task)[-1].data
    assert 'data-state="failed"' in data and 'data-percent="60.0"' in data and "Rendering" in data
    assert "The &lt;data source&gt; went away" in data


def test_leaving_the_block_ends_the_progress_done_or_failed_without_the_exceptions_text():
    ok, broken = uuid.uuid4().hex, uuid.uuid4().hex
    with progress_reporter(ok) as p:
        p.report(0.5)
    assert events_of(ok)[-1].event == END_EVENT and 'data-state="done"' in events_of(ok)[-1].data
    with pytest.raises(KeyError), progress_reporter(broken, error_message="Could not build the report.") as p:
        p.report(0.5)
        raise KeyError("secret-api-key-123")
    data = events_of(broken)[-1].data
    assert 'data-state="failed"' in data and "Could not build the report." in data
    assert "secret-api-key" not in data


def test_nothing_is_reported_after_the_end():
    task = uuid.uuid4().hex
    with progress_reporter(task) as p:
        p.fail("no")
        with pytest.raises(ProgressEnded):
            p.report(0.9)
        with pytest.raises(ProgressEnded):
            p.done()
    assert [event.event for event in events_of(task)] == [END_EVENT]  # the block's exit added nothing


# Bad input --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [-0.01, 1.01, math.nan, math.inf, True, "0.5", [0.5]])
def test_a_fraction_outside_zero_to_one_is_refused(fraction):
    with pytest.raises(InvalidProgress, match="fraction"):
        progress_reporter("t").report(fraction)


def test_a_message_must_be_text_and_a_long_one_is_cut():
    task = uuid.uuid4().hex
    p = progress_reporter(task)
    with pytest.raises(InvalidProgress, match="str"):
        p.report(0.1, 42)
    with capture_progress(task) as published:
        p.report(0.1, "x" * 5000)
    assert published[0].message == "x" * 199 + "\u2026"


@pytest.mark.parametrize("task", [None, "", "x" * 201, 1.5, True, object()])
def test_a_task_is_named_by_an_id_or_a_result(task):
    with pytest.raises(InvalidProgress):
        progress_channel(task)


@pytest.mark.parametrize("rate", [0, -1, math.inf, math.nan, "4"])
def test_a_rate_is_a_positive_number(rate):
    with pytest.raises(InvalidProgress, match="rate"):
        ProgressReporter("t", rate=rate)


def test_a_task_result_or_a_django_tasks_context_names_the_same_channel_as_its_id():
    task_id = uuid.uuid4()
    result = SimpleNamespace(id=str(task_id))  # a django.tasks TaskResult, a Celery AsyncResult
    context = SimpleNamespace(task_result=result)  # a django.tasks TaskContext (takes_context=True)
    assert progress_channel(result) == progress_channel(context) == progress_channel(task_id)


# The channel and who may follow it --------------------------------------------------------------------


def test_the_channel_is_a_valid_name_that_only_the_secret_key_derives_from_the_task_id(settings):
    task = "3f2b8d0e-1c5a-4e8f-9d21-7a6b5c4d3e2f"
    channel = progress_channel(task)
    assert validate_channel(channel) == channel and channel.startswith("progress:")
    assert task not in channel and task.replace("-", "") not in channel
    assert progress_channel(task) == channel != progress_channel(task + "0")
    settings.SECRET_KEY = "another secret key, of another site, long enough for Django"
    assert progress_channel(task) != channel


def test_the_general_endpoint_refuses_progress_channels_by_default():
    response = Client().get(f"/events/?channel={progress_channel('t')}")
    assert response.status_code == 403


def viewer(user=None, session_key=None):
    """A request as the token reads it: a user, else a session."""
    anonymous = SimpleNamespace(is_authenticated=False, pk=None)
    return SimpleNamespace(user=user or anonymous, session=SimpleNamespace(session_key=session_key))


def stream(client: Client, token: str, **query) -> object:
    query = "&".join(f"{name}={value}" for name, value in {"data": "text", **query}.items())
    return client.get(f"/events/progress/{token}/?{query}")


def test_a_signed_in_users_stream_url_streams_their_progress_to_them_alone():
    users = get_user_model().objects
    ann, bob = users.create_user("ann"), users.create_user("bob")
    task = uuid.uuid4().hex
    progress_reporter(task).report(0.3, "Parsing")
    token = stream_token(task, viewer(ann))
    client = Client()
    client.force_login(ann)
    (event,) = read_sse(stream(client, token, lastEventId=0), 1)
    assert event.event == "progress" and 'data-percent="30.0"' in event.raw  # ?data=text: the HTML as it is
    other = Client()
    other.force_login(bob)
    assert stream(other, token).status_code == 403
    assert stream(Client(), token).status_code == 403  # signed out


def test_a_visitors_stream_url_is_bound_to_their_session():
    task = uuid.uuid4().hex
    mine, theirs = Client(), Client()
    mine.session.save(), theirs.session.save()
    token = stream_token(task, viewer(session_key=mine.session.session_key))
    progress_reporter(task).report(0.5)
    assert read_sse(stream(mine, token, lastEventId=0), 1)[0].event == "progress"
    assert stream(theirs, token).status_code == 403
    assert stream(Client(), token).status_code == 403  # no session at all


def test_a_tampered_token_or_one_made_without_the_secret_key_is_refused():
    task = uuid.uuid4().hex
    token = stream_token(task, viewer())  # nobody in particular: the URL alone opens it
    assert stream(Client(), token, lastEventId=0).status_code == 200
    key, scope, signature = token.split(".")
    other_key = progress_channel("another task").partition(":")[2]
    for forged in (f"{other_key}.{scope}.{signature}", f"{key}.u.{signature}", f"{key}.{scope}.", key, "x" * 300):
        assert stream(Client(), forged).status_code == 403, forged
    with override_settings(SECRET_KEY="an attacker's guess at the secret key, long enough for Django"):
        forged = stream_token(task, viewer())
    assert stream(Client(), forged).status_code == 403


# The template tag -------------------------------------------------------------------------------------


def bar(task: str, request=None, **context) -> str:
    request = request or RequestFactory().get("/")
    request.user = viewer().user
    return Template("{% load realtime_progress %}{% progress_bar task %}").render(
        RequestContext(request, {"task": task, **context})
    )


def connect_url(html: str) -> str:
    return html.split('sse-connect="')[1].split('"')[0].replace("&amp;", "&")


def test_the_bar_renders_the_current_state_and_follows_from_the_moment_it_was_rendered():
    task = uuid.uuid4().hex
    first = bar(task)
    assert 'data-state="pending"' in first and 'sse-close="progress.end"' in first
    p, clock = reporter(task)
    p.report(0.4, "Parsing")
    # A page rendered before the report streams it; one rendered after shows it at once.
    (event,) = read_sse(Client().get(connect_url(first)), 1)
    assert 'data-percent="40.0"' in event.raw
    second = bar(task)
    assert 'data-percent="40.0"' in second and "Parsing" in second
    clock.now += 1
    p.report(0.7, "Rendering")
    (event,) = read_sse(Client().get(connect_url(second)), 1)
    assert 'data-percent="70.0"' in event.raw


def test_an_ended_bar_is_rendered_as_it_ended_and_follows_nothing():
    task = uuid.uuid4().hex
    progress_reporter(task).fail("Out of paper")
    html = bar(task)
    assert 'data-state="failed"' in html and "Out of paper" in html
    assert "sse-connect" not in html


def test_the_bar_needs_the_request():
    with pytest.raises(TemplateSyntaxError, match="request"):
        Template("{% load realtime_progress %}{% progress_bar 't' %}").render(Context({}))


def test_capture_progress_sees_only_its_tasks_progress():
    task, other = uuid.uuid4().hex, uuid.uuid4().hex
    with capture_progress(task) as published:
        progress_reporter(other).report(0.9)
        with progress_reporter(task) as p:
            p.report(0.5, "half")
    assert [(x.state, x.fraction) for x in published] == [("running", 0.5), (DONE, 1.0)]
    assert published.outcome is published[-1]
    with capture_progress(task) as nothing:
        pass
    assert nothing.outcome is None and FAILED == "failed"


@pytest.mark.django_db(transaction=True, databases=["default", "postgres"])
def test_on_postgresql_a_page_rendered_mid_task_shows_the_state_and_streams_the_rest(settings):
    """The log on PostgreSQL, whose cursor names the publishers in flight: the same render and resume."""
    settings.REALTIME = {**settings.REALTIME, "BACKEND": "polling", "DATABASE": "postgres"}
    task = uuid.uuid4().hex
    p, clock = reporter(task)
    p.report(0.25, "Parsing")
    html = bar(task)
    assert 'data-percent="25.0"' in html
    clock.now += 1
    p.report(0.5, "Rendering")
    p.done("ok")
    events = read_sse(Client().get(connect_url(html)), 2)
    assert [event.event for event in events] == ["progress", "progress.end"]
    assert 'data-percent="50.0"' in events[0].raw and 'data-state="done"' in events[1].raw
    assert not Event.objects.filter(channel=progress_channel(task)).exists()  # not in the default database
