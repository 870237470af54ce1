"""Run the client's JavaScript tests (tests/js/*.test.mjs) with Node's own test runner.

They drive realtime.js with fakes (a fetch() whose responses a test writes, a
WebSocket it opens and closes): the SSE parser, routing by channel, per-channel
errors, retry and backoff, the fallback.  The client's Cursor is checked against
the answers of django_realtime/cursor.py (tests/js/cursor_vectors.json, which
must be current).  The end-to-end cases against real servers, in Chromium, are
in test_browser.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from tests import cursor_vectors
from tests.support.services import unavailable

JS_TESTS = Path(__file__).resolve().parent / "js"
#: Node's test runner, fetch(), ReadableStream and EventTarget as the tests use them.
NODE_MAJOR = 18


def node() -> str:
    """Return the path of a recent enough node; skip without one, but fail in CI, which must run these tests."""
    found = shutil.which("node")
    problem = None
    if found is None:
        problem = "node is not installed"
    else:
        version = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
        match = re.match(r"v(\d+)\.", version)
        if not match or int(match.group(1)) < NODE_MAJOR:
            problem = f"node {version or '(unknown version)'} is older than {NODE_MAJOR}"
    if problem is None:
        return found
    unavailable(f"the JavaScript tests need Node.js {NODE_MAJOR} or later: {problem}", remedy=None)


def test_the_javascript_tests_pass():
    files = sorted(str(path) for path in JS_TESTS.glob("*.test.mjs"))
    assert files, f"no *.test.mjs under {JS_TESTS}"
    result = subprocess.run([node(), "--test", *files], capture_output=True, text=True, timeout=120)
    summary = "\n".join(line for line in result.stdout.splitlines() if line.startswith("# "))
    failures = "\n".join(line for line in result.stdout.splitlines() if line.startswith("not ok"))
    assert result.returncode == 0, f"{failures}\n{summary}\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}"
    assert re.search(r"^# pass [1-9]", result.stdout, re.M), result.stdout[-2000:]


def test_the_cursor_vectors_are_what_cursor_py_answers_now():
    """realtime.js's Cursor is tested against these: a change of cursor.py must regenerate them."""
    assert cursor_vectors.PATH.read_text() == cursor_vectors.render(), "run: python -m tests.cursor_vectors"
