"""The demo chat and realtime.js in a real browser: headless Chromium driven by Playwright.

Three servers of the demo share one SQLite database, as a scaled-out
deployment shares its database: ``primary`` (runserver, the README's demo
command; restarted by a test), ``secondary`` (runserver) and, for the
fallback, ``wsgi`` (gunicorn with gevent, which serves no WebSocket).  Each
test uses rooms of its own and browser contexts of its own, one per person,
as separate browsers would be.  Events from "another process" are published
with ``manage.py publish_event``.  See tests/browser_support.py.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser_support import (
    ARTIFACTS,
    CHROMIUM_ARGS,
    MESSAGE_TEXTS,
    NICK_KEY,
    NOTICES,
    PEOPLE,
    DemoServer,
    chromium_path,
    require_browser,
    wait_for_state,
    wait_for_value,
)
from tests.servers import manage, project_env, publish_event

pytestmark = [pytest.mark.browser, pytest.mark.server]

#: The presence heartbeat of the servers under test, in seconds: pages leave 2.5 times this after their last one.
PRESENCE_INTERVAL = 1.5
REALTIME_JS = Path(__file__).resolve().parent.parent / "django_realtime" / "static" / "django_realtime" / "realtime.js"
TRANSPORTS = [pytest.param("ws", id="websocket"), pytest.param("sse", id="sse")]


def new_room() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


# Fixtures ----------------------------------------------------------------


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    """The environment of the servers and commands: a migrated SQLite database of the module's own."""
    path = tmp_path_factory.mktemp("browser") / "db.sqlite3"
    environment = {**project_env(f"sqlite:///{path}"), "CHAT_PRESENCE_INTERVAL": str(PRESENCE_INTERVAL)}
    manage(environment, "migrate", "--verbosity", "0")
    return environment


#: The servers running, for the log excerpts a failing test shows.
SERVERS: list[DemoServer] = []


def _server(kind: str, env: dict[str, str], tmp_path_factory, name: str) -> Iterator[DemoServer]:
    server = DemoServer(kind, env, tmp_path_factory.mktemp(name) / "server.log")
    server.start()
    SERVERS.append(server)
    try:
        yield server
    finally:
        SERVERS.remove(server)
        server.stop()


@pytest.fixture(autouse=True)
def _server_output():
    """Print what the servers logged during the test: pytest shows it if the test fails."""
    starts = {id(server): len(server.log()) for server in SERVERS}
    yield
    for server in SERVERS:
        print(f"--- {server.kind} on {server.url} ---\n{server.log()[starts.get(id(server), 0) :][-4000:]}")


@pytest.fixture(scope="module")
def primary(env, tmp_path_factory) -> Iterator[DemoServer]:
    yield from _server("runserver", env, tmp_path_factory, "primary")


@pytest.fixture(scope="module")
def secondary(env, tmp_path_factory) -> Iterator[DemoServer]:
    yield from _server("runserver", env, tmp_path_factory, "secondary")


@pytest.fixture(scope="module")
def wsgi(env, tmp_path_factory) -> Iterator[DemoServer]:
    yield from _server("gunicorn-gevent", env, tmp_path_factory, "wsgi")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def open_page(browser) -> Iterator[Callable[..., Any]]:
    """Open a URL in a browser context of its own; fail the test on any uncaught page error."""
    contexts = []
    errors: list[str] = []
    console: list[str] = []

    def open_page(url: str, *, nick: str | None = None, viewport: tuple[int, int] = (1200, 760)) -> Any:
        context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
        contexts.append(context)
        if nick is not None:
            context.add_init_script(f"localStorage.setItem({json.dumps(NICK_KEY)}, {json.dumps(nick)})")
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.on("pageerror", lambda error: errors.append(f"{url}: {error}"))
        page.on("console", lambda message: console.append(f"{nick or url} {message.type}: {message.text}"))
        page.goto(url)
        return page

    yield open_page
    for context in contexts:
        context.close()
    print("--- browser console ---", *console, sep="\n")
    assert not errors, errors


def enter_room(open_page, server: DemoServer, room: str, nick: str, transport: str | None = None) -> Any:
    """Open *room* on *server* as *nick* and wait until its connection is live."""
    query = f"?transport={transport}" if transport else ""
    page = open_page(f"{server.url}/room/{room}/{query}", nick=nick)
    wait_for_state(page, "live")
    return page


def say(page: Any, text: str) -> None:
    """Send *text* from the page's composer and wait until the page shows it, as its newest message."""
    page.fill("#text", text)
    page.press("#text", "Enter")
    wait_for_value(page, f"() => ({MESSAGE_TEXTS})().at(-1) === {json.dumps(text)}", True)
    # The event can come back over the stream before the publish's own reply,
    # which is what clears the composer: wait for that too, briefly.
    wait_for_value(page, "() => document.querySelector('#text').value", "", timeout=5)


def expect_messages(page: Any, expected: list[str], timeout: float = 15.0) -> None:
    """Wait for exactly *expected*, then check that nothing else (a repeat, a late event) follows."""
    wait_for_value(page, MESSAGE_TEXTS, expected, timeout)
    page.wait_for_timeout(700)
    assert page.evaluate(MESSAGE_TEXTS) == expected


# Tests -------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_two_pages_in_one_room_exchange_messages(open_page, primary, transport):
    room = new_room()
    ann = enter_room(open_page, primary, room, "ann", transport)
    bob = enter_room(open_page, primary, room, "bob", transport)

    say(ann, "Hi Bob! Did my message arrive?")
    say(bob, "It did, live. Try closing my tab.")
    say(ann, "<b>Markup</b> stays plain text & so does <script>alert(1)</script>")
    expected = [
        "Hi Bob! Did my message arrive?",
        "It did, live. Try closing my tab.",
        "<b>Markup</b> stays plain text & so does <script>alert(1)</script>",
    ]

    for page in (ann, bob):
        expect_messages(page, expected)
        assert page.locator("#messages b, #messages script").count() == 0
    via = "WebSocket" if transport == "ws" else "SSE"
    assert ann.text_content("#status .via") == via
    if transport == "ws":
        wait_for_value(ann, PEOPLE, ["ann", "bob"])
        ARTIFACTS.mkdir(exist_ok=True)
        ann.screenshot(path=str(ARTIFACTS / "chat.png"))


def test_history_is_replayed_on_join(open_page, primary, env):
    room = new_room()
    history = ["first, from a shell", "second", "<img src=x onerror=alert(1)>"]
    for text in history:
        publish_event(env, f"chat:{room}", {"nick": "cron", "text": text})

    page = enter_room(open_page, primary, room, "ann")

    expect_messages(page, history)
    assert page.locator("#messages img").count() == 0
    assert page.is_hidden("#empty")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_page_whose_server_restarts_catches_up_without_duplicates_or_gaps(
    open_page, primary, secondary, env, transport
):
    room = new_room()
    ann = enter_room(open_page, primary, room, "ann", transport)  # primary will go down
    bob = enter_room(open_page, secondary, room, "bob", transport)
    say(ann, "one")
    expect_messages(bob, ["one"])
    say(bob, "two")
    expect_messages(ann, ["one", "two"])

    primary.kill()
    try:
        wait_for_state(ann, "reconnecting", timeout=10)
        # The others keep talking, through another server and from a shell.
        for text in ["three", "four", "five"]:
            say(bob, text)
        publish_event(env, f"chat:{room}", {"nick": "cron", "text": "six"})
    finally:
        primary.start()  # whatever happened: the next tests need it

    wait_for_state(ann, "live", timeout=40)
    expected = ["one", "two", "three", "four", "five", "six"]
    expect_messages(ann, expected, timeout=20)
    say(ann, "seven")
    expect_messages(bob, [*expected, "seven"])
    assert ann.text_content("#status .via") == ("WebSocket" if transport == "ws" else "SSE")


def test_presence_shows_who_is_here_and_who_leaves(open_page, primary):
    room = new_room()
    ann = enter_room(open_page, primary, room, "ann")
    bob = enter_room(open_page, primary, room, "bob", "sse")
    cat = enter_room(open_page, primary, room, "cat")

    for page, me in ((ann, "ann"), (bob, "bob"), (cat, "cat")):
        # Yourself first, then the others by name.
        wait_for_value(page, PEOPLE, [me, *sorted({"ann", "bob", "cat"} - {me})])
    wait_for_value(ann, NOTICES, ["bob joined", "cat joined"])

    # A closed tab says goodbye on pagehide.
    started = time.monotonic()
    bob.close()
    wait_for_value(ann, PEOPLE, ["ann", "cat"], timeout=5)
    assert time.monotonic() - started < 2.5 * PRESENCE_INTERVAL, "left by timeout, not by its goodbye"

    # A crashed tab says nothing: it is gone after 2.5 heartbeats without one.
    started = time.monotonic()
    _crash(cat)
    wait_for_value(ann, PEOPLE, ["ann"], timeout=2.5 * PRESENCE_INTERVAL + 5)
    elapsed = time.monotonic() - started
    assert elapsed < 2.5 * PRESENCE_INTERVAL + 2, f"gone after {elapsed:.1f}s"
    assert ann.evaluate(NOTICES) == ["bob joined", "cat joined", "bob left", "cat left"]


def _crash(page: Any) -> None:
    """Crash the page's renderer: no pagehide, no goodbye."""
    from playwright.sync_api import Error as PlaywrightError

    session = page.context.new_cdp_session(page)
    try:
        session.send("Page.crash", timeout=2000)
    except PlaywrightError:  # a crashed page answers nothing
        pass


def test_a_page_falls_back_to_sse_where_websockets_cannot_connect(open_page, wsgi, primary):
    room = new_room()
    # gunicorn serves the demo over WSGI: /ws/ is an HTTP 404, so the WebSocket never opens.
    ann = enter_room(open_page, wsgi, room, "ann")
    bob = enter_room(open_page, primary, room, "bob")

    assert ann.text_content("#status .via") == "SSE (fallback)"
    assert bob.text_content("#status .via") == "WebSocket"
    assert "WebSockets could not connect" in " ".join(ann.evaluate(NOTICES))
    say(ann, "sent by POST, received over SSE")
    say(bob, "sent and received over a WebSocket")
    expected = ["sent by POST, received over SSE", "sent and received over a WebSocket"]
    expect_messages(ann, expected)
    expect_messages(bob, expected)


def test_dashboard_and_clock_show_events_published_on_the_server(open_page, primary, env):
    page = open_page(f"{primary.url}/dashboard/")
    wait_for_state(page, "live")
    start = int(page.text_content("#clicks"))

    page.click("#click button")  # a view calls publish()
    wait_for_value(page, "() => document.getElementById('clicks').textContent", str(start + 1))
    command = page.text_content("#announce-command")
    assert command.startswith(".venv/bin/python manage.py publish_event demo:dashboard --event announcement ")
    text = f"Deploy {uuid.uuid4().hex[:6]} finished"
    publish_event(env, "demo:dashboard", {"text": text}, event="announcement")
    publish_event(env, "demo:dashboard", {"source": "shell"}, event="click")

    page.wait_for_selector(f"#announcements li:has-text('{text}')")
    wait_for_value(page, "() => document.getElementById('clicks').textContent", str(start + 2))
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"))

    clock = open_page(f"{primary.url}/clock/")
    wait_for_state(clock, "live")
    first = clock.text_content("#now")
    clock.wait_for_function("first => document.getElementById('now').textContent !== first", arg=first)


def test_realtime_js_drops_repeated_events_resumes_and_backs_off(open_page, primary):
    page = open_page(f"{primary.url}/static/chat/demo.css")
    page.set_content("<!doctype html><title>realtime.js</title>")
    page.add_script_tag(path=str(REALTIME_JS))
    result = page.evaluate(UNIT_SCRIPT)

    assert result["compare"] == [1, -1, 0, 1]
    assert result["backoff_low"] == [250, 500, 1000, 2000, 4000, 8000, 15000, 15000]
    assert result["backoff_high"] == [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]
    # WebSocket: per-channel ids, each event once, resumed from the last id, reset honoured.
    assert result["ws_delivered"] == ["6", "7", "10", "11", "4"]
    assert result["ws_resubscribe"] == {"type": "subscribe", "channel": "chat:a", "last_id": "10"}
    assert result["ws_resets"] == [{"channel": "chat:a", "reason": "expired", "lastId": "11", "resumeId": "3"}]
    assert result["ws_states"] == ["live", "reconnecting", "live", "closed"]
    assert result["ws_ack"] == {"id": "12", "channel": "chat:a"}
    assert result["ws_publish_error"] == "forbidden"
    # Fallback: two WebSockets that never open, then one EventSource for both channels.
    assert result["fallback_transport"] == "sse"
    assert result["fallback_urls"] == [
        "/events/?channel=chat%3Aa&channel=chat%3Ab&lastEventId=5",
        "/events/?channel=chat%3Aa&channel=chat%3Ab&lastEventId=21",
    ]
    assert result["sse_delivered"] == [["chat:a", "20"], ["chat:b", "21"], ["chat:a", "22"]]
    assert result["sse_publish_error"] == "transport"
    # The ES module exports the plain script's API.
    assert result["module"] is True


UNIT_SCRIPT = """async () => {
  const R = window.DjangoRealtime;
  const wait = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const out = {};
  out.compare = [R.compareIds("10", "9"), R.compareIds("9", "10"), R.compareIds("42", "42"),
                 R.compareIds("9223372036854775807", "9223372036854775806")];
  out.backoff_low = [0, 1, 2, 3, 4, 5, 6, 12].map((n) => R.backoffDelay(n, { random: () => 0 }));
  out.backoff_high = [0, 1, 2, 3, 4, 5, 6, 12].map((n) => R.backoffDelay(n, { random: () => 1 }));

  class FakeSocket {
    constructor(url) { this.url = url; this.readyState = 0; this.sent = []; FakeSocket.all.push(this); }
    send(text) { this.sent.push(JSON.parse(text)); }
    close() { this.readyState = 3; }
    open() { this.readyState = 1; this.onopen(); }
    receive(message) { this.onmessage({ data: JSON.stringify(message) }); }
    drop(code) { this.readyState = 3; this.onclose({ code }); }
  }
  FakeSocket.all = [];
  const options = { WebSocket: FakeSocket, random: () => 0.5, minDelay: 10, maxDelay: 40 };
  const event = (id) => ({ type: "event", channel: "chat:a", id, event: "message", data: { id } });

  const rt = new R.Realtime(options);
  out.ws_delivered = [];
  out.ws_resets = [];
  out.ws_states = [];
  rt.on("state", ({ state }) => out.ws_states.push(state));
  rt.subscribe("chat:a", {
    lastId: "5",
    onEvent: (e) => out.ws_delivered.push(e.id),
    onReset: (r) => out.ws_resets.push(r),
  });
  await wait(0);
  const first = FakeSocket.all[0];
  first.open();
  first.receive({ type: "subscribed", channel: "chat:a", last_id: "5" });
  for (const id of ["6", "7", "7", "5", "10"]) first.receive(event(id));
  first.drop(1006);
  await wait(60);
  const second = FakeSocket.all[1];
  second.open();
  const { ref, ...resubscribe } = second.sent[0];
  out.ws_resubscribe = resubscribe;
  for (const id of ["9", "10", "11"]) second.receive(event(id));
  second.receive({ type: "reset", channel: "chat:a", reason: "expired", last_id: "11", resume_id: "3" });
  second.receive(event("4"));
  const acked = rt.publish("chat:a", { text: "hi" });
  const publish = second.sent[second.sent.length - 1];
  second.receive({ type: "ack", channel: "chat:a", id: "12", ref: publish.ref });
  out.ws_ack = await acked;
  const refused = rt.publish("chat:a", 1).catch((error) => error.code);
  second.receive({ type: "error", code: "forbidden", message: "no", ref: second.sent[second.sent.length - 1].ref });
  out.ws_publish_error = await refused;
  rt.close();

  class Failing { constructor() { setTimeout(() => this.onclose({ code: 1006 }), 0); } close() {} }
  class FakeSource {
    constructor(url) { this.url = url; this.readyState = 0; this.listeners = {}; FakeSource.all.push(this); }
    addEventListener(name, listener) { (this.listeners[name] ||= []).push(listener); }
    close() { this.readyState = 2; }
    emit(name, id, data) {
      for (const f of this.listeners[name] || []) f({ lastEventId: id, data: JSON.stringify(data) });
    }
  }
  FakeSource.all = [];
  const fallback = new R.Realtime({ ...options, WebSocket: Failing, EventSource: FakeSource, sseUrl: "/events/" });
  out.sse_delivered = [];
  const record = (e) => out.sse_delivered.push([e.channel, e.id]);
  fallback.subscribe("chat:a", { lastId: "5", onEvent: record });
  fallback.subscribe("chat:b", { lastId: "19", events: ["other"], onEvent: record });
  await wait(100);
  out.fallback_transport = fallback.transport;
  const source = FakeSource.all[0];
  source.readyState = 1;
  source.onopen();
  source.emit("message", "20", {});
  source.emit("other", "21", {});
  source.readyState = 0;
  source.onerror();
  await wait(60);
  const again = FakeSource.all[1];
  again.emit("message", "20", {}); // already seen: dropped
  again.emit("message", "22", {});
  out.fallback_urls = FakeSource.all.map((s) => s.url);
  out.sse_publish_error = await fallback.publish("chat:a", 1).catch((error) => error.code);
  fallback.close();

  const module = await import("/static/django_realtime/realtime.mjs");
  out.module = module.Realtime === R.Realtime && module.default === R.Realtime && module.compareIds === R.compareIds;
  return out;
}"""
