"""The demo's live board in Chromium, as two people use it: two signed-in users, the admin and a shell.

One server (runserver, ASGI) and two browser contexts: ann on ``/board/``
(htmx's SSE extension), bob on ``/board/plain/`` (live.js, over a
WebSocket).  Each makes changes through the page's own forms; the other page
shows them without a reload, the count of items included, while each one's
"Mine" column lists only their own items, brought up to date by a refresh.
A staff user's edits in the admin and a ``manage.py shell`` session reach the
board the same way.  After each step both pages must show what a fresh render
shows to the same user.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.browser import ARTIFACTS, Pages, launched_chromium, wait_for_value
from tests.support.servers import Server, manage, project_env

pytestmark = [pytest.mark.browser, pytest.mark.server]

#: The board's items as a page shows them: title and owner, in order.
ITEMS = """() => Array.from(document.querySelectorAll('#board-items > li'),
  (e) => `${e.querySelector('.title').textContent} ${e.querySelector('.owner').textContent}`.trim())"""
#: The count of all items, which every create and delete updates in place.
TOTAL = "() => document.getElementById('board-total').textContent"
#: The viewer's own items, as the "Mine" column lists them.
MINE = "() => Array.from(document.querySelectorAll('#mine-items > li'), (e) => e.textContent)"
#: The width of a common phone screen, in CSS pixels.
PHONE = (390, 844)


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    environment = project_env(f"sqlite:///{tmp_path_factory.mktemp('board') / 'db.sqlite3'}")
    environment["REALTIME_JSON"] = json.dumps({"RETRY": 500})
    environment["DEMO_REPORT_STEP_SECONDS"] = "0.05"  # the report the phone test starts ends within a second
    manage(environment, "migrate", "--verbosity", "0")
    return environment


@pytest.fixture(scope="module")
def server(env, tmp_path_factory) -> Iterator[Server]:
    server = Server("runserver", env, tmp_path_factory.mktemp("runserver") / "server.log")
    server.start()
    try:
        yield server
    finally:
        print(f"--- server ---\n{server.log()[-4000:]}")
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launched_chromium()


@pytest.fixture
def open_page(browser) -> Iterator[Callable[..., Any]]:
    """Open a page in a context of its own (another person's browser), signed in as *user* if given."""
    pages = Pages(browser)

    def open_page(url: str, user: str | None = None, viewport: tuple[int, int] | None = None) -> Any:
        if user is None:
            return pages.open(url, viewport=viewport)
        scheme, _, host, _ = url.split("/", 3)
        page = pages.open(f"{scheme}//{host}/sign-in/", label=f"{user} {url}", viewport=viewport)
        page.fill("input[name=name]", user)
        page.click("button[type=submit]")
        page.wait_for_url(lambda address: "/sign-in/" not in address)
        page.goto(url)
        return page

    yield open_page
    pages.close()


def name(prefix: str) -> str:
    """A user name no other test of the module takes (sign-in refuses a taken one)."""
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def shows_fresh(open_page, page: Any) -> None:
    """Wait until *page* shows what a fresh render of it shows to its own user."""
    fresh = open_page("about:blank")
    fresh.context.add_cookies(page.context.cookies())
    fresh.goto(page.url)
    for script in (ITEMS, TOTAL, MINE):
        wait_for_value(page, script, fresh.evaluate(script))
    fresh.close()


def add(page: Any, title: str) -> None:
    page.fill("#board-new input[name=title]", title)
    page.click("#board-new button")


def item(page: Any, title: str) -> Any:
    return page.locator("#board-items > li", has=page.locator(".title", has_text=title))


def test_two_people_see_each_others_changes_and_each_their_own_in_mine(server, open_page):
    ann, bob = name("ann"), name("bob")
    ann_page = open_page(f"{server.url}/board/", user=ann)  # htmx
    bob_page = open_page(f"{server.url}/board/plain/", user=bob)  # live.js
    pages = (ann_page, bob_page)
    before = ann_page.evaluate(ITEMS)
    total = int(ann_page.evaluate(TOTAL))

    add(ann_page, "Milk <b>")
    for page in pages:
        wait_for_value(page, ITEMS, [*before, f"Milk <b> {ann}"])
        wait_for_value(page, TOTAL, str(total + 1))
    wait_for_value(ann_page, MINE, ["Milk <b>"])
    add(bob_page, "Bread")
    for page in pages:
        wait_for_value(page, ITEMS, [*before, f"Milk <b> {ann}", f"Bread {bob}"])
        wait_for_value(page, TOTAL, str(total + 2))
    wait_for_value(bob_page, MINE, ["Bread"])
    assert ann_page.evaluate(MINE) == ["Milk <b>"], "another's item in ann's own column"

    # bob renames ann's item: it stays hers, and her column shows the new title (a refresh of her own).
    item(bob_page, "Milk").locator("[data-board-edit]").click()
    bob_page.fill("#board-items .board-rename input", "Oat milk")
    bob_page.click("#board-items .board-rename button[type=submit]")
    for page in pages:
        wait_for_value(page, ITEMS, [*before, f"Oat milk {ann}", f"Bread {bob}"])
    wait_for_value(ann_page, MINE, ["Oat milk"])

    # ann deletes bob's: gone from both pages, from the count and from bob's column.
    item(ann_page, "Bread").locator("[data-board-delete]").click()
    for page in pages:
        wait_for_value(page, ITEMS, [*before, f"Oat milk {ann}"])
        wait_for_value(page, TOTAL, str(total + 1))
    wait_for_value(bob_page, MINE, [])
    for page in pages:
        shows_fresh(open_page, page)

    # A bad title is refused with its reason, on the page that sent it only.
    bob_page.evaluate("() => document.querySelector('#board-new input').removeAttribute('maxlength')")
    add(bob_page, "y" * 201)
    error = "() => document.getElementById('board-error').textContent"
    wait_for_value(bob_page, error, "A title has at most 200 characters")
    shows_fresh(open_page, ann_page)


def test_an_edit_in_the_admin_appears_on_the_open_boards(server, env, open_page):
    staff = name("staff")
    manage(
        env,
        "shell",
        "-c",
        f"from django.contrib.auth.models import User; User.objects.create_superuser({staff!r}, password='x')",
    )
    board = open_page(f"{server.url}/board/")  # a guest's
    admin = open_page(f"{server.url}/admin/login/?next=/admin/board/item/add/")
    admin.fill("#id_username", staff)
    admin.fill("#id_password", "x")
    admin.click("input[type=submit]")
    total = int(board.evaluate(TOTAL))

    admin.fill("#id_title", "From the admin")
    admin.click("input[name=_save]")
    admin.wait_for_url("**/admin/board/item/")
    item(board, "From the admin").wait_for()
    wait_for_value(board, TOTAL, str(total + 1))

    admin.locator("#result_list a", has_text="From the admin").click()
    admin.fill("#id_title", "Edited in the admin")
    admin.click("input[name=_save]")
    admin.wait_for_url("**/admin/board/item/")
    item(board, "Edited in the admin").wait_for()
    assert item(board, "From the admin").count() == 0

    admin.locator("#result_list a", has_text="Edited in the admin").click()
    admin.click("a.deletelink")
    admin.click("input[type=submit]")  # "Yes, I'm sure"
    admin.wait_for_url("**/admin/board/item/")
    item(board, "Edited in the admin").wait_for(state="detached")
    wait_for_value(board, TOTAL, str(total))
    shows_fresh(open_page, board)


def test_changes_made_in_manage_py_shell_appear_live(server, env, open_page):
    ann = name("ann")
    page = open_page(f"{server.url}/board/plain/", user=ann)
    total = int(page.evaluate(TOTAL))
    manage(
        env,
        "shell",
        "-c",
        "from django.contrib.auth.models import User\n"
        "from testproject.board.models import Item\n"
        f"ann = User.objects.get(username={ann!r})\n"
        "Item.objects.create(title='from a shell', owner=ann)\n"
        "i = Item.objects.create(title='to rename', owner=ann); i.title = 'renamed in a shell'; i.save()\n"
        "Item.objects.create(title='gone again')\n"
        "Item.objects.filter(title='gone again').delete()\n",
    )
    item(page, "renamed in a shell").wait_for()
    wait_for_value(page, MINE, ["from a shell", "renamed in a shell"])  # the refresh a shell's change sends too
    wait_for_value(page, TOTAL, str(total + 2))
    assert item(page, "to rename").count() == 0 and item(page, "gone again").count() == 0
    shows_fresh(open_page, page)


def test_the_board_fits_a_phone_screen_with_its_link_in_the_top_bar(server, open_page):
    page = open_page(f"{server.url}/board/", viewport=PHONE)
    assert page.get_attribute(".nav a[aria-current=page]", "href") == "/board/"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "phone-board.png"), full_page=True)
    width = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"/board/ is {width[0]} px wide at {PHONE[0]} px"
    assert page.locator(".card a[href='/report/']").count() == 1
    page.click("#generate")  # the report's button, on the board: a task with a live bar
    page.wait_for_selector(".realtime-progress")
