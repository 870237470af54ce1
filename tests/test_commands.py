import io
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from django_realtime import publish
from django_realtime.models import Event

ROOT = Path(__file__).resolve().parent.parent


def run(*args, stdin=None):
    out = io.StringIO()
    if stdin is not None:
        sys_stdin, sys.stdin = sys.stdin, io.StringIO(stdin)
    try:
        call_command(*args, stdout=out)
    finally:
        if stdin is not None:
            sys.stdin = sys_stdin
    return out.getvalue()


@pytest.mark.django_db
def test_publish_event_prints_the_new_id():
    out = run("publish_event", "chat:lobby", '{"text": "hi"}', "--event", "said")
    event = Event.objects.get()
    assert out == f"{event.id}\n"
    assert (event.channel, event.event, event.data) == ("chat:lobby", "said", {"text": "hi"})


@pytest.mark.django_db
def test_publish_event_takes_options_between_arguments():
    run("publish_event", "c", "--event", "e", '"v"')
    assert (Event.objects.get().event, Event.objects.get().data) == ("e", "v")


@pytest.mark.django_db
def test_publish_event_without_data_publishes_null():
    run("publish_event", "c")
    assert Event.objects.get().data_json == "null"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["c", "{bad"], "the data argument is not valid JSON"),
        (["a b", "1"], "may contain only"),
        (["c", "1", "--event", "reset"], "reserved"),
        (["c", "NaN"], "not JSON-serialisable"),
        (["c", '"\\ud800"'], "lone surrogate"),
    ],
)
def test_publish_event_reports_bad_input(args, message):
    with pytest.raises(CommandError, match=message):
        run("publish_event", *args)
    assert not Event.objects.exists()


@pytest.mark.django_db
def test_publish_event_stdin_publishes_each_line_and_stops_at_the_first_bad_one():
    with pytest.raises(CommandError, match="line 4 is not valid JSON"):
        run("publish_event", "c", "--stdin", stdin='{"n": 1}\n\n[2]\n{oops\n{"n": 5}\n')
    assert [e.data for e in Event.objects.order_by("id")] == [{"n": 1}, [2]]


@pytest.mark.django_db
@pytest.mark.parametrize("depth", [50_000, 100_000])  # beyond every supported Python's JSON recursion limit
def test_publish_event_refuses_deeply_nested_json_with_a_clear_error(depth):
    nested = "[" * depth + "]" * depth
    with pytest.raises(CommandError, match="the data argument is nested too deeply"):
        run("publish_event", "c", nested)
    with pytest.raises(CommandError, match="line 2 is nested too deeply"):
        run("publish_event", "c", "--stdin", stdin="1\n" + nested + "\n")
    assert Event.objects.count() == 1


@pytest.mark.django_db
def test_publish_event_stdin_prints_one_id_per_line():
    out = run("publish_event", "c", "--stdin", stdin="1\n2\n")
    assert out.split() == [str(i) for i in Event.objects.order_by("id").values_list("id", flat=True)]


@pytest.mark.django_db
def test_prune_events_reports_what_it_deleted():
    ids = [publish("a", n).id for n in range(3)]
    publish("b", 0)
    Event.objects.filter(pk=ids[0]).update(created=timezone.now() - timedelta(hours=3))
    assert run("prune_events", "--older-than", "2h") == "Deleted 1 events (1 by age, 0 by count per channel).\n"
    assert run("prune_events", "--keep", "1", "--channel", "a", "--grace", "0") == (
        "Deleted 1 events (0 by age, 1 by count per channel).\n"
    )
    assert Event.objects.count() == 2


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--older-than", "soon"], "must look like"),
        (["--keep", "-1"], "0 or more"),
        (["--channel", "a\nb"], "CR, LF"),
    ],
)
def test_prune_events_reports_bad_options(args, message):
    with pytest.raises(CommandError, match=message):
        run("prune_events", *args)


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("45s", 45), ("30m", 1800), ("12h", 43200), ("7d", 604800)])
def test_durations(text, seconds):
    from django_realtime.management.commands.prune_events import parse_duration

    assert parse_duration(text).total_seconds() == seconds


def test_tail_events_prints_stored_then_live_events(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "testproject.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'tail.sqlite3'}",
    }

    def manage(*args, **kwargs):
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True
        )

    manage("migrate", "-v0")
    first = manage("publish_event", "chat:t", '"stored"').stdout.strip()
    tail = subprocess.Popen(
        [sys.executable, "-u", "manage.py", "tail_events", "chat:t", "--since", "0"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert tail.stdout.readline() == f'{first} chat:t message "stored"\n'
        second = manage("publish_event", "chat:t", '{"live": true}', "--event", "x").stdout.strip()
        assert tail.stdout.readline() == f'{second} chat:t x {{"live":true}}\n'
    finally:
        tail.kill()
        tail.wait(10)
        tail.stdout.close()
