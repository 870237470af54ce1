"""Live regions in Chromium: the demo's board kept in step by htmx's SSE extension and by live.js.

The board page (``/board/``, htmx; ``/board/plain/``, live.js) shows the
items and a per-viewer count.  Changes are made as a site makes them: the
board's views (POSTs with a CSRF token, from another client), and
``manage.py shell`` in a process of its own.  After every step the page must
show what a fresh render shows, through a server killed and restarted and
through a reload: nothing lost, nothing doubled.  htmx runs on gunicorn
(gevent, SSE); live.js on runserver (ASGI), over a WebSocket.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.support.browser import Pages, launched_chromium
from tests.support.browser import wait_for_value as wait_until
from tests.support.servers import Server, manage, project_env

pytestmark = [pytest.mark.browser, pytest.mark.server]

#: The board's items as the page shows them: DOM id, title and owner (the text of other elements), in order.
ITEMS = """() => Array.from(document.querySelectorAll('#board-items > li'), (e) => {
  const [title, owner] = [e.querySelector('.title'), e.querySelector('.owner')];
  return e.id + '|' + (title ? `${title.textContent} ${owner.textContent}` : e.textContent).trim();
})"""
#: The viewer's count, which a refresh brings up to date.
MINE = "() => document.getElementById('mine-count').textContent"
#: The page's request id, the one its own changes carry (htmx: in hx-headers; live.js: a data- attribute).
REQUEST_ID = """() => {
  const region = document.getElementById('board-mine');
  return region.dataset.liveRequestId || JSON.parse(region.getAttribute('hx-headers'))['Realtime-Request-Id'];
}"""
CLIENTS = [pytest.param("htmx", id="htmx"), pytest.param("livejs", id="live.js")]
PATHS = {"htmx": "/board/", "livejs": "/board/plain/"}


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    path = tmp_path_factory.mktemp("live") / "db.sqlite3"
    environment = project_env(f"sqlite:///{path}")
    # Reconnect within half a second of a restart (the default is 3 s).
    environment["REALTIME_JSON"] = json.dumps({"RETRY": 500})
    manage(environment, "migrate", "--verbosity", "0")
    return environment


def _server(kind: str, env: dict[str, str], tmp_path_factory) -> Iterator[Server]:
    server = Server(kind, env, tmp_path_factory.mktemp(kind) / "server.log")
    server.start()
    try:
        yield server
    finally:
        print(f"--- {kind} ---\n{server.log()[-4000:]}")
        server.stop()


@pytest.fixture(scope="module")
def servers(env, tmp_path_factory) -> Iterator[dict[str, Server]]:
    gunicorn = _server("gunicorn-gevent", env, tmp_path_factory)
    runserver = _server("runserver", env, tmp_path_factory)
    started = {"htmx": next(gunicorn), "livejs": next(runserver)}
    yield started
    for generator in (gunicorn, runserver):
        next(generator, None)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launched_chromium()


@pytest.fixture
def open_page(browser) -> Iterator[Callable[..., Any]]:
    pages = Pages(browser)
    yield lambda url, cookies=None: pages.open(url, cookies=cookies)
    pages.close()


class Board:
    """Changes to the board through its views, as another browser makes them."""

    def __init__(self, server: Server, user: str | None = None) -> None:
        self.server = server
        self.client = httpx.Client(base_url=server.url, timeout=10.0)
        if user is not None:
            self.client.get("/sign-in/").raise_for_status()
            token = self.client.cookies["csrftoken"]
            response = self.client.post("/sign-in/", data={"name": user, "csrfmiddlewaretoken": token})
            assert response.status_code == 302 and "sessionid" in self.client.cookies, f"could not sign in as {user}"

    def cookies(self) -> list[dict[str, Any]]:
        """The client's cookies, for a browser context: a page signed in as the same user."""
        return [{"name": name, "value": value, "url": self.server.url} for name, value in self.client.cookies.items()]

    def __enter__(self) -> Board:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def post(self, path: str, request_id: str | None = None, **fields: str) -> int:
        if "csrftoken" not in self.client.cookies:
            self.client.get("/board/").raise_for_status()
        headers = {"X-CSRFToken": self.client.cookies["csrftoken"]}
        if request_id is not None:
            headers["Realtime-Request-Id"] = request_id
        response = self.client.post(path, data=fields, headers=headers)
        response.raise_for_status()
        return response.json()["id"]

    def create(self, title: str, request_id: str | None = None) -> int:
        return self.post("/board/items/", request_id, title=title)

    def edit(self, pk: int, title: str) -> None:
        self.post(f"/board/items/{pk}/", title=title)

    def delete(self, pk: int) -> None:
        self.post(f"/board/items/{pk}/delete/")


def wait_for_value(page: Any, script: str, expected: Any, timeout: float = 15.0) -> None:
    """Wait until *script* gives *expected* in *page*; fail showing both."""
    try:
        wait_until(page, script, expected, timeout)
    except AssertionError:
        raise AssertionError(f"{script}\n gave {page.evaluate(script)!r}\n, not {expected!r}") from None


def shell(env: dict[str, str], code: str) -> None:
    """Run *code* in ``manage.py shell``: another process, as an admin's edit from a shell is."""
    manage(env, "shell", "--no-imports", "-c", code)


def fresh(open_page, url: str, cookies: list[dict[str, Any]] | None = None) -> tuple[list[str], str]:
    page = open_page(url, cookies)
    try:
        return page.evaluate(ITEMS), page.evaluate(MINE)
    finally:
        page.close()


def wait_fresh(open_page, page: Any, url: str) -> None:
    """Wait until *page* shows what a fresh render of *url* shows, to the same user."""
    items, mine = fresh(open_page, url, page.context.cookies())
    wait_for_value(page, ITEMS, items)
    wait_for_value(page, MINE, mine)


@pytest.fixture
def board(servers, client) -> Iterator[Board]:
    with Board(servers[client]) as board:
        yield board


@pytest.fixture
def signed_in(servers, client) -> Iterator[Callable[[str], Board]]:
    """Make a Board client signed in as a new user of that name (closed after the test)."""
    boards: list[Board] = []

    def signed_in(name: str) -> Board:
        boards.append(Board(servers[client], name))
        return boards[-1]

    yield signed_in
    for board in boards:
        board.client.close()


@pytest.mark.parametrize("client", CLIENTS)
def test_each_action_and_refresh_reach_the_page(open_page, servers, env, client, board, signed_in):
    server = servers[client]
    url = f"{server.url}{PATHS[client]}?as=ann"  # a query string, which a refresh must keep
    ann, bob = f"ann-{client}", f"bob-{client}"
    mine = signed_in(ann)  # the same user as the page, in another session
    page = open_page(url, mine.cookies())
    refetches: list[str] = []
    page.on("request", lambda r: r.resource_type in ("xhr", "fetch") and "/board/" in r.url and refetches.append(r.url))
    before = page.evaluate(ITEMS)

    # create: append; its own page's refresh is skipped (the page that made the change knows).
    own = page.evaluate(REQUEST_ID)
    pk = mine.create("Milk <b>", request_id=own)
    wait_for_value(page, ITEMS, [*before, f"board-item-{pk}|Milk <b> {ann}"])
    page.wait_for_timeout(800)  # the debounce (200 ms) and a fetch, had one been made
    assert refetches == [], "the page refreshed for its own change"
    # Another's change: the count is fetched again with the page's own query (its viewer).
    other = signed_in(bob).create("Bread")
    wait_for_value(page, ITEMS, [*before, f"board-item-{pk}|Milk <b> {ann}", f"board-item-{other}|Bread {bob}"])
    wait_for_value(page, MINE, str(1 + sum(item.endswith(f" {ann}") for item in before)))
    assert refetches and all("as=ann" in r for r in refetches)

    # update: replace in place.
    board.edit(pk, "Oat milk")
    wait_for_value(page, f"() => document.querySelector('#board-item-{pk} .title').textContent", "Oat milk")

    # The actions a model does not declare, from a shell: prepend, before, after, update, then remove.
    shell(
        env,
        "from django_realtime import live\n"
        "b = lambda *a, **k: live.broadcast(*a, 'board:items', **k)\n"
        f"b('prepend', target='board-items', dom_id='x-first', html='<li id=\"x-first\">first</li>')\n"
        f"b('before', target='board-item-{pk}', dom_id='x-before', html='<li id=\"x-before\">before</li>')\n"
        f"b('after', target='board-item-{pk}', dom_id='x-after', html='<li id=\"x-after\">after</li>')\n"
        "b('update', target='x-first', html='<i>updated</i>')\n"
        # An append of an id the page shows already: never two (live.js replaces it, htmx keeps the one shown).
        f"b('append', target='board-items', dom_id='x-after', html='<li id=\"x-after\">after, again</li>')\n",
    )
    again = "after, again" if client == "livejs" else "after"
    expected = [
        "x-first|updated",
        *before,
        "x-before|before",
        f"board-item-{pk}|Oat milk {ann}",
        f"x-after|{again}",
        f"board-item-{other}|Bread {bob}",
    ]
    wait_for_value(page, ITEMS, expected)
    assert page.evaluate("() => document.querySelector('#x-first i').textContent") == "updated"
    shell(
        env,
        "from django_realtime import live\n"
        "for x in ('x-first', 'x-before', 'x-after'): live.broadcast('remove', 'board:items', target=x)\n",
    )
    # delete: remove.
    board.delete(other)
    wait_fresh(open_page, page, url)
    assert not page.evaluate(f"() => document.getElementById('board-item-{other}')")


@pytest.mark.parametrize("client", CLIENTS)
def test_a_restart_and_a_reload_lose_and_repeat_nothing(open_page, servers, env, client, board, signed_in):
    server = servers[client]
    url = f"{server.url}{PATHS[client]}"
    cy = f"cy-{client}"
    mine = signed_in(cy)
    page = open_page(url, mine.cookies())
    kept = [mine.create(f"keep {n}") for n in range(3)]
    gone = mine.create("gone")
    wait_fresh(open_page, page, url)

    server.kill()  # a crash, mid-burst: the page's stream breaks
    shell(
        env,
        "from testproject.board.models import Item\n"
        f"Item.objects.filter(pk={gone}).delete()\n"
        f"i = Item.objects.get(pk={kept[0]}); i.title = 'edited while down'; i.save()\n"
        f"cy = Item.owner.field.related_model.objects.get(username={cy!r})\n"
        "for n in range(3): Item.objects.create(title=f'made while down {n}', owner=cy)\n",
    )
    server.start()
    wait_fresh(open_page, page, url)
    # And the burst goes on after the restart.
    board.edit(kept[1], "edited after")
    board.create("made after")  # a guest's: not in cy's column
    wait_fresh(open_page, page, url)

    page.reload()
    wait_fresh(open_page, page, url)
    board.delete(kept[2])
    wait_fresh(open_page, page, url)
    items = page.evaluate(ITEMS)
    assert len(items) == len(set(items)), f"an item shown twice: {items}"


#: The script that connects each kind of page: held back until a change is made, after the render.
CONNECTING_SCRIPT = {"htmx": "**/hx-sse-2.min.js", "livejs": "**/live.js"}


@pytest.mark.parametrize("client", CLIENTS)
def test_a_change_between_the_render_and_the_connection_is_not_lost(browser, servers, client, board):
    url = f"{servers[client].url}{PATHS[client]}"
    made: list[int] = []

    def change_then_load(route: Any) -> None:
        # The page is rendered (its cursor taken) and not yet connected: a change made now must still come.
        made.append(board.create("between render and connect"))
        route.continue_()

    context = browser.new_context()
    try:
        page = context.new_page()
        page.route(CONNECTING_SCRIPT[client], change_then_load)
        page.goto(url)
        assert made, "the connecting script was never requested"
        wait_for_value(page, f"() => Boolean(document.getElementById('board-item-{made[0]}'))", True)
    finally:
        context.close()


@pytest.mark.parametrize("client", CLIENTS)
def test_a_reset_refreshes_the_region(browser, open_page, servers, client, board):
    """A page whose cursor the log does not know gets a reset: it cannot tell what it missed, so it refetches."""
    url = f"{servers[client].url}{PATHS[client]}"
    hidden = board.create("missing from a stale page")

    def stale(route: Any) -> None:
        if not route.request.is_navigation_request():
            route.continue_()
            return
        response = route.fetch()
        body = re.sub(rf'<li id="board-item-{hidden}".*?</li>', "", response.text())
        # A cursor from another log (a restored backup): the server answers it with a reset.
        body = re.sub(r'(lastEventId=|data-live-cursor=")[^"&]*', r"\g<1>999999999", body)
        route.fulfill(response=response, body=body)

    context = browser.new_context()
    try:
        page = context.new_page()
        page.route(url, stale)
        page.goto(url)
        wait_for_value(page, f"() => Boolean(document.getElementById('board-item-{hidden}'))", True)
        wait_fresh(open_page, page, url)
    finally:
        context.close()
