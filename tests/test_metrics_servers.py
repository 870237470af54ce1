"""Metrics end to end: gunicorn's workers add up (multiprocess mode), and daphne counts both transports."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from django_realtime import metrics
from django_realtime.cursor import Cursor
from tests.support.servers import EventStream, manage, project_env, publish_event, running_server

pytestmark = [pytest.mark.server]

TOKEN = "scraper-token-0123456789"


def metrics_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = project_env(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    env["REALTIME_JSON"] = json.dumps({"METRICS": True, "METRICS_TOKEN": TOKEN})
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(extra)
    manage(env, "migrate", "--verbosity", "0")
    return env


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Return every django_realtime sample of the metrics view: {(name, labels): value}."""
    response = httpx.get(f"{url}/events/metrics/", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert response.status_code == 200, response.text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name.startswith("django_realtime_")
    }


def sample(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_for(url: str, condition, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(url)
        if condition(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.2)


def open_by_worker(directory: Path) -> dict[int, float]:
    """Return each gunicorn worker's own connections_open{transport="sse"}, read from its multiprocess file."""
    from prometheus_client.mmap_dict import MmapedDict

    found = {}
    for path in directory.glob("gauge_livesum_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):
            name, _, labels, _ = json.loads(key)
            if name == "django_realtime_connections_open" and labels == {"transport": "sse"}:
                found[pid] = value
    return found


@pytest.mark.parametrize("kind", ["gunicorn-gevent", "gunicorn-realtime"])
def test_gunicorns_workers_add_up_in_multiprocess_mode(tmp_path, monkeypatch, kind):
    directory = tmp_path / "prometheus"
    directory.mkdir()
    env = metrics_env(tmp_path, PROMETHEUS_MULTIPROC_DIR=str(directory))
    with running_server(kind, env, tmp_path / "server.log", ["-w", "2"]) as server:
        streams: list[EventStream] = []
        try:
            # Streams until both workers hold some: the kernel hands each connection to either.
            while len([v for v in open_by_worker(directory).values() if v]) < 2:
                assert len(streams) < 40, f"one worker took every stream: {open_by_worker(directory)}"
                stream = EventStream(server.events_url(), params=[("channel", "chat:metrics")])
                stream.open()
                streams.append(stream)
                time.sleep(0.05)
            count = len(streams)
            published = publish_event(env, "chat:metrics", {"n": 1})
            for stream in streams:
                assert str(Cursor.event_id(stream.next().id)) == published
            per_worker = open_by_worker(directory)
            samples = wait_for(
                server.url,
                lambda s: sample(s, "django_realtime_events_delivered_total", transport="sse") == count,
            )
            # Whichever worker answered the scrape, the figures are both workers' together.
            assert sample(samples, "django_realtime_connections_open", transport="sse") == count
            assert sum(per_worker.values()) == count
            # The status page's connections by process, read from the same files.
            monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
            by_process = metrics.connections_by_process()
            assert {int(pid): counts["sse"] for pid, counts in by_process.items()} == {
                pid: value for pid, value in per_worker.items() if value
            }
            monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
            assert sample(samples, "django_realtime_connections_opened_total", transport="sse") == count
            assert sample(samples, "django_realtime_events_delivered_total", transport="sse") == count
            assert sample(samples, "django_realtime_hub_lag_seconds_count") >= 1
        finally:
            for stream in streams:
                stream.close()
        # Each worker notices its closed streams at its next keepalive (REALTIME_KEEPALIVE is 1 s).
        samples = wait_for(server.url, lambda s: sample(s, "django_realtime_connections_open", transport="sse") == 0)
        assert sample(samples, "django_realtime_connections_open", transport="sse") == 0
        assert (
            sample(samples, "django_realtime_connections_closed_total", transport="sse", reason="client_gone") == count
        )


def test_daphne_counts_sse_and_websocket_connections_and_deliveries(tmp_path):
    env = metrics_env(tmp_path)
    with running_server("daphne", env, tmp_path / "server.log") as server:
        ws_url = server.url.replace("http://", "ws://") + "/ws/"
        with EventStream(server.events_url(), params=[("channel", "chat:both")]) as stream:
            with connect(ws_url, origin=server.url, open_timeout=10) as ws:
                ws.send(json.dumps({"type": "subscribe", "channel": "chat:both"}))
                assert json.loads(ws.recv(timeout=10))["type"] == "subscribed"
                samples = scrape(server.url)
                assert sample(samples, "django_realtime_connections_open", transport="sse") == 1
                assert sample(samples, "django_realtime_connections_open", transport="websocket") == 1
                publish_event(env, "chat:both", {"n": 1})
                assert json.loads(stream.next().data) == {"n": 1}
                assert json.loads(ws.recv(timeout=10))["type"] == "event"
                samples = wait_for(
                    server.url,
                    lambda s: (
                        sample(s, "django_realtime_events_delivered_total", transport="websocket") == 1
                        and sample(s, "django_realtime_events_delivered_total", transport="sse") == 1
                    ),
                )
                assert sample(samples, "django_realtime_events_delivered_total", transport="websocket") == 1
                assert sample(samples, "django_realtime_events_delivered_total", transport="sse") == 1
                assert sample(samples, "django_realtime_bytes_written_total", transport="websocket") > 10
        samples = wait_for(
            server.url,
            lambda s: (
                sample(s, "django_realtime_connections_open", transport="sse") == 0
                and sample(s, "django_realtime_connections_open", transport="websocket") == 0
            ),
        )
        for transport in ("sse", "websocket"):
            assert sample(samples, "django_realtime_connections_open", transport=transport) == 0
            reason = "client_gone"
            assert sample(samples, "django_realtime_connections_closed_total", transport=transport, reason=reason) == 1
        anonymous = httpx.get(f"{server.url}/events/metrics/", timeout=10)
        assert anonymous.status_code == 403
