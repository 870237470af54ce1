import signal

import pytest

from django_realtime.hub import reset_hub
from django_realtime.presence import reset_registry
from django_realtime.rates import limiter
from tests.support import services

#: Why a database alias that tests ask for may be missing from tests/settings.py.
ABSENT = {
    "postgres": f"PostgreSQL is not answering on {services.POSTGRES[0]}:{services.POSTGRES[1]}",
    "mysql": (
        f"MariaDB is not answering on {services.MARIADB[0]}:{services.MARIADB[1]}, or mysqlclient is not "
        "installed (pip install mysqlclient; it needs pkg-config and libmariadb-dev)"
    ),
}


def pytest_configure(config):
    """Let the processes the tests start be stopped with Ctrl-C, however this run was started.

    A shell without job control starts a background command with SIGINT
    ignored, and an ignored signal stays ignored across fork and exec: every
    command a test starts would ignore its Ctrl-C (tail_events, stopped as a
    person stops it, would hang).  A handler, unlike SIG_IGN, is reset to the
    default at exec.
    """
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (``-n``; the README's command), say which tests must share a worker.

    With ``--dist loadgroup`` (pyproject.toml) each group runs on one worker,
    one test after another: a module's tests, which share its fixtures and
    servers; and every test that touches MariaDB, whichever its module.  The
    hubs read INNODB_TRX, which lists the whole server's open transactions: a
    MariaDB test on another worker would hold back this one's ids and keep
    InnoDB's cache of the list stale for it.
    """
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        marker = item.get_closest_marker("django_db")
        databases = marker.kwargs.get("databases", ()) if marker is not None else ()
        named = item.nodeid.lower()
        if "mysql" in databases or any(word in named for word in ("mariadb", "mysql", "innodb")):
            group = "mariadb"
        else:
            group = item.nodeid.split("::", 1)[0]
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Skip (in CI: fail) a test that needs a database the settings could not configure, saying why."""
    from django.conf import settings

    marker = item.get_closest_marker("django_db")
    databases = marker.kwargs.get("databases", ()) if marker is not None else ()
    if databases == "__all__":
        return
    for alias in databases:
        if alias not in settings.DATABASES:
            services.unavailable(f"the test needs the {alias!r} database: {ABSENT.get(alias, 'not configured')}")


@pytest.fixture(autouse=True)
def _fresh_hub():
    """Give each test its own hub, presence registry and rate limits: all are per-process singletons."""
    reset_hub()
    reset_registry()
    limiter.clear()
    yield
    reset_hub()
    reset_registry()
