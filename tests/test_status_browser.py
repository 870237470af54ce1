"""The admin's status page in Chromium: it updates itself over SSE, nothing to reload."""

from __future__ import annotations

import json

import pytest

from tests.support.browser import ARTIFACTS, launched_chromium
from tests.support.servers import EventStream, manage, project_env, publish_lines, running_server

pytestmark = [pytest.mark.browser, pytest.mark.server]

PASSWORD = "status-page-password"


@pytest.fixture
def chromium():
    yield from launched_chromium()


def test_the_status_page_updates_itself_as_events_and_connections_come(tmp_path, chromium):
    env = project_env(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    env["REALTIME_JSON"] = json.dumps({"METRICS": True})
    manage(env, "migrate", "--verbosity", "0")
    manage(
        {**env, "DJANGO_SUPERUSER_PASSWORD": PASSWORD},
        "createsuperuser",
        "--noinput",
        "--username",
        "boss",
        "--email",
        "boss@example.com",
    )
    with running_server("gunicorn-gevent", env, tmp_path / "server.log") as server:
        page = chromium.new_page(viewport={"width": 1100, "height": 1000})
        page.goto(f"{server.url}/admin/login/?next=/admin/django_realtime/event/status/")
        page.fill("#id_username", "boss")
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_selector("#realtime-state:has-text('Live:')", timeout=15000)
        with EventStream(server.events_url(), params=[("channel", "chat:status")]):
            publish_lines(env, "chat:status", [1, 2, 3])
            publish_lines(env, "chat:other", [1])
            # No reload: the next snapshots bring the channel and the stream.
            # Both channels: a snapshot taken between the two publishes holds only the first.
            page.wait_for_selector("#realtime-busiest td:has-text('chat:other')", timeout=15000)
            cells = page.locator("#realtime-busiest td").all_inner_texts()
            assert cells[:4] == ["chat:status", "3", "chat:other", "1"]
            page.wait_for_function(
                "document.querySelector('#realtime-processes').innerText.includes('\\t1\\t')", timeout=15000
            )
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "status-page.png"), full_page=True)
