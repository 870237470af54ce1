"""Drive the demo in headless Chromium: servers that restart on their port, pages, and DOM reads.

Chromium is Debian's (``apt-get install chromium``), driven by Playwright's
Python package through ``executable_path``: Playwright's own browser
downloads are never used.  The servers are tests/support/servers.py's: a
``Server`` keeps its port, so that a test can kill one and start it again
where its pages reconnect.
"""

from __future__ import annotations

import importlib.util
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.servers import ROOT
from tests.support.services import unavailable

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
ARTIFACTS = ROOT / "tests" / "artifacts"
NICK_KEY = "django-realtime-demo:nick"


def require_browser() -> None:
    """Skip unless Chromium and Playwright are installed; in CI, fail instead: CI must run these tests."""
    missing = []
    if not (CHROMIUM.exists() or shutil.which("chromium")):
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    if importlib.util.find_spec("playwright") is None:
        missing.append("the playwright package (pip install playwright; never `playwright install`)")
    if not missing:
        return
    unavailable(f"browser tests need {' and '.join(missing)}", remedy=None)


def launched_chromium() -> Iterator[Any]:
    """Yield Chromium, launched through Playwright (skips, or fails under CI, where it is missing); close it after."""
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


class Pages:
    """A test's pages, each in a browser context of its own (another person's browser).

    ``close()`` (a fixture's teardown) closes them, prints their console and
    fails the test on any uncaught error a page raised.
    """

    def __init__(self, browser: Any, *, timeout: float = 15.0) -> None:
        self.browser = browser
        self.timeout = timeout
        self.contexts: list[Any] = []
        self.errors: list[str] = []
        self.console: list[str] = []

    def open(
        self,
        url: str | None,
        *,
        label: str | None = None,
        viewport: tuple[int, int] | None = None,
        cookies: list[dict[str, Any]] | None = None,
        init_script: str | None = None,
    ) -> Any:
        """Open *url* (None: a blank page) in a new context; *label* names the page in errors and the console."""
        options = {"viewport": {"width": viewport[0], "height": viewport[1]}} if viewport else {}
        context = self.browser.new_context(**options)
        self.contexts.append(context)
        if cookies:
            context.add_cookies(cookies)
        if init_script is not None:
            context.add_init_script(init_script)
        page = context.new_page()
        page.set_default_timeout(self.timeout * 1000)
        name = label or url
        page.on("pageerror", lambda error: self.errors.append(f"{name}: {error}"))
        page.on("console", lambda message: self.console.append(f"{name} {message.type}: {message.text}"))
        if url is not None:
            page.goto(url)
        return page

    def close(self) -> None:
        for context in self.contexts:
            context.close()
        print("--- browser console ---", *self.console, sep="\n")
        assert not self.errors, self.errors


def chromium_path() -> str:
    return str(CHROMIUM) if CHROMIUM.exists() else str(shutil.which("chromium"))


# The page ------------------------------------------------------------------

#: The texts of the messages in a room page, in the order shown.
MESSAGE_TEXTS = "() => Array.from(document.querySelectorAll('#messages li.msg .text'), (e) => e.textContent)"
#: The names in a room page's "Here now" list.
PEOPLE = "() => Array.from(document.querySelectorAll('#people .name'), (e) => e.textContent)"
#: The room page's notices (joined, left...).
NOTICES = "() => Array.from(document.querySelectorAll('#messages li.notice'), (e) => e.textContent)"


def wait_for_value(page: Any, script: str, expected: Any, timeout: float = 15.0) -> None:
    """Wait until *script* evaluates to *expected* in *page*; fail showing the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = page.evaluate(script)
        if value == expected:
            return
        if time.monotonic() > deadline:
            assert value == expected, f"after {timeout}s"
        page.wait_for_timeout(100)


def wait_for_state(page: Any, state: str, timeout: float = 15.0) -> None:
    """Wait until the page's connection status shows *state*."""
    page.wait_for_selector(f"#status[data-state={state}]", timeout=timeout * 1000)
