"""The demo chat and realtime.js in a real browser: headless Chromium driven by Playwright.

Three servers of the demo share one SQLite database, as a scaled-out
deployment shares its database: ``primary`` (runserver, the README's demo
command; restarted by a test), ``secondary`` (runserver) and, for the
fallback, ``wsgi`` (gunicorn with gevent, which serves no WebSocket).  Each
test uses rooms of its own and browser contexts of its own, one per person,
as separate browsers would be.  Events from "another process" are published
with ``manage.py publish_event``.  See tests/support/browser.py.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import (
    ARTIFACTS,
    MESSAGE_TEXTS,
    NICK_KEY,
    NOTICES,
    PEOPLE,
    Pages,
    launched_chromium,
    wait_for_state,
    wait_for_value,
)
from tests.support.servers import Server, manage, project_env, publish_event

pytestmark = [pytest.mark.browser, pytest.mark.server]

#: Seconds within which a closed page leaves the others' "Here now" list: its connection's close, no timeout.
LEAVES_WITHIN = 3.0
#: The servers' presence heartbeat and timeout, in seconds: the members of a killed server leave within their sum.
PRESENCE_SETTINGS = {"PRESENCE_HEARTBEAT": 1, "PRESENCE_TIMEOUT": 8}
HARNESS_JS = Path(__file__).resolve().parent / "js" / "browser_harness.js"
TRANSPORTS = [pytest.param("ws", id="websocket"), pytest.param("sse", id="sse")]


def new_room() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


# Fixtures ----------------------------------------------------------------


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    """The environment of the servers and commands: a migrated SQLite database of the module's own."""
    path = tmp_path_factory.mktemp("browser") / "db.sqlite3"
    environment = project_env(f"sqlite:///{path}")
    more = json.loads(environment.get("REALTIME_JSON", "{}"))
    environment["REALTIME_JSON"] = json.dumps({**more, **PRESENCE_SETTINGS})
    manage(environment, "migrate", "--verbosity", "0")
    return environment


#: The servers running, for the log excerpts a failing test shows.
SERVERS: list[Server] = []


def _server(kind: str, env: dict[str, str], tmp_path_factory, name: str) -> Iterator[Server]:
    server = Server(kind, env, tmp_path_factory.mktemp(name) / "server.log")
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
def primary(env, tmp_path_factory) -> Iterator[Server]:
    yield from _server("runserver", env, tmp_path_factory, "primary")


@pytest.fixture(scope="module")
def secondary(env, tmp_path_factory) -> Iterator[Server]:
    yield from _server("runserver", env, tmp_path_factory, "secondary")


@pytest.fixture(scope="module")
def wsgi(env, tmp_path_factory) -> Iterator[Server]:
    yield from _server("gunicorn-gevent", env, tmp_path_factory, "wsgi")


@pytest.fixture(scope="module")
def asgi(env, tmp_path_factory) -> Iterator[Server]:
    yield from _server("daphne", env, tmp_path_factory, "asgi")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launched_chromium()


@pytest.fixture
def open_page(browser) -> Iterator[Callable[..., Any]]:
    """Open a URL in a browser context of its own; fail the test on any uncaught page error."""
    pages = Pages(browser)

    def open_page(url: str, *, nick: str | None = None, viewport: tuple[int, int] = (1200, 760)) -> Any:
        script = None if nick is None else f"localStorage.setItem({json.dumps(NICK_KEY)}, {json.dumps(nick)})"
        return pages.open(url, label=nick, viewport=viewport, init_script=script)

    yield open_page
    pages.close()


def enter_room(open_page, server: Server, room: str, nick: str, transport: str | None = None) -> Any:
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
        # A killed server cannot say that its pages left: the other server's heartbeat finds it dead.
        wait_for_value(bob, PEOPLE, ["bob"], timeout=sum(PRESENCE_SETTINGS.values()) + 10)
    finally:
        primary.start()  # whatever happened: the next tests need it

    wait_for_state(ann, "live", timeout=40)
    expected = ["one", "two", "three", "four", "five", "six"]
    expect_messages(ann, expected, timeout=20)
    say(ann, "seven")
    expect_messages(bob, [*expected, "seven"])
    # Reconnected, the page is present again and asks who is here.
    wait_for_value(bob, PEOPLE, ["bob", "ann"])
    wait_for_value(ann, PEOPLE, ["ann", "bob"])
    assert ann.text_content("#status .via") == ("WebSocket" if transport == "ws" else "SSE")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_presence_shows_who_is_here_and_who_leaves(open_page, primary, env, transport):
    room = new_room()
    ann = enter_room(open_page, primary, room, "ann", transport)
    bob = enter_room(open_page, primary, room, "bob", transport)
    # Yourself first, then the others by name: the second page sees the first, and the first the second.
    wait_for_value(bob, PEOPLE, ["bob", "ann"])
    wait_for_value(ann, PEOPLE, ["ann", "bob"])
    wait_for_value(ann, NOTICES, ["bob joined"])

    # A page opened later gets the current list at once: no heartbeat to wait for.
    started = time.monotonic()
    cat = enter_room(open_page, primary, room, "cat", transport)
    wait_for_value(cat, PEOPLE, ["cat", "ann", "bob"], timeout=LEAVES_WITHIN)
    assert time.monotonic() - started < LEAVES_WITHIN
    assert cat.evaluate(NOTICES) == [], "a first list says who is here, not who came"
    wait_for_value(ann, NOTICES, ["bob joined", "cat joined"])

    # A closed tab leaves as its connection closes.
    started = time.monotonic()
    bob.close()
    wait_for_value(ann, PEOPLE, ["ann", "cat"], timeout=LEAVES_WITHIN)
    wait_for_value(cat, PEOPLE, ["cat", "ann"], timeout=LEAVES_WITHIN)
    elapsed = time.monotonic() - started
    assert elapsed < LEAVES_WITHIN, f"left after {elapsed:.1f}s"

    # A crashed tab says nothing, but its connection closes all the same.
    started = time.monotonic()
    _crash(cat)
    wait_for_value(ann, PEOPLE, ["ann"], timeout=LEAVES_WITHIN)
    elapsed = time.monotonic() - started
    assert elapsed < LEAVES_WITHIN, f"gone after {elapsed:.1f}s"
    assert ann.evaluate(NOTICES) == ["bob joined", "cat joined", "bob left", "cat left"]

    # Only joins and leaves are stored: nothing more for the page that stays, a while later.
    ann.wait_for_timeout(3000)
    assert room_log(env, room) == {
        f"chat:{room}": {"presence.join": 3, "presence.leave": 2},
    }, "a page's presence writes its join and its leave, and no heartbeat"


def room_log(env: dict[str, str], room: str) -> dict[str, dict[str, int]]:
    """Count the log's events of *room*'s channels (chat:<room>, and any other channel naming it), by name."""
    code = (
        "import json\n"
        "from django.db.models import Count\n"
        "from django_realtime.models import Event\n"
        f"rows = Event.objects.filter(channel__endswith={f':{room}'!r}).values('channel', 'event')\n"
        "rows = rows.annotate(n=Count('id'))\n"
        "counts = {}\n"
        "for row in rows: counts.setdefault(row['channel'], {})[row['event']] = row['n']\n"
        "print(json.dumps(counts))\n"
    )
    return json.loads(manage(env, "shell", "-c", code).splitlines()[-1])


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_guests_joined_notice_shows_their_name_after_a_rename(open_page, primary, transport):
    room = new_room()
    ann = enter_room(open_page, primary, room, "ann", transport)
    guest = enter_room(open_page, primary, room, "guest-4321", transport)
    wait_for_value(ann, NOTICES, ["guest-4321 joined"])

    guest.fill("#nick", "bob")
    guest.press("#nick", "Tab")  # the change event: the page is present again under its new name

    wait_for_value(ann, PEOPLE, ["ann", "bob"])
    wait_for_value(guest, PEOPLE, ["bob", "ann"])
    wait_for_value(ann, NOTICES, ["bob joined"])
    # A page that comes now sees the new name only.
    cat = enter_room(open_page, primary, room, "cat", transport)
    wait_for_value(cat, PEOPLE, ["cat", "ann", "bob"])


def _crash(page: Any) -> None:
    """Crash the page's renderer: no pagehide, no goodbye."""
    from playwright.sync_api import Error as PlaywrightError

    session = page.context.new_cdp_session(page)
    try:
        session.send("Page.crash", timeout=2000)
    except PlaywrightError:  # a crashed page answers nothing
        pass


def open_watched(open_page, url: str, nick: str | None = None) -> tuple[Any, list[str], list[str]]:
    """Open *url*, recording every WebSocket the page opens and every console error, from the first request."""
    page = open_page("about:blank")
    if nick is not None:  # as open_page does, for the documents to come (about:blank has no localStorage)
        page.context.add_init_script(f"localStorage.setItem({json.dumps(NICK_KEY)}, {json.dumps(nick)})")
    handshakes: list[str] = []
    errors: list[str] = []
    page.on("websocket", lambda socket: handshakes.append(socket.url))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.goto(url)
    return page, handshakes, errors


@pytest.fixture(scope="module")
def wsgi_runserver(env, tmp_path_factory) -> Iterator[Server]:
    """``manage.py runserver`` without daphne: a new project's first server, which serves no WebSocket."""
    yield from _server("runserver", {**env, "DEMO_WITHOUT_DAPHNE": "1"}, tmp_path_factory, "wsgi-runserver")


def test_a_first_run_without_websockets_is_quiet_in_the_console_and_the_server_log(open_page, wsgi_runserver):
    room = new_room()
    for url in (f"{wsgi_runserver.url}/room/{room}/", f"{wsgi_runserver.url}/dashboard/"):
        page, handshakes, errors = open_watched(open_page, url, nick="ann")
        wait_for_state(page, "live")
        page.wait_for_timeout(1500)  # a failing handshake and its retry would be in by now
        assert handshakes == [] and errors == [], (url, handshakes, errors)
        assert page.text_content("#status .via") == "SSE"
    assert "/ws/" not in wsgi_runserver.log()


def test_a_page_on_a_server_without_websockets_uses_sse_in_every_tab_and_talks_to_websocket_pages(
    open_page, wsgi, primary
):
    room = new_room()
    # gunicorn serves the demo over WSGI: the page is told so, and never tries /ws/ (which is a 404 there).
    ann, handshakes, errors = open_watched(open_page, f"{wsgi.url}/room/{room}/", nick="ann")
    wait_for_state(ann, "live")
    bob = enter_room(open_page, primary, room, "bob")

    assert ann.text_content("#status .via") == "SSE"
    assert bob.text_content("#status .via") == "WebSocket"
    assert "WebSockets could not connect" not in " ".join(ann.evaluate(NOTICES))
    say(ann, "sent by POST, received over SSE")
    say(bob, "sent and received over a WebSocket")
    expected = ["sent by POST, received over SSE", "sent and received over a WebSocket"]
    expect_messages(ann, expected)
    expect_messages(bob, expected)

    # A new tab (a browser context of its own: no session storage shared) makes no handshake either.
    cat, more_handshakes, more_errors = open_watched(open_page, f"{wsgi.url}/room/{room}/", nick="cat")
    wait_for_state(cat, "live")
    expect_messages(cat, expected)
    assert handshakes == more_handshakes == [] and errors == more_errors == []
    assert "/ws/" not in wsgi.log()


def test_a_second_tab_of_the_same_browser_on_a_wsgi_site_makes_no_handshake_either(open_page, wsgi):
    # The same browser context: its localStorage and cookies shared, sessionStorage per tab, as a person's
    # browser is. No page remembers a failure for the next: the server tells each page it serves no WebSockets.
    room = new_room()
    first, handshakes, errors = open_watched(open_page, f"{wsgi.url}/room/{room}/", nick="dan")
    wait_for_state(first, "live")
    for path in (f"/room/{room}/", "/dashboard/"):
        tab = first.context.new_page()
        tab.on("websocket", lambda socket: handshakes.append(socket.url))
        tab.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        tab.goto(f"{wsgi.url}{path}")
        wait_for_state(tab, "live")
        tab.wait_for_timeout(1500)  # a failing handshake and its retry would be in by now
        assert tab.text_content("#status .via") == "SSE", path
        tab.close()
    assert handshakes == [] and errors == []
    assert "/ws/" not in wsgi.log()


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


# realtime.js against real servers ------------------------------------------


def client_page(open_page, server: Server, *, before: str = "") -> Any:
    """Open a bare page of *server* that loads its realtime.js as a plain script, and the test harness."""
    page = open_page(f"{server.url}/static/chat/demo.css")
    page.set_content(
        f"<!doctype html><title>realtime.js</title><script>{before}</script>"
        '<script src="/static/django_realtime/realtime.js" data-sse-url="/events/"></script>'
    )
    page.add_script_tag(path=str(HARNESS_JS))
    return page


def log(page: Any) -> dict[str, Any]:
    return page.evaluate("harness.log")


def publish_all(env: dict[str, str], events: list[tuple[str, Any]]) -> None:
    """Publish ``(channel, data)`` pairs, in order, from another process (one ``manage.py shell``)."""
    code = "from django_realtime import publish\n" + "".join(
        f"publish({channel!r}, {json.dumps(data)})\n" for channel, data in events
    )
    manage(env, "shell", "-c", code)


ROUTING_CASES = [
    pytest.param("wsgi", "sse", id="gunicorn-gevent-sse"),
    pytest.param("wsgi", "auto", id="gunicorn-gevent-auto-fallback"),
    pytest.param("asgi", "sse", id="daphne-sse"),
    pytest.param("asgi", "websocket", id="daphne-websocket"),
]


@pytest.mark.parametrize(("server_name", "transport"), ROUTING_CASES)
def test_each_channel_gets_only_its_own_events_and_a_denied_one_fails_alone(
    open_page, request, env, server_name, transport
):
    server = request.getfixturevalue(server_name)
    room = new_room()
    page = client_page(open_page, server)
    one, two, secret = f"chat:{room}-1", f"chat:{room}-2", f"secret:{room}"
    used = page.evaluate(
        "([transport, channels]) => harness.start({ transport }, channels)", [transport, [one, two, secret]]
    )
    # The denied channel fails at once, with the server's reason; the others go live.
    wait_for_value(page, f"() => harness.log.errors[{json.dumps(secret)}].length", 1)
    wait_for_value(page, "() => harness.realtime.state", "live")
    [(code, message, _)] = log(page)["errors"][secret]
    assert code == "forbidden" and "not allowed to subscribe to" in message.lower() and secret in message

    publish_all(env, [(one, {"n": "1a"}), (two, {"n": "2a"}), (one, {"n": "1b"}), (two, {"n": "2b"})])

    events = f"() => [harness.log.events[{json.dumps(one)}].length, harness.log.events[{json.dumps(two)}].length]"
    wait_for_value(page, events, [2, 2])
    page.wait_for_timeout(300)  # nothing else follows
    seen = log(page)
    assert [(name, data["n"]) for _, name, data in seen["events"][one]] == [("message", "1a"), ("message", "1b")]
    assert [(name, data["n"]) for _, name, data in seen["events"][two]] == [("message", "2a"), ("message", "2b")]
    assert seen["events"][secret] == [] and seen["errors"][one] == seen["errors"][two] == []
    expected = "websocket" if transport == "websocket" else "sse"
    assert page.evaluate("harness.realtime.transport") == expected
    if expected == "sse":  # one stream for every channel
        streams = [f["url"] for f in seen["fetches"] if f["url"].startswith("/events/")]
        assert len(streams) == 1, streams
    if transport == "auto":
        assert used == "websocket" and seen["transports"] == [["sse", "WebSockets cannot connect"]]


def test_sse_waits_out_a_503s_retry_after_and_stops_for_good_on_a_404(open_page, wsgi):
    page = client_page(open_page, wsgi)
    refused = []

    def busy_once(route):
        if not refused:
            refused.append(route.request.url)
            route.fulfill(status=503, body="busy", headers={"Retry-After": "1", "Content-Type": "text/plain"})
        else:
            route.continue_()

    page.route("**/events/?*", busy_once)
    page.evaluate("() => harness.start({ transport: 'sse', minDelay: 50 }, [{ channel: 'chat:retry' }])")
    wait_for_value(page, "() => harness.realtime.state", "live")
    fetches = [f for f in log(page)["fetches"] if "/events/" in f["url"]]
    assert len(fetches) == 2 and len(refused) == 1
    assert fetches[1]["at"] - fetches[0]["at"] >= 1000, "retried before Retry-After"
    assert log(page)["pageErrors"] == [["http", 503]]

    # A 404 (no such endpoint) is reported to the subscription once, and never retried.
    page.evaluate("() => harness.realtime.close()")
    page.evaluate("() => harness.start({ transport: 'sse', sseUrl: '/no-such-endpoint/' }, [{ channel: 'chat:x' }])")
    wait_for_value(page, "() => harness.log.errors['chat:x'].length", 1)
    page.wait_for_timeout(1500)
    seen = log(page)
    assert [f["url"] for f in seen["fetches"]].count("/no-such-endpoint/?channel=chat%3Ax&include=channel") == 1
    assert seen["errors"]["chat:x"][0][0::2] == ["not_found", 404]
    assert page.evaluate("harness.realtime.state") == "failed"


def test_the_script_leaves_a_global_it_did_not_make_and_the_module_exports_the_same_api(open_page, wsgi):
    page = client_page(open_page, wsgi, before="window.DjangoRealtime = { mine: true };")
    assert page.evaluate("window.DjangoRealtime") == {"mine": True}
    same = page.evaluate(
        """async () => {
          const module = await import("/static/django_realtime/realtime.mjs");
          const api = globalThis[Symbol.for("django-realtime")];
          return module.Realtime === api.Realtime && module.default === api.Realtime && typeof module.SSEParser;
        }"""
    )
    assert same == "function"


# The demo on a phone -----------------------------------------------------

#: The width of a common phone screen, in CSS pixels.
PHONE = (390, 844)
#: The widths a page's content reaches past the viewport, and which elements reach them.
OVERFLOW = """() => ({
  page: document.documentElement.scrollWidth,
  viewport: window.innerWidth,
  wide: Array.from(document.querySelectorAll("body *"))
    .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 0.5)
    .slice(0, 5)
    .map((e) => `${e.tagName.toLowerCase()}.${e.className}`),
})"""


def test_the_htmx_ticker_swaps_in_the_html_each_event_carries_on_both_servers(open_page, wsgi, primary):
    """htmx 2 and its SSE extension, from django-htmx, with ?data=text: no JavaScript of ours on the page."""
    ann = open_page(f"{wsgi.url}/ticker/")  # gunicorn (gevent)
    bob = open_page(f"{primary.url}/ticker/")  # ASGI
    for page in (ann, bob):
        wait_for_state(page, "live")
    texts = [f"<img src=x onerror=alert(1)> {uuid.uuid4().hex[:6]}", f"second {uuid.uuid4().hex[:6]}"]
    ann.fill("#ticker-form input[name=nick]", "ann")  # once: Send clears the message, not the name
    for text in texts:
        ann.fill("#ticker-form input[name=text]", text)
        ann.click("#ticker-form button")
        for page in (ann, bob):
            page.wait_for_selector(f"#ticks li.tick:has-text('{text[-6:]}')", timeout=15_000)
        wait_for_value(ann, "() => document.querySelector('#ticker-form input[name=text]').value", "")
        assert ann.input_value("#ticker-form input[name=nick]") == "ann"
    for page in (ann, bob):
        items = page.locator("#ticks li.tick")
        # The newest first (hx-swap="afterbegin"), each the template's HTML, not its JSON text.
        assert items.count() == 2
        assert [items.nth(n).locator("span.text").text_content() for n in range(2)] == texts[::-1]
        assert [items.nth(n).locator("b.nick").text_content() for n in range(2)] == ["ann", "ann"]
        assert page.locator("#ticks img").count() == 0, "the template's escaping was lost on the way"
        assert '"' not in items.nth(0).inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    bob.screenshot(path=str(ARTIFACTS / "ticker.png"))


#: In a page: open an EventSource with credentials and a WebSocket to another origin's endpoint, and
#: return what each received within a few seconds (or how it failed).
CROSS_ORIGIN = """async ({ endpoint, channel }) => {
  const result = { sse: [], sseFailed: false, ws: [], wsClosed: null };
  const source = new EventSource(`${endpoint}/events/?channel=${channel}&lastEventId=0`, { withCredentials: true });
  source.addEventListener("message", (e) => result.sse.push(JSON.parse(e.data)));
  source.onerror = () => { if (source.readyState === EventSource.CLOSED) result.sseFailed = true; };
  const socket = new WebSocket(endpoint.replace(/^http/, "ws") + "/ws/");
  socket.onopen = () => socket.send(JSON.stringify({ type: "subscribe", channel, last_id: "0" }));
  socket.onmessage = (e) => { const m = JSON.parse(e.data); if (m.type === "event") result.ws.push(m.data); };
  socket.onclose = (e) => { result.wsClosed = e.code; };
  const deadline = Date.now() + 8000;
  while (Date.now() < deadline && !(result.sse.length && result.ws.length) && !result.sseFailed) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  source.close();
  socket.close();
  return result;
}"""


def test_a_page_on_another_origin_streams_with_credentials_where_cors_allows_it(
    open_page, wsgi, asgi, env, tmp_path_factory
):
    """django-cors-headers, no CORS code of ours: EventSource(url, {withCredentials: true}) and a WebSocket."""
    page_origin = f"http://localhost:{wsgi.port}"  # another site than 127.0.0.1, on the loopback all the same
    allowing = Server("daphne", {**env, "DEMO_CORS_ORIGINS": page_origin}, tmp_path_factory.mktemp("cors") / "log")
    allowing.start()
    SERVERS.append(allowing)
    try:
        channel = f"demo:cors-{uuid.uuid4().hex[:6]}"
        publish_event(env, channel, {"n": 1})
        page = open_page(f"{page_origin}/clock/")
        allowed = page.evaluate(CROSS_ORIGIN, {"endpoint": allowing.url, "channel": channel})
        assert allowed["sse"] == [{"n": 1}] and not allowed["sseFailed"], allowed
        assert allowed["ws"] == [{"n": 1}], allowed  # the Origin (localhost) is one of ALLOWED_HOSTS
        # The same page and endpoint, but a server that lists no origin: the browser refuses the stream.
        refused = page.evaluate(CROSS_ORIGIN, {"endpoint": asgi.url, "channel": channel})
        assert refused["sse"] == [] and refused["sseFailed"], refused
    finally:
        SERVERS.remove(allowing)
        allowing.stop()


@pytest.mark.parametrize("path", ["/dashboard/", "/clock/", "/room/phone/", "/ticker/"])
def test_the_demo_pages_fit_a_phone_screen_without_scrolling_sideways(open_page, primary, path):
    page = open_page(f"{primary.url}{path}", nick="ann", viewport=PHONE)
    wait_for_state(page, "live")
    if path == "/clock/":
        page.wait_for_function("() => document.getElementById('now').textContent !== '--:--:--'")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"phone-{path.strip('/').replace('/', '-')}.png"), full_page=True)
    layout = page.evaluate(OVERFLOW)
    assert layout["page"] <= layout["viewport"], (
        f"{path} is {layout['page']} px wide at {PHONE[0]} px: {layout['wide']}"
    )


def test_the_admins_event_list_shows_the_data_column_whole_at_1280_pixels(open_page, wsgi, env):
    name = f"staff-{uuid.uuid4().hex[:6]}"
    manage(
        env,
        "shell",
        "-c",
        f"from django.contrib.auth.models import User; User.objects.create_superuser({name!r}, password='x')",
    )
    channel = f"chat:{new_room()}"
    publish_all(env, [(channel, {"url": "https://example.com/" + "a" * 100, "more": list(range(40))})])
    page = open_page(
        f"{wsgi.url}/admin/login/?next=/admin/django_realtime/event/%3Fq%3D{channel}", viewport=(1280, 800)
    )
    page.fill("#id_username", name)
    page.fill("#id_password", "x")
    page.click("input[type=submit]")
    cell = page.wait_for_selector("td.field-preview")
    box = cell.bounding_box()
    assert box["x"] + box["width"] <= 1280, box  # not cut off at the window's edge, nor scrolled out of it
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280


def test_on_a_phone_who_is_here_and_the_composer_show_without_scrolling(open_page, primary):
    room = new_room()
    enter_room(open_page, primary, room, "bob")
    page = open_page(f"{primary.url}/room/{room}/", nick="ann", viewport=PHONE)
    wait_for_state(page, "live")
    page.wait_for_selector("#people li:has-text('bob')")
    for selector in ("#people", "#composer"):
        box = page.locator(selector).bounding_box()
        assert box["y"] >= 0 and box["y"] + box["height"] <= PHONE[1], (selector, box)
