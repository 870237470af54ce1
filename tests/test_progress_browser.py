"""The demo's live progress bar in headless Chromium: a task in another process, a reload mid-way, the end.

The demo's "Generate report" button starts ``manage.py generate_report`` in
a process of its own (testproject/chat/reports.py); its steps take
``DEMO_REPORT_STEP_SECONDS``.  The page follows the task with htmx's SSE
extension and ``{% progress_bar %}``: no JavaScript of ours.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from typing import Any

import pytest

from tests.support.browser import Pages, launched_chromium
from tests.support.servers import Server, manage, project_env

pytestmark = [pytest.mark.browser, pytest.mark.server]

#: Ten steps of this long: long enough to reload mid-way, short enough for a quick test.
STEP_SECONDS = "0.3"
#: In a page: the bar's state and percent, as its HTML says them.
BAR = (
    "() => { const e = document.querySelector('.realtime-progress');"
    " return e && [e.dataset.state, parseFloat(e.dataset.percent || '0')] }"
)


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    path = tmp_path_factory.mktemp("progress") / "db.sqlite3"
    environment = {**project_env(f"sqlite:///{path}"), "DEMO_REPORT_STEP_SECONDS": STEP_SECONDS}
    manage(environment, "migrate", "--verbosity", "0")
    return environment


@pytest.fixture(scope="module")
def servers(env, tmp_path_factory) -> Iterator[Callable[[str], Server]]:
    """Return the demo's server of a kind, started on first use; stop them all after the module."""
    started: dict[str, Server] = {}

    def server(kind: str) -> Server:
        if kind not in started:
            started[kind] = Server(kind, env, tmp_path_factory.mktemp(kind) / "server.log")
            started[kind].start()
        return started[kind]

    yield server
    for demo in started.values():
        demo.stop()
        print(f"--- {demo.kind} ---\n{demo.log()[-4000:]}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launched_chromium()


@pytest.fixture
def open_page(browser) -> Iterator[Callable[[str], Any]]:
    pages = Pages(browser)
    yield pages.open
    pages.close()


def wait_for(page: Any, condition: str, timeout: float = 15.0) -> tuple[str, float]:
    """Wait until *condition*, JavaScript on ``s``, the bar's ``[state, percent]``, holds; return that pair."""
    page.wait_for_function(f"() => {{ const s = ({BAR})(); return s && ({condition}) }}", timeout=timeout * 1000)
    return tuple(page.evaluate(BAR))


def served_state(html: str) -> tuple[str, float, bool]:
    """Return the bar's state and percent in the page's HTML as the server sent it, and whether it follows a stream."""
    match = re.search(r'class="realtime-progress" data-state="(\w+)"(?: data-percent="([\d.]+)")?', html)
    assert match, html
    return match.group(1), float(match.group(2) or 0), "sse-connect=" in html


@pytest.mark.parametrize("kind", ["runserver", "gunicorn-gevent"], ids=["asgi", "gevent"])
def test_the_bar_moves_survives_a_reload_mid_way_and_shows_the_result(open_page, servers, kind):
    server = servers(kind)
    page = open_page(f"{server.url}/report/")
    page.click("#generate")
    page.wait_for_url(re.compile(r"/report/[0-9a-f]{32}/$"))
    before = wait_for(page, "s[1] >= 20")
    assert before[0] == "running"

    # A reload shows, in the HTML the server renders, the state the task has reached, and follows on from it.
    response = page.reload()
    state, percent, follows = served_state(response.text())
    assert state == "running" and before[1] <= percent < 100 and follows
    page.evaluate("document.body.addEventListener('htmx:sseClose', (e) => { window.closedBy = e.detail.type })")
    wait_for(page, f"s[1] >= {percent + 10}")
    assert wait_for(page, "s[0] === 'done'")[1] == 100.0
    assert page.text_content(".realtime-progress-result").strip() == "12340 rows counted."
    assert page.locator(".realtime-progress-result strong").count() == 1  # the result's HTML, as the task made it
    assert page.evaluate("window.closedBy") == "message"  # the end closed the stream (sse-close)

    # Ended: the server renders the result, and the page follows nothing any more.
    state, percent, follows = served_state(page.reload().text())
    assert (state, percent, follows) == ("done", 100.0, False)


def test_a_failing_task_shows_its_error_and_how_far_it_got_and_only_its_page_may_follow_it(open_page, servers):
    server = servers("runserver")  # ASGI (daphne)
    page = open_page(f"{server.url}/report/")
    page.click("#generate-failing")
    page.wait_for_url(re.compile(r"/report/[0-9a-f]{32}/$"))
    stream_url = page.get_attribute("[sse-connect]", "sse-connect")
    assert stream_url.startswith("/events/progress/")

    # Another visitor (another browser, another session) gets neither the page nor the stream.
    stranger = open_page(f"{server.url}/report/")
    assert stranger.request.get(f"{server.url}{page.url.split(server.url)[1]}").status == 404
    assert stranger.request.get(f"{server.url}{stream_url}").status == 403

    state, percent = wait_for(page, "s[0] === 'failed'")
    assert percent == 50.0  # the fraction of the last report before the failure
    assert page.text_content("[role=alert]").strip() == "The data source went away half-way through."
    state, percent, follows = served_state(page.reload().text())
    assert (state, percent, follows) == ("failed", 50.0, False)


def ended_tasks(env: dict[str, str]) -> int:
    """Return how many tasks have ended, from the demo's database."""
    with closing(sqlite3.connect(env["DATABASE_URL"].removeprefix("sqlite:///"))) as database:
        query = "SELECT count(*) FROM django_realtime_event WHERE event = 'progress.end'"
        return database.execute(query).fetchone()[0]


def test_a_task_that_ends_while_the_server_is_down_shows_its_result_once_the_page_reconnects(open_page, servers, env):
    """The page resumes from the last event it got, so the end, published while no server ran, reaches it."""
    server = servers("gunicorn-gevent")  # the quickest to restart
    page = open_page(f"{server.url}/report/")
    ended = ended_tasks(env)
    page.click("#generate")
    page.wait_for_url(re.compile(r"/report/[0-9a-f]{32}/$"))
    before = wait_for(page, "s[1] >= 10")
    server.kill()
    deadline = time.monotonic() + 30
    while ended_tasks(env) == ended:  # the task goes on in its own process, and ends
        assert time.monotonic() < deadline, "the task did not end"
        time.sleep(0.1)
    assert tuple(page.evaluate(BAR))[1] < 100.0 and before[0] == "running"
    server.start()
    assert wait_for(page, "s[0] === 'done'", timeout=30)[1] == 100.0
    assert page.text_content(".realtime-progress-result").strip() == "12340 rows counted."
