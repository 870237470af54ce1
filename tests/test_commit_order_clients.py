"""Exactly once across a reconnect with a transaction held open, for the clients people use besides realtime.js.

Each test holds a publishing transaction open on a channel (the busy
site's slow request), publishes later events on it in autocommit, and
checks that the client gets those at once and not the held one; then the
client loses its connection, the held transaction commits, and the client
resumes from the cursor it last got: it must get the held event once, and
nothing it had.  The clients:

* a plain ``EventSource`` in Chromium, with no realtime.js: the page's
  stream goes through a TCP proxy that cuts it, and the browser reconnects by
  itself, sending the last ``id:`` as ``Last-Event-ID``;
* the npm ``eventsource`` package in Node.js (pinned by
  tests/js/eventsource/package-lock.json, installed with ``npm ci`` when its
  node_modules is missing), cut and resumed the same way;
* ``manage.py tail_events``, stopped and started again with ``--since`` the
  last cursor it printed.

The site (gunicorn with gevent and daphne, on PostgreSQL and on MariaDB) and
the held transactions are tests/commit_order_site.py's, as in
tests/test_commit_order_servers.py.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from django_realtime.cursor import Cursor
from tests.commit_order_site import ARRIVAL, publisher_fixture, site_fixture  # noqa: F401  (fixtures)
from tests.support.browser import launched_chromium
from tests.support.servers import CommandProcess
from tests.support.services import unavailable
from tests.support.tcp_proxy import TCPProxy
from tests.test_js import node

pytestmark = [pytest.mark.server, pytest.mark.postgres]

#: Seconds a client may take to reconnect: the demo's RETRY (3 s, sent as ``retry:``) and the arrival itself.
RECONNECT = 3.0 + ARRIVAL
#: Seconds of silence that stand for "and nothing more".
QUIET = 1.0
SERVER_KINDS = ["gunicorn-gevent", "daphne"]
EVENTSOURCE_PACKAGE = Path(__file__).resolve().parent / "js" / "eventsource"
#: A page of the server's origin that opens nothing by itself, so that the test's EventSource is same-origin.
BLANK_PAGE = "<!doctype html><title>EventSource</title>"


def new_channel() -> str:
    return f"chat:clients-{uuid.uuid4().hex[:8]}"


def ids(cursors: list[str]) -> list[int]:
    """Return the event ids the cursor texts of events name."""
    return [Cursor.event_id(text) for text in cursors]


def wait_until(check: Callable[[], Any], what: str, timeout: float) -> Any:
    """Return check()'s first true value, polling it for at most *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout}s")
        time.sleep(0.05)
    return value


def proxy_to(server) -> TCPProxy:
    """Return a TCP proxy to *server*: the client's origin, which the test cuts and restores."""
    parts = urlsplit(server.url)
    return TCPProxy((parts.hostname, parts.port))


def last_event_ids_sent(proxy: TCPProxy) -> list[str | None]:
    """Return the ``Last-Event-ID`` of each stream request that went through *proxy*, in order (None: none)."""
    sent = []
    for head in proxy.heads:
        request, *fields = head.decode("latin-1").split("\r\n")
        if request.startswith("GET /events/"):
            values = [field.split(":", 1)[1].strip() for field in fields if field.lower().startswith("last-event-id:")]
            sent.append(values[0] if values else None)
    return sent


def check_resumed_exactly_once(first: list[str], resumed: list[str], held: int, later: list[int], after: int) -> None:
    """Check a cut-and-resumed client's events: the later ones, then the held one once, then the next."""
    assert ids(first) == later, "the events committed after the held one drew its id, at once"
    assert not Cursor.parse(first[-1]).covers(held), f"the last cursor before the cut, {first[-1]}, covers {held}"
    assert ids(resumed) == [held, after], "on resume: the held event once, nothing the client had, then the next"
    assert resumed[0].startswith(f"{held}@"), "the held event's cursor names it, below the top"
    assert Cursor.parse(resumed[0]).dominates(Cursor.parse(first[-1])), "its cursor covers all the client had"


# Chromium ------------------------------------------------------------------

#: Open a plain EventSource on the URL given; keep, on window, the id of each message and the opens and errors.
OPEN_EVENTSOURCE = """(url) => {
    window.got = []; window.opens = 0; window.errors = 0; window.resets = [];
    const source = new EventSource(url);
    source.onopen = () => { window.opens += 1; };
    source.onerror = () => { window.errors += 1; };
    source.onmessage = (event) => { window.got.push(event.lastEventId); };
    source.addEventListener("reset", (event) => { window.resets.push(event.data); });
    window.source = source;
}"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launched_chromium()


@pytest.mark.browser
@pytest.mark.parametrize("kind", SERVER_KINDS)
def test_a_browser_eventsource_reconnects_by_itself_and_gets_the_held_event_once(site, publisher, browser, kind):
    _, servers = site
    channel = new_channel()
    with proxy_to(servers[kind]) as proxy:
        origin = f"http://127.0.0.1:{proxy.port}"
        context = browser.new_context()
        try:
            context.route(f"{origin}/blank", lambda route: route.fulfill(content_type="text/html", body=BLANK_PAGE))
            page = context.new_page()
            page.goto(f"{origin}/blank")
            page.evaluate(OPEN_EVENTSOURCE, f"/events/?channel={channel}")
            wait_until(lambda: page.evaluate("window.opens") == 1, "open", ARRIVAL)

            held = publisher.begin("b", channel)
            later = [publisher.publish(channel), publisher.publish(channel)]
            first = wait_until(lambda: got if len(got := page.evaluate("window.got")) >= 2 else None, "events", ARRIVAL)

            proxy.refuse()  # the connection drops; the browser retries after retry: (3 s)
            wait_until(lambda: page.evaluate("window.errors") >= 1, "error event", ARRIVAL)
            assert page.evaluate("window.source.readyState") == 0, "the EventSource is reconnecting, not closed"
            publisher.end("b")
            proxy.forward()

            wait_until(lambda: page.evaluate("window.opens") == 2, "reconnect", RECONNECT)
            wait_until(lambda: len(page.evaluate("window.got")) >= 3, "held event", ARRIVAL)
            after = publisher.publish(channel)
            wait_until(lambda: len(page.evaluate("window.got")) >= 4, "next event", ARRIVAL)
            page.wait_for_timeout(QUIET * 1000)
            got = page.evaluate("window.got")
            check_resumed_exactly_once(got[:2], got[2:], held, later, after)
            assert page.evaluate("window.resets") == []
            assert first == got[:2]
            sent = last_event_ids_sent(proxy)
            assert len(sent) == 2, f"one stream request, then one reconnect: {sent}"
            assert sent[1] == got[1], "the browser itself sent the last id it got as Last-Event-ID"
        finally:
            context.close()


# The npm eventsource package ------------------------------------------------


def eventsource_client() -> list[str]:
    """Return the command line that runs tests/js/eventsource/client.mjs, installing the package if need be."""
    command = [node(), str(EVENTSOURCE_PACKAGE / "client.mjs")]
    if (EVENTSOURCE_PACKAGE / "node_modules" / "eventsource" / "package.json").exists():
        return command
    npm = shutil.which("npm")
    if npm is None:
        unavailable("npm is not installed", remedy="install npm (apt-get install npm) to test the eventsource package")
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=EVENTSOURCE_PACKAGE,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"npm ci in {EVENTSOURCE_PACKAGE} failed:\n{result.stdout}\n{result.stderr}"
    return command


class NodeEventSource:
    """client.mjs in a process of its own: what the package's EventSource did, one JSON record a line."""

    def __init__(self, command: list[str], url: str) -> None:
        self.process = subprocess.Popen(
            [*command, url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.records: list[dict[str, Any]] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.records.append(json.loads(line))

    def of(self, kind: str) -> list[dict[str, Any]]:
        if self.process.poll() is not None:
            raise AssertionError(f"client.mjs exited with {self.process.returncode}:\n{self.process.stderr.read()}")  # type: ignore[union-attr]
        return [record for record in list(self.records) if record["type"] == kind]

    def messages(self) -> list[str]:
        return [record["id"] for record in self.of("message")]

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.reader.join(5)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@pytest.mark.parametrize("kind", SERVER_KINDS)
def test_the_npm_eventsource_package_reconnects_by_itself_and_gets_the_held_event_once(site, publisher, kind):
    _, servers = site
    command = eventsource_client()
    channel = new_channel()
    with proxy_to(servers[kind]) as proxy:
        client = NodeEventSource(command, f"http://127.0.0.1:{proxy.port}/events/?channel={channel}")
        try:
            wait_until(lambda: len(client.of("open")) == 1, "open", ARRIVAL)
            held = publisher.begin("n", channel)
            later = [publisher.publish(channel), publisher.publish(channel)]
            first = wait_until(lambda: got if len(got := client.messages()) >= 2 else None, "events", ARRIVAL)

            proxy.refuse()
            error = wait_until(lambda: client.of("error"), "error event", ARRIVAL)[0]
            assert error["readyState"] == 0, f"the EventSource is reconnecting, not closed: {error}"
            publisher.end("n")
            proxy.forward()

            wait_until(lambda: len(client.of("open")) == 2, "reconnect", RECONNECT)
            wait_until(lambda: len(client.messages()) >= 3, "held event", ARRIVAL)
            after = publisher.publish(channel)
            wait_until(lambda: len(client.messages()) >= 4, "next event", ARRIVAL)
            time.sleep(QUIET)
            got = client.messages()
            check_resumed_exactly_once(got[:2], got[2:], held, later, after)
            assert first == got[:2]
            assert client.of("reset") == []
            sent = last_event_ids_sent(proxy)
            assert len(sent) == 2, f"one stream request, then one reconnect: {sent}"
            assert sent[1] == got[1], "the package itself sent the last id it got as Last-Event-ID"
        finally:
            client.close()


# manage.py tail_events --------------------------------------------------------


class Tail(CommandProcess):
    """``manage.py tail_events CHANNEL --since CURSOR``, which prints ``CURSOR CHANNEL EVENT DATA`` lines."""

    def __init__(self, env: dict[str, str], channel: str, since: str) -> None:
        super().__init__(env, "tail_events", channel, "--since", since)
        self.channel = channel

    def next(self, timeout: float = ARRIVAL) -> str:
        """Return the cursor text of the next event printed."""
        cursor, channel, _ = self.read_line(timeout=timeout)[0].split(" ", 2)
        assert channel == self.channel
        return cursor

    def nothing_more(self) -> None:
        with pytest.raises(AssertionError, match="printed no line"):
            self.read_line(timeout=QUIET)

    def close(self, *, check: bool = True) -> None:
        """Stop it as a person does, with Ctrl-C, after which it exits cleanly."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        super().close(check=check)


def test_tail_events_resumed_from_the_cursor_it_printed_gets_the_held_event_once(site, publisher):
    env, _ = site
    channel = new_channel()
    start = publisher.publish(channel)
    with Tail(env, channel, str(start - 1)) as tail:
        assert ids([tail.next()]) == [start], "the tail runs: it printed the event it started before"
        held = publisher.begin("t", channel)
        later = [publisher.publish(channel), publisher.publish(channel)]
        first = [tail.next(), tail.next()]
        tail.nothing_more()
    publisher.end("t")
    with Tail(env, channel, first[-1]) as tail:
        resumed = [tail.next()]
        tail.nothing_more()
        after = publisher.publish(channel)
        resumed.append(tail.next())
        tail.nothing_more()
    check_resumed_exactly_once(first, resumed, held, later, after)
