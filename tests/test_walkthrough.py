"""A newcomer's walk through the docs, on today's Django, from the built wheel, to the browser.

The wheel is built from a clean copy and installed, with the newest Django
6.1 and nothing of this checkout, into a Python 3.13 virtual environment.
A project made by ``startproject`` then follows the quickstart, the tutorial
and the htmx page, with their code blocks taken from ``docs/`` as they
stand and put where the docs say: a block that changes or goes makes this
test fail rather than pass on code the docs no longer show.  Only the htmx
page's fragment template and URL, which htmx.md leaves to the reader, are
written here, and marked so.  The tutorial's own tests run with pytest, and
Chromium then opens each page the docs tell the reader to open, on
``runserver`` (no daphne: pages use SSE), does what their "Try it" sections
say, and finds no console error on any of them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.browser import CHROMIUM_ARGS, chromium_path, require_browser
from tests.support.processes import free_port
from tests.support.services import unavailable
from tests.test_packaging import UNPACKED

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PYTHON = "3.13"
DJANGO = "Django>=6.1,<6.2"
PASSWORD = "a long walk through the docs"

pytestmark = [pytest.mark.server, pytest.mark.browser, pytest.mark.walkthrough, pytest.mark.timeout(900)]


def blocks(page: str) -> list[str]:
    """Return the fenced code blocks of docs/*page*, their text without the fences."""
    text = (DOCS / page).read_text()
    return [match.group(2) for match in re.finditer(r"^( *)```[a-z]*\n(.*?)^\1```$", text, re.M | re.S)]


def block(page: str, first_line: str, *, containing: str = "") -> str:
    """Return the one code block of docs/*page* whose first line starts with *first_line* (and holds *containing*)."""
    found = [b for b in blocks(page) if b.splitlines()[0].strip().startswith(first_line) and containing in b]
    assert len(found) == 1, f"docs/{page} has {len(found)} blocks starting {first_line!r} holding {containing!r}"
    return found[0]


def interpreter(version: str) -> Path | None:
    """Return pyenv's newest CPython *version*, or one on PATH."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"), "versions")
    builds = sorted(
        (int(path.parent.parent.name.rsplit(".", 1)[1]), path)
        for path in root.glob(f"{version}.*/bin/python{version}")
        if re.fullmatch(rf"{re.escape(version)}\.\d+", path.parent.parent.name)
    )
    if builds:
        return builds[-1][1]
    found = shutil.which(f"python{version}")
    return Path(found) if found else None


def run(*command: str | Path, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    result = subprocess.run(
        [str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"{command} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result.stdout


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{path.name} has no {old!r}"
    path.write_text(text.replace(old, new, 1))


def add_apps(settings: Path, lines: str) -> None:
    """Add the INSTALLED_APPS *lines* at the end of the list startproject wrote."""
    text = settings.read_text()
    start = text.index("INSTALLED_APPS = [\n")
    end = text.index("\n]\n", start) + 1
    settings.write_text(text[:end] + lines + text[end:])


def lines_between(code: str, start: str, end: str) -> str:
    """Return the lines of *code* strictly between the line *start* and the next line *end*, but ``# ...``."""
    lines = code.splitlines()
    first = lines.index(start) + 1
    last = lines.index(end, first)
    return "".join(line + "\n" for line in lines[first:last] if line.strip() != "# ...")


@pytest.fixture(scope="module")
def walk(tmp_path_factory):
    """The newcomer's project, its virtual environment, and the environment its commands run in."""
    require_browser()
    python = interpreter(PYTHON)
    if python is None:
        unavailable(f"the walkthrough needs Python {PYTHON}", remedy=f"pyenv install {PYTHON}")
    base = tmp_path_factory.mktemp("walk")

    # pip install django-realtime-log, from the wheel this checkout builds.
    source = base / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*UNPACKED))
    run(sys.executable, "-m", "build", "--wheel", "--outdir", base / "dist", source, cwd=base)
    [wheel] = (base / "dist").glob("*.whl")
    assert wheel.name.startswith("django_realtime_log-")
    venv = base / "venv"
    run(python, "-m", "venv", venv, cwd=base)
    bin_ = venv / "bin"
    run(bin_ / "pip", "install", "-q", wheel, DJANGO, "pytest-django", "django-htmx", cwd=base)

    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "REALTIME", "PYTHON"))}
    env.update(PATH=f"{bin_}:{env['PATH']}", DJANGO_SETTINGS_MODULE="mysite.settings")
    site = base / "site"
    site.mkdir()
    run(bin_ / "django-admin", "startproject", "mysite", site, cwd=base, env=env)
    version = run(bin_ / "python", "-c", "import django; print(django.get_version())", cwd=site, env=env)
    assert version.startswith("6.1"), version
    manage = [bin_ / "python", "manage.py"]
    settings = site / "mysite" / "settings.py"
    urls = site / "mysite" / "urls.py"

    # Quickstart, step 2: the app of one's own, the apps in INSTALLED_APPS, REALTIME, the URLs.
    command = block("quickstart.md", "python manage.py startapp chat").split()
    run(bin_ / "python", *command[1:], cwd=site, env=env)
    settings_block = block("quickstart.md", "# settings.py")
    add_apps(settings, lines_between(settings_block, "INSTALLED_APPS = [", "]"))
    with settings.open("a") as file:
        file.write("\n" + settings_block[settings_block.index("REALTIME = {") :])
    routes = lines_between(block("quickstart.md", "# urls.py", containing="include("), "urlpatterns = [", "]")
    edit(urls, "from django.urls import path", "from django.urls import include, path")
    edit(urls, "    path('admin/', admin.site.urls),\n", "    path('admin/', admin.site.urls),\n" + routes)
    # Step 3: the views, their URLs.
    (site / "chat" / "views.py").write_text(block("quickstart.md", "# chat/views.py"))
    with urls.open("a") as file:
        file.write("\n" + block("quickstart.md", "# urls.py", containing="chat.send"))
    # Step 4: the room's template.
    room = site / "chat" / "templates" / "chat" / "room.html"
    room.parent.mkdir(parents=True)
    room.write_text(block("quickstart.md", "<!doctype html>"))

    # The tutorial, step 2: the app.
    run(*manage, "startapp", "notifications", cwd=site, env=env)
    apps = block("tutorial.md", "# settings.py", containing="INSTALLED_APPS")
    installed = lines_between(apps, "INSTALLED_APPS = [", "]")
    assert '"django_realtime",' in installed
    add_apps(settings, installed.replace('    "django_realtime",\n', ""))
    # Step 3: the hook, and the quickstart's REALTIME grown as the tutorial says (its dict replaces the first).
    app = site / "notifications"
    (app / "realtime.py").write_text(block("tutorial.md", "# notifications/realtime.py"))
    realtime = block("tutorial.md", "# settings.py", containing="REALTIME")
    assert '"PUBLIC_CHANNELS": ["chat:*"]' in realtime
    with settings.open("a") as file:  # the tutorial's REALTIME replaces the quickstart's, as it says
        file.write("\n" + realtime.replace('["chat:*"]', '["chat:*", "shop:*"]'))  # htmx.md's channel added
    # Step 4: publish.
    for name in ("notify.py", "signals.py", "apps.py"):
        (app / name).write_text(block("tutorial.md", f"# notifications/{name}"))
    (app / "views.py").write_text(block("tutorial.md", "# notifications/views.py", containing="def test_notification"))
    with urls.open("a") as file:
        file.write("\n" + block("tutorial.md", "# urls.py", containing="test_notification"))
    # Step 5: the base template, the header, a page that extends the base template and its URL.
    edit(settings, "'DIRS': [],", "'DIRS': [BASE_DIR / 'templates'],")
    templates = site / "templates"
    templates.mkdir()
    (templates / "base.html").write_text(block("tutorial.md", "<!doctype html>"))
    header = app / "templates" / "notifications" / "header.html"
    header.parent.mkdir(parents=True)
    header.write_text(block("tutorial.md", "{% load realtime %}", containing="realtime_script"))
    (templates / "home.html").write_text(block("tutorial.md", '{% extends "base.html" %}'))
    with urls.open("a") as file:
        file.write("\n" + block("tutorial.md", "# urls.py", containing='name="home"'))
    # Step 7: a stream of one's own, and its page.
    with (app / "views.py").open("a") as file:
        file.write("\n\n" + block("tutorial.md", "# notifications/views.py", containing="stream_channels"))
    (app / "templates" / "notifications" / "list.html").write_text(
        block("tutorial.md", "{% load realtime %}", containing="EventSource")
    )
    with urls.open("a") as file:
        file.write("\n" + block("tutorial.md", "# urls.py", containing="notification_stream"))
    # Step 8: the tests, and pytest-django's setting.
    (app / "test_notifications.py").write_text(block("tutorial.md", "# notifications/test_notifications.py"))
    (site / "pytest.ini").write_text("[pytest]\nDJANGO_SETTINGS_MODULE = mysite.settings\n")

    # The htmx page: django_htmx for its static files, the page's block as htmx.md gives it.
    add_apps(settings, '    "django_htmx",\n')
    shop = templates / "shop"
    shop.mkdir()
    orders = block("htmx.md", "{% load static realtime %}")
    (shop / "orders.html").write_text(f"<!doctype html>\n<title>Orders</title>\n{orders}")
    # Not in the docs: the fragment's template.
    (shop / "order_row.html").write_text('<li class="order"><b>{{ order }}</b>\n<small>new</small></li>\n')
    with urls.open("a") as file:  # not in the docs either: the page's URL
        file.write('\nurlpatterns += [path("orders/", TemplateView.as_view(template_name="shop/orders.html"))]\n')

    run(*manage, "check", cwd=site, env=env)
    run(*manage, "migrate", "-v0", cwd=site, env=env)
    return site, manage, env


def test_the_tutorials_own_tests_pass_on_django_6_1(walk):
    site, manage, env = walk
    output = run(manage[0].parent / "pytest", "-q", "-p", "no:cacheprovider", cwd=site, env=env)
    assert re.search(r"\b3 passed\b", output), output


def test_a_newcomer_gets_the_tutorials_notifications_and_the_htmx_list_in_a_browser(walk):
    from playwright.sync_api import sync_playwright

    site, manage, env = walk
    run(
        *manage,
        "createsuperuser",
        "--noinput",
        "--username",
        "ann",
        "--email",
        "ann@example.com",
        cwd=site,
        env={**env, "DJANGO_SUPERUSER_PASSWORD": PASSWORD},
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (site / "runserver.log").open("wb")
    server = subprocess.Popen(
        [*map(str, manage), "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=site,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, (site / "runserver.log").read_text()
            try:
                httpx.get(f"{url}/admin/login/", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "runserver did not answer"
                time.sleep(0.1)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            try:
                _try_it(browser, url, manage, site, env)
            finally:
                browser.close()
    finally:
        os.killpg(server.pid, 9)
        server.wait()
        log.close()
    # The first run is quiet on the server too: no page tried a WebSocket runserver does not serve.
    assert "/ws/" not in (site / "runserver.log").read_text()


class Console:
    """The console errors and uncaught exceptions of every page a test opens: a newcomer sees them in red."""

    def __init__(self, browser) -> None:
        self.browser = browser
        self.errors: list[str] = []

    def new_page(self, context=None):
        page = (context or self.browser.new_context()).new_page()
        page.set_default_timeout(20_000)
        page.on("console", lambda message: self._console(page, message))
        page.on("pageerror", lambda error: self.errors.append(f"{page.url}: uncaught {error}"))
        return page

    def _console(self, page, message) -> None:
        source = message.location.get("url", "")
        # The browser asks each new origin for /favicon.ico by itself; startproject serves none.
        if message.type == "error" and not source.endswith("/favicon.ico"):
            self.errors.append(f"{page.url}: {message.text} ({source})")


def _log_in(console, url):
    # "Log in ... through the admin's login page, which then takes you to the home page."
    page = console.new_page()
    page.goto(f"{url}/admin/login/?next=/")
    page.fill("#id_username", "ann")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{url}/")
    return page


def _texts(page, selector):
    return page.eval_on_selector_all(selector, "nodes => nodes.map((node) => node.textContent)")


def _wait_for_text(page, selector, start, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(text.startswith(start) for text in _texts(page, selector)):
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"no {selector} {start!r}: {_texts(page, selector)}")


def _shell(command: str, manage, site, env) -> None:
    """Run a ``python manage.py ...`` line of the docs as it stands, its quoted JSON one argument."""
    words = re.findall(r"'[^']*'|\S+", command.strip())
    assert words[:2] == ["python", "manage.py"], words
    run(*manage, *(word.strip("'") for word in words[2:]), cwd=site, env=env)


def _quickstart(console, url, manage, site, env):
    # "Open http://127.0.0.1:8000/chat/lobby/ in two tabs and send a message from one: both show it."
    context = console.browser.new_context()
    tabs = [console.new_page(context), console.new_page(context)]
    for tab in tabs:
        tab.goto(f"{url}/chat/lobby/")
    tabs[0].fill("input[name=text]", "hi from a tab")
    tabs[0].click("button[type=submit]")
    for tab in tabs:
        _wait_for_text(tab, "#log li", "hi from a tab")
    # "Any process can publish to the room. In a second shell: ... Both tabs show it."
    publish = block("quickstart.md", "python manage.py publish_event chat:lobby")
    _shell(publish, manage, site, env)
    for tab in tabs:
        _wait_for_text(tab, "#log li", "hello from the shell")
    # "follow the channel with curl ... and publish again. curl prints:"
    curl = block("quickstart.md", "curl -N")
    [stream_url] = re.findall(r"'([^']+)'", curl)
    printed = block("quickstart.md", "retry: 3000")
    seen: list[str] = []
    with httpx.stream("GET", stream_url.replace("http://127.0.0.1:8000", url), timeout=20) as response:
        lines = response.iter_lines()
        for line in lines:
            seen.append(line)
            if line == "":  # the prelude, before any event: now publish again
                break
        _shell(publish, manage, site, env)
        for line in lines:
            if not line.startswith(":"):  # keepalive comments, as the docs say after the block
                seen.append(line)
            if line == "" and len(seen) > 2:
                break
    assert "\n".join(seen) + "\n" == printed, seen
    context.close()


def _tutorial(console, url, manage, site, env):
    # "Press 'Send me a test notification': a toast appears."
    page = _log_in(console, url)
    page.click("#test-notification button")
    _wait_for_text(page, ".toast", "This is a test notification.")
    # "Log in as the same user in another browser: the first browser shows 'New sign-in ...'."
    other = _log_in(console, url)
    _wait_for_text(page, ".toast", "New sign-in to your account from")
    other.context.close()
    # "From a shell, which is another process": the tutorial's command, as it stands.
    command = block("tutorial.md", "python manage.py publish_event user:1 --event notification", containing="shell")
    _shell(command.strip().splitlines()[0], manage, site, env)
    _wait_for_text(page, ".toast", "Hello from the shell")
    # Three: not the page's own sign-in, committed in the login request before the page rendered, which
    # {% realtime_cursor %} covers.
    assert page.text_content("#unread") == "3", _texts(page, ".toast")

    # Step 7: "Open http://127.0.0.1:8000/notifications/ and send yourself a notification from the shell."
    listing = console.new_page(page.context)
    listing.goto(f"{url}/notifications/")
    _shell(command.strip().splitlines()[0], manage, site, env)
    _wait_for_text(listing, "#notifications li", "Hello from the shell")


def _htmx(console, url, manage, site, env):
    # The htmx page: publish_html() from a shell, the fragment swapped in as HTML, newest first.
    orders = console.new_page()
    orders.goto(f"{url}/orders/")
    publish = block("htmx.md", "from django_realtime import publish_html")
    for order in ("tea & <cake>", "scones"):
        script = f"order = {order!r}\n{publish}"
        run(*manage, "shell", "-c", script, cwd=site, env=env)
    orders.wait_for_function("document.querySelectorAll('li.order').length === 2", timeout=20_000)
    items = orders.eval_on_selector_all("li.order b", "nodes => nodes.map((node) => node.textContent)")
    assert items == ["scones", "tea & <cake>"]
    assert orders.eval_on_selector_all("li.order small", "nodes => nodes.length") == 2


def _try_it(browser, url, manage, site, env):
    console = Console(browser)
    _quickstart(console, url, manage, site, env)
    _tutorial(console, url, manage, site, env)
    _htmx(console, url, manage, site, env)
    assert console.errors == [], console.errors
