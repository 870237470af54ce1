"""Prometheus metrics: each moves when its event happens, the view is refused to strangers, labels stay few."""

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import User
from django.db import connections
from django.test import RequestFactory, override_settings
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from django_realtime import metrics, publish
from django_realtime.client_publish import store_publish
from django_realtime.hub import get_hub
from django_realtime.models import Event
from django_realtime.presence import get_registry
from django_realtime.sse.responses import asse_stream
from django_realtime.sse.views import events
from django_realtime.sse.watchdog import get_watchdog
from tests.held import Held
from tests.support import services
from tests.support.checks import realtime_check_ids
from tests.support.servers import ROOT
from tests.test_hub import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "s3cret-token-for-the-scraper"
FAST = {"POLL_INTERVAL": 0.05, "KEEPALIVE": 0.4}


def realtime(**changes):
    """Override REALTIME: the test settings' (the demo's public channels), quick, and *changes*."""
    from django.conf import settings

    return override_settings(REALTIME={**settings.REALTIME, **FAST, **changes})


def value(name, **labels):
    """Return a sample's value in this process's registry (0 if it has none yet)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def wait_until(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not (result := condition()) and time.monotonic() < deadline:
        time.sleep(0.02)
    return result


def scrape(client, **headers):
    response = client.get("/events/metrics/", **headers)
    return response, response.content.decode()


# Names and labels ---------------------------------------------------------


def test_names_follow_prometheus_conventions_with_the_prefix_and_units():
    made = metrics.active()
    assert made is not None
    families = {family.name: family for family in REGISTRY.collect() if family.name.startswith("django_realtime_")}
    assert len(families) == 15
    for name, family in families.items():
        assert name.startswith(metrics.PREFIX), name
        if family.type == "counter":
            assert {sample.name for sample in family.samples} <= {f"{name}_total", f"{name}_created"}, name
    assert families["django_realtime_hub_lag_seconds"].type == "histogram"
    assert families["django_realtime_connections_open"].type == "gauge"
    assert families["django_realtime_publishing_transaction_oldest_age_seconds"].type == "gauge"


def test_no_label_value_names_a_channel_a_user_or_an_address(client):
    staff = User.objects.create_user("boss", password="pw", is_staff=True)
    publish("chat:secret-room-42", {"x": 1})
    Event.objects.create(channel="chat:orm-room-7", event="message", data_json="1")
    response = client.get("/events/?channel=chat:secret-room-42")
    next(iter(response.streaming_content))
    client.get("/events/?channel=secret-denied")
    response.close()
    client.force_login(staff)
    _, text = scrape(client)
    allowed = {
        "transport": set(metrics.TRANSPORTS),
        "reason": {*metrics.CLOSE_REASONS, *metrics.RESET_REASONS, "hung", "ended"},
        "status": {str(status) for status in metrics.REFUSALS},
        "path": set(metrics.PATHS),
        "le": None,
    }
    seen = 0
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("django_realtime_"):
            continue
        for sample in family.samples:
            for label, got in sample.labels.items():
                assert label in allowed, f"{sample.name} has a label {label}"
                assert allowed[label] is None or got in allowed[label], f"{sample.name}{{{label}={got!r}}}"
                assert "room" not in got and "secret" not in got and "boss" not in got
                seen += 1
    assert seen > 50


def test_epoch_reads_created_as_each_driver_gives_it():
    aware = datetime(2026, 12, 7, 15, 0, 0, 250000, tzinfo=UTC)
    assert metrics.epoch(aware) == aware.timestamp()
    assert metrics.epoch(aware.replace(tzinfo=None)) == aware.timestamp()  # MySQL: UTC without a zone
    assert metrics.epoch("2026-12-07 15:00:00.250000") == aware.timestamp()  # SQLite: text
    assert metrics.epoch("not a date") is None
    assert metrics.epoch(None) is None


# Publishing -----------------------------------------------------------------


def test_events_published_count_each_path():
    def counts():
        return {path: value("django_realtime_events_published_total", path=path) for path in metrics.PATHS}

    before = counts()
    publish("chat:a", 1)
    Event.objects.create(channel="chat:a", event="message", data_json="2")
    store_publish(None, "chat:a", "message", 3)  # the demo lets anyone publish to chat:*
    member = get_registry().join(None, "chat:a", "guest")
    after = counts()
    assert {path: after[path] - before[path] for path in metrics.PATHS} == {
        "publish": 1,
        "orm": 1,
        "client": 1,
        "presence": 1,
    }
    get_registry().leave(member)


def test_presence_members_rise_on_join_and_fall_on_leave():
    registry = get_registry()
    before = value("django_realtime_presence_members")
    member = registry.join(None, "chat:a", "guest")
    assert value("django_realtime_presence_members") == before + 1
    registry.leave(member)
    registry.leave(member)  # a second leave of the same member changes nothing
    assert value("django_realtime_presence_members") == before


# The hub ----------------------------------------------------------------------


def test_reads_rows_and_the_hub_lag_of_each_event_that_arrives():
    with realtime():
        hub = get_hub()
        assert hub.ensure_ready()
        reads, rows = value("django_realtime_log_reads_total"), value("django_realtime_log_rows_read_total")
        lags = value("django_realtime_hub_lag_seconds_count")
        first, second = publish("a", 1), publish("b", 2)
        wait_for(hub, second.id, poke=True)
        assert value("django_realtime_log_reads_total") > reads
        assert value("django_realtime_log_rows_read_total") == rows + 2
        assert wait_until(lambda: value("django_realtime_hub_lag_seconds_count") == lags + 2)
        assert first.id < second.id
        # Published a moment ago: its lag is well under a minute, and not negative.
        assert value("django_realtime_hub_lag_seconds_bucket", le="60.0") == lags + 2


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_read_failures_and_reader_restarts_are_counted(monkeypatch):
    from django.db import OperationalError

    from django_realtime.eventlog.tailers import SerialTailer

    class Ended(BaseException):
        pass

    with realtime():
        hub = get_hub()
        assert hub.ensure_ready()
        failures = value("django_realtime_log_read_failures_total")
        restarts = value("django_realtime_reader_restarts_total", reason="ended")
        read = SerialTailer.read
        calls = []

        def fail_then_die(self, cursor):
            calls.append(1)
            if len(calls) == 1:
                raise OperationalError("the database went away")
            if len(calls) == 2:
                raise Ended
            return read(self, cursor)

        monkeypatch.setattr(SerialTailer, "read", fail_then_die)
        event = publish("a", 1)
        wait_for(hub, event.id, poke=True)
        assert value("django_realtime_log_read_failures_total") == failures + 1
        assert value("django_realtime_reader_restarts_total", reason="ended") == restarts + 1


@pytest.mark.django_db(transaction=True, databases=["default", "postgres"])
def test_the_oldest_publishing_transaction_age_rises_while_one_is_open_and_falls_when_it_ends(settings):
    services.require(services.POSTGRES, "PostgreSQL")
    settings.REALTIME = {"BACKEND": "inprocess", "DATABASE": "postgres", "PRUNE_INTERVAL": None}
    try:
        publish("c", "first")
        hub = get_hub()
        assert hub.ensure_ready()
        age = "django_realtime_publishing_transaction_oldest_age_seconds"
        lags = value("django_realtime_hub_lag_seconds_count")
        held = Held(using="postgres")
        try:
            other = publish("another-channel", "later").id
            wait_for(hub, other, poke=True)
            assert wait_until(lambda: (hub.poke(), value(age))[1] > 0.3)
        finally:
            held.end(commit=True)
        assert wait_until(lambda: (hub.poke(), value(age))[1] == 0)
        # Both arrived, the held one once it committed: lags read from PostgreSQL's timestamptz.
        assert wait_until(lambda: value("django_realtime_hub_lag_seconds_count") == lags + 2)
    finally:
        connections["postgres"].close()


# SSE connections ----------------------------------------------------------------


def open_gauge(transport="sse"):
    return value("django_realtime_connections_open", transport=transport)


def closed(reason, transport="sse"):
    return value("django_realtime_connections_closed_total", transport=transport, reason=reason)


def test_an_sse_stream_is_counted_open_its_events_and_bytes_written_then_closed_as_client_gone(client):
    with realtime():
        opened = value("django_realtime_connections_opened_total", transport="sse")
        gone, is_open = closed("client_gone"), open_gauge()
        delivered = value("django_realtime_events_delivered_total", transport="sse")
        written = value("django_realtime_bytes_written_total", transport="sse")
        response = client.get("/events/?channel=chat:a")
        assert value("django_realtime_connections_opened_total", transport="sse") == opened + 1
        assert open_gauge() == is_open + 1
        chunks = iter(response.streaming_content)
        prelude = next(chunks)
        publish("chat:a", "hello")
        chunk = next(chunks)
        while b"hello" not in chunk:
            chunk = next(chunks)
        # Counted by the hub's ticker, at least every quarter of a second: no scrape needed.
        assert wait_until(lambda: value("django_realtime_events_delivered_total", transport="sse") == delivered + 1)
        assert value("django_realtime_bytes_written_total", transport="sse") >= written + len(prelude) + len(chunk)
        response.close()
        assert open_gauge() == is_open
        assert closed("client_gone") == gone + 1


def test_an_sse_stream_that_reaches_its_lifetime_closes_as_ended(client):
    with realtime(SSE_MAX_LIFETIME=0.2):
        ended, is_open = closed("ended"), open_gauge()
        response = client.get("/events/?channel=chat:a")
        assert b"".join(response.streaming_content).startswith(b"retry:")
        response.close()
        assert closed("ended") == ended + 1
        assert open_gauge() == is_open


def test_an_asgi_stream_that_reaches_its_lifetime_closes_as_ended():
    with realtime():
        hub = get_hub()
        assert hub.ensure_ready()
        ended, is_open = closed("ended"), open_gauge()

        async def main():
            connection = metrics.opened(metrics.SSE)
            stream = asse_stream(hub, frozenset({"chat:a"}), None, 0.4, lifetime=0.2, connection=connection)
            return [chunk async for chunk in stream]

        assert asyncio.run(main())[0].startswith(b"retry:")
        assert closed("ended") == ended + 1
        assert open_gauge() == is_open


def test_a_wsgi_stream_whose_client_stops_reading_closes_as_slow_client():
    with realtime(SSE_SEND_TIMEOUT=0.3):
        slow, is_open = closed("slow_client"), open_gauge()
        server, peer = socket.socketpair()
        request = RequestFactory().get("/events/?channel=chat:a")
        request.META["gunicorn.socket"] = server  # what the hub shuts down when it cuts the client
        try:
            response = events(request)
            chunks = iter(response.streaming_content)
            next(chunks)  # the server holds this chunk and never asks for the next: a client that stopped reading
            assert wait_until(lambda: get_watchdog(get_hub()).slow_clients >= 1)
            response.close()
            assert closed("slow_client") == slow + 1
            assert open_gauge() == is_open
        finally:
            server.close()
            peer.close()


@pytest.mark.parametrize(
    ("query", "status"),
    [("", 400), ("?channel=nope", 403), ("?channel=chat:a&lastEventId=x", 400)],
)
def test_refused_streams_are_counted_by_status(client, query, status):
    before = value("django_realtime_connections_refused_total", transport="sse", status=str(status))
    opened = value("django_realtime_connections_opened_total", transport="sse")
    assert client.get(f"/events/{query}").status_code == status
    assert value("django_realtime_connections_refused_total", transport="sse", status=str(status)) == before + 1
    assert value("django_realtime_connections_opened_total", transport="sse") == opened


def test_a_stream_past_max_streams_is_counted_refused_with_503(client):
    with realtime(MAX_STREAMS=1):
        before = value("django_realtime_connections_refused_total", transport="sse", status="503")
        first = client.get("/events/?channel=chat:a")
        assert client.get("/events/?channel=chat:a").status_code == 503
        assert value("django_realtime_connections_refused_total", transport="sse", status="503") == before + 1
        first.close()


def test_a_reset_sent_to_a_stream_is_counted_by_reason(client):
    with realtime():
        before = value("django_realtime_resets_sent_total", reason="unknown")
        event = publish("chat:a", 1)
        response = client.get(f"/events/?channel=chat:a&lastEventId={event.id + 1000}")
        chunks = iter(response.streaming_content)
        body = next(chunks) + next(chunks)
        assert b"event: reset" in body
        response.close()
        assert value("django_realtime_resets_sent_total", reason="unknown") == before + 1


# The view ----------------------------------------------------------------------------


def test_the_view_is_refused_to_anonymous_and_other_users_and_wrong_tokens(client):
    with realtime(METRICS_TOKEN=TOKEN):
        response, text = scrape(client)
        assert response.status_code == 403
        assert "django_realtime_" not in text
        assert scrape(client, HTTP_AUTHORIZATION="Bearer wrong-token-of-the-right-size")[0].status_code == 403
        assert scrape(client, HTTP_AUTHORIZATION=f"Basic {TOKEN}")[0].status_code == 403
        client.force_login(User.objects.create_user("someone", password="pw"))
        assert scrape(client)[0].status_code == 403


def test_without_a_token_setting_no_bearer_token_opens_the_view(client):
    assert scrape(client, HTTP_AUTHORIZATION="Bearer ")[0].status_code == 403
    assert scrape(client, HTTP_AUTHORIZATION="Bearer None")[0].status_code == 403


def test_the_view_serves_staff_users_and_the_token_in_prometheus_format(client):
    with realtime(METRICS_TOKEN=TOKEN):
        response, text = scrape(client, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/plain; version=")
        assert "django_realtime_connections_open" in text
        names = {family.name for family in text_string_to_metric_families(text)}
        assert "django_realtime_events_published" in names
        client.force_login(User.objects.create_user("boss", password="pw", is_staff=True))
        assert scrape(client)[0].status_code == 200


def test_with_metrics_off_nothing_is_counted_and_the_view_says_so(client):
    with realtime(METRICS=False):
        assert metrics.active() is None
        before = value("django_realtime_events_published_total", path="publish")
        publish("chat:a", 1)
        assert value("django_realtime_events_published_total", path="publish") == before
        client.force_login(User.objects.create_user("boss", password="pw", is_staff=True))
        assert scrape(client)[0].status_code == 404
    assert metrics.active() is not None


def test_a_bad_token_setting_is_refused_clearly():
    for token in ("short", "has a space in it here", 12345678901234567):
        with realtime(METRICS_TOKEN=token):
            assert realtime_check_ids() == ["django_realtime.E003"]


def test_django_prometheus_metrics_view_shows_them_too():
    from django_prometheus.exports import ExportToDjangoView

    publish("chat:a", 1)
    text = ExportToDjangoView(RequestFactory().get("/metrics")).content.decode()
    assert "django_realtime_events_published_total" in text
    assert "django_realtime_connections_open" in text


# Checks -------------------------------------------------------------------------------


def deploy_ids():
    return realtime_check_ids(deploy=True)


def test_metrics_under_several_gunicorn_workers_without_multiprocess_dir_is_a_deploy_warning(monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    monkeypatch.setenv("GUNICORN_CMD_ARGS", "-k gevent -w 4")
    assert deploy_ids() == ["django_realtime.W010"]
    monkeypatch.setenv("GUNICORN_CMD_ARGS", "-k gevent -w 1")
    assert deploy_ids() == []
    monkeypatch.setenv("GUNICORN_CMD_ARGS", "-k gevent")
    assert deploy_ids() == []  # the command line decides: the worker's own warning tells
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    assert deploy_ids() == ["django_realtime.W010"]
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/tmp")
    assert deploy_ids() == []
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    with realtime(METRICS=False):
        assert deploy_ids() == []


# Without prometheus_client ----------------------------------------------------------------

WITHOUT = r"""
import importlib.abc, json, os, sys

class NoPrometheus(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "prometheus_client" or name.startswith("prometheus_client."):
            raise ImportError("No module named 'prometheus_client' (blocked by the test)")
        return None

sys.meta_path.insert(0, NoPrometheus())
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
os.environ["REALTIME_JSON"] = json.dumps({"METRICS": sys.argv[1] == "on" or None})
import django
django.setup()

from django.core.checks import run_checks
from django.core.management import call_command
from django.test import Client
from django.test.utils import setup_test_environment
setup_test_environment()
from django_realtime import metrics, publish
call_command("migrate", verbosity=0)
out = {"active": None, "checks": sorted(m.id for m in run_checks() if m.id.startswith("django_realtime."))}
out["active"] = metrics.active() is not None
publish("chat:a", {"n": 1})
client = Client()
response = client.get("/events/?channel=chat:a&lastEventId=0")
chunks = iter(response.streaming_content)
body = next(chunks) + next(chunks)
response.close()
out["delivered"] = b'"n":1' in body
out["view"] = client.get("/events/metrics/").status_code
out["imported"] = "prometheus_client" in sys.modules
print(json.dumps(out))
"""


@pytest.mark.parametrize("setting", ["default", "on"])
def test_without_prometheus_client_everything_works_and_metrics_are_off(tmp_path, setting):
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "TMPDIR": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT, setting], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["active"] is False
    assert out["delivered"] is True
    assert out["view"] == 403  # refused before it says whether metrics are on
    assert out["imported"] is False
    assert out["checks"] == (["django_realtime.E010"] if setting == "on" else [])
    # Off by default without it, quietly; asked for, it says so (once) beside the check.
    assert ("prometheus_client is not installed" in result.stderr) == (setting == "on")


def test_batches_noted_on_many_threads_while_the_ticker_flushes_are_all_counted():
    made = metrics.active()
    assert made is not None
    before = value("django_realtime_events_delivered_total", transport="websocket")
    done = threading.Event()

    def write():
        for _ in range(5000):
            metrics.sent(metrics.WEBSOCKET, 1, 10)

    def flush():
        while not done.is_set():
            made.flush()

    flusher = threading.Thread(target=flush)
    flusher.start()
    threads = [threading.Thread(target=write) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    flusher.join()
    metrics.flush()
    assert value("django_realtime_events_delivered_total", transport="websocket") == before + 20000
    assert value("django_realtime_bytes_written_total", transport="websocket") >= 200000
