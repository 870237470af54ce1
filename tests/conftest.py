import pytest

from django_realtime.hub import reset_hub
from django_realtime.presence import reset_registry
from django_realtime.rates import limiter
from tests import services

#: Why a database alias that tests ask for may be missing from tests/settings.py.
ABSENT = {
    "postgres": f"PostgreSQL is not answering on {services.POSTGRES[0]}:{services.POSTGRES[1]}",
    "mysql": (
        f"MariaDB is not answering on {services.MARIADB[0]}:{services.MARIADB[1]}, or mysqlclient is not "
        "installed (pip install mysqlclient; it needs pkg-config and libmariadb-dev)"
    ),
}


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
