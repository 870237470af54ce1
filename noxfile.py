"""Run the test suite on each supported pair of Python and Django versions.

``nox`` runs the whole matrix; ``nox -t ci`` the sessions that .ci/run adds
to the README's test command; ``nox -t django6.0`` or ``nox -t py3.13`` one
column; ``nox -s "tests(py3.13-django6.1)"`` one session.  Arguments after
``--`` replace a session's pytest arguments, e.g.
``nox -t django6.1 -- -x -k replay``.  Each session makes a fresh virtual
environment under .nox/ and installs the package with its test extra there.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
# This machine reaches no download site for interpreters: use those installed.
nox.options.download_python = "never"
# nox.options.error_on_missing_interpreters is left to nox's default, which
# is whether CI is set: locally a session whose Python is missing is skipped,
# in CI it fails.

#: Everything that starts no server process (about 50 s): the core, both
#: transports' protocol code, the views through Django's test client and
#: every backend against the real PostgreSQL and Redis.
UNIT = ("-m", "not server")
#: UNIT, plus the demo under gunicorn (gevent), daphne and runserver on
#: SQLite, for SSE and WebSockets (tests/test_servers.py and
#: tests/test_websocket_servers.py, marked ``handlers``; about 1.5 min): what
#: a Django release can break in its request handlers, runserver or ASGI
#: streaming.
SERVERS = ("-m", "(not server or handlers) and not browser and not postgres and not matrix and not load")

# (python, django, pytest arguments, in CI).  Real servers run at least once
# on every Django in CI: the README's command in .ci/run runs the full suite
# on Python 3.11 and Django 5.2 (which is why that pair is left out of CI
# here), this file runs the servers on (3.12, 6.0) and on (3.13, 6.1), the
# newest pair.  The rest of the server tests (faults, slow clients, presence
# and calls across servers, security, scale-out, the browser, the chaos
# soak, the server matrix, the newcomer's walk through the docs, which
# makes a Python 3.13 and Django 6.1 environment of its own) exercise this
# package and the services rather than Django: the README's command runs
# them once per CI run.  The other pairs check, quickly,
# that the package installs and its unit tests pass there; they run locally
# (``nox``), not in CI, which stays under 20 minutes: Python 3.12 and 3.13
# and Django 5.2, 6.0 and 6.1 are each in CI already.
MATRIX = [
    ("3.11", "5.2", UNIT, False),
    ("3.12", "5.2", UNIT, False),
    ("3.12", "6.0", SERVERS, True),
    ("3.13", "6.0", UNIT, False),
    ("3.12", "6.1", UNIT, False),
    ("3.13", "6.1", SERVERS, True),
]


def mysql_client_library() -> bool:
    """Return whether mysqlclient can be built here (in CI it must: the MariaDB tests fail without it)."""
    found = shutil.which("mariadb_config") or shutil.which("mysql_config")
    return bool(found or os.environ.get("CI"))


def interpreter(version: str) -> str:
    """Return pyenv's newest build of CPython *version* if it has one, else *version* for nox to find.

    pyenv's ``pythonX.Y`` shims run only the versions PYENV_VERSION (or a
    .python-version file) names, so nox cannot use them as they stand.
    """
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"), "versions")
    builds = {}
    for path in root.glob(f"{version}.*/bin/python{version}"):
        build = path.parent.parent.name
        if re.fullmatch(rf"{re.escape(version)}\.\d+", build):
            builds[int(build.rsplit(".", 1)[1])] = path
    return str(builds[max(builds)]) if builds else version


@nox.session
@nox.parametrize(
    ("python", "django", "pytest_args"),
    [
        nox.param(
            interpreter(python),
            django,
            args,
            id=f"py{python}-django{django}",
            tags=[f"py{python}", f"django{django}", *(["ci"] if ci else [])],
        )
        for python, django, args, ci in MATRIX
    ],
)
def tests(session: nox.Session, django: str, pytest_args: tuple[str, ...]) -> None:
    """Install the package with its test extra and Django *django*, and run pytest."""
    extras = "test,mysql" if mysql_client_library() else "test"
    session.install("-e", f".[{extras}]", f"django~={django}.0")
    session.run("python", "-m", "django", "--version")
    session.run("pytest", *(session.posargs or pytest_args))
