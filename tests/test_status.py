"""The admin's live status page: for staff only, and its stream sends snapshots of the deployment."""

import json

import pytest
from django.contrib.auth.models import User

from django_realtime import publish
from django_realtime.sse import status as status_stream
from django_realtime.status import snapshot

pytestmark = pytest.mark.django_db(transaction=True)

PAGE = "/admin/django_realtime/event/status/"
STREAM = "/events/status/"


def status_events(response, count):
    """Return the first *count* ``status`` events of a status stream, decoded."""
    found, text = [], ""
    for chunk in response.streaming_content:
        text += chunk.decode()
        while "\n\n" in text:
            block, text = text.split("\n\n", 1)
            lines = block.splitlines()
            if "event: status" in lines:
                found.append(json.loads("".join(line[len("data: ") :] for line in lines if line.startswith("data: "))))
                if len(found) == count:
                    response.close()
                    return found
    raise AssertionError("the stream ended")


def test_the_page_and_its_stream_are_for_staff_only(client):
    for url in (PAGE, STREAM):
        response = client.get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"], url
    client.force_login(User.objects.create_user("someone", password="pw"))
    for url in (PAGE, STREAM):
        response = client.get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"], url


def test_the_page_follows_its_stream(client):
    client.force_login(User.objects.create_user("boss", password="pw", is_staff=True))
    response = client.get(PAGE)
    assert response.status_code == 200
    text = response.content.decode()
    assert '"/events/status/"' in text and "new EventSource(url)" in text


def test_the_stream_sends_the_deployments_figures_and_rates_between_two(client, monkeypatch):
    monkeypatch.setattr(status_stream, "STATUS_INTERVAL", 0.2)
    for _ in range(3):
        publish("chat:busy", 1)
    publish("chat:b-quiet", 1)
    client.force_login(User.objects.create_user("boss", password="pw", is_staff=True))
    first, second = status_events(client.get(STREAM), 2)
    assert first["events_per_second"] == pytest.approx(0.4)
    assert first["busiest_channels"][:2] == [
        {"channel": "chat:busy", "events": 3},
        {"channel": "chat:b-quiet", "events": 1},
    ]
    assert first["hub"]["healthy"] in (True, False)
    assert first["metrics"]["published"] >= 4
    assert str(first["pid"]) in json.dumps(first)
    assert "rates" not in first
    assert set(second["rates"]) == {"delivered_per_second", "lag_mean_seconds"}


def test_a_snapshot_counts_the_connections_of_this_process(client):
    pid = str(snapshot()["pid"])
    before = snapshot()["metrics"]["by_process"][pid]["sse"]
    response = client.get("/events/?channel=chat:a")
    next(iter(response.streaming_content))
    assert snapshot()["metrics"]["by_process"][pid]["sse"] == before + 1
    response.close()
    assert snapshot()["metrics"]["by_process"][pid]["sse"] == before
