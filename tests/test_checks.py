import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connections
from django.middleware.gzip import GZipMiddleware
from django.test import override_settings

from tests.support.checks import realtime_check_ids

ROOT = Path(__file__).resolve().parent.parent


def ids():
    return realtime_check_ids()


def test_a_good_configuration_passes():
    assert ids() == []


def test_an_unknown_backend_is_an_error():
    with override_settings(REALTIME={"BACKEND": "nosuch.Backend"}):
        assert ids() == ["django_realtime.E001"]


def test_an_unimportable_authorize_hook_is_an_error():
    with override_settings(REALTIME={"AUTHORIZE": "nosuch.hook"}):
        assert ids() == ["django_realtime.E002"]


def test_djangos_gzip_middleware_is_a_warning(settings):
    settings.MIDDLEWARE = ["django.middleware.gzip.GZipMiddleware", *settings.MIDDLEWARE]
    assert ids() == ["django_realtime.W001"]


class InheritedGZipMiddleware(GZipMiddleware):
    """Django's, under a name of a project's own: it compresses streams just the same."""


class StreamSkippingGZipMiddleware(GZipMiddleware):
    def process_response(self, request, response):
        return response if response.streaming else super().process_response(request, response)


def test_a_subclass_of_djangos_gzip_middleware_is_a_warning_unless_it_answers_itself(settings):
    middleware = settings.MIDDLEWARE
    settings.MIDDLEWARE = [f"{__name__}.InheritedGZipMiddleware", *middleware]
    assert ids() == ["django_realtime.W001"]
    settings.MIDDLEWARE = [f"{__name__}.StreamSkippingGZipMiddleware", *middleware]
    assert ids() == []
    # The demo's: django_realtime's own, which passes event streams through.
    assert "django_realtime.sse.middleware.GZipMiddleware" in middleware


def test_django_compression_middleware_is_a_warning(settings):
    # Named, not imported: whether the package is installed or not.
    settings.MIDDLEWARE = ["compression_middleware.middleware.CompressionMiddleware", *settings.MIDDLEWARE]
    assert ids() == ["django_realtime.W005"]


def test_unknown_settings_keys_are_an_error_not_a_crash():
    with override_settings(REALTIME={"BAKCEND": "polling"}):
        assert ids() == ["django_realtime.E003"]


def test_the_postgres_backend_on_sqlite_is_an_error():
    with override_settings(REALTIME={"BACKEND": "postgres"}):
        assert ids() == ["django_realtime.E005"]


def test_an_unknown_log_database_is_an_error():
    with override_settings(REALTIME={"DATABASE": "nosuch"}):
        assert ids() == ["django_realtime.E004"]


def test_the_inprocess_backend_in_production_is_a_warning():
    with override_settings(REALTIME={"BACKEND": "inprocess"}, DEBUG=False):
        assert ids() == ["django_realtime.W002"]
    with override_settings(REALTIME={"BACKEND": "inprocess"}, DEBUG=True):
        assert ids() == []


def test_a_backend_whose_driver_is_missing_is_an_error(monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "redis" else find_spec(name, *a))
    with override_settings(REALTIME={"BACKEND": "redis"}):
        assert ids() == ["django_realtime.E006"]


def test_a_retention_pattern_the_database_cannot_match_is_an_error():
    with override_settings(REALTIME={"RETENTION": {"x[!]": {"MAX_AGE": 60}}}):
        assert ids() == ["django_realtime.E003"]


def deploy_ids():
    return realtime_check_ids(deploy=True)


def test_a_good_configuration_passes_the_deploy_checks(monkeypatch):
    monkeypatch.delenv("GUNICORN_CMD_ARGS", raising=False)
    assert deploy_ids() == []


def test_gunicorn_cmd_args_choosing_a_threaded_worker_is_a_deploy_warning(monkeypatch):
    for cmd_args in ("-k sync", "--threads 8"):
        monkeypatch.setenv("GUNICORN_CMD_ARGS", cmd_args)
        assert deploy_ids() == ["django_realtime.W003"]
        assert ids() == []  # a deploy check only
    # Several workers share metrics through PROMETHEUS_MULTIPROC_DIR, or W010 says so (test_metrics.py).
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/tmp")
    for cmd_args in ("-k gevent --worker-connections 1200", "-w 4"):
        monkeypatch.setenv("GUNICORN_CMD_ARGS", cmd_args)
        assert deploy_ids() == []


def test_manage_py_check_deploy_reports_a_threaded_worker():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "GUNICORN_CMD_ARGS": "-k gthread --threads 4"}
    command = [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "CRITICAL"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)

    assert "django_realtime.W003" in result.stderr, result.stderr
    assert "GUNICORN_CMD_ARGS chooses the gthread worker" in result.stderr


@pytest.mark.postgres
def test_the_postgres_backend_listening_through_pgbouncer_is_a_deploy_warning(monkeypatch):
    # The postgres alias of tests/settings.py; the check reads its settings and connects to nothing.
    entry = connections["postgres"].settings_dict
    realtime = {"BACKEND": "postgres", "DATABASE": "postgres"}
    with override_settings(REALTIME=realtime):
        assert deploy_ids() == []
        monkeypatch.setitem(entry, "DISABLE_SERVER_SIDE_CURSORS", True)  # Django's setting for transaction pooling
        assert deploy_ids() == ["django_realtime.W004"]
        monkeypatch.setitem(entry, "DISABLE_SERVER_SIDE_CURSORS", False)
        monkeypatch.setitem(entry, "PORT", "6432")  # PgBouncer's
        assert deploy_ids() == ["django_realtime.W004"]
        assert ids() == []  # a deploy check only
    # Still on port 6432: a listener connection string of its own is past the pool...
    with override_settings(REALTIME={**realtime, "OPTIONS": {"dsn": "host=db.internal port=5432 dbname=test"}}):
        assert deploy_ids() == []
    # ...and so is a listener on the alias its database option names (here SQLite's).
    with override_settings(REALTIME={**realtime, "OPTIONS": {"database": "default"}}):
        assert deploy_ids() == []
    # The other backends read the log with plain queries, which transaction pooling serves.
    with override_settings(REALTIME={"BACKEND": "polling", "DATABASE": "postgres"}):
        assert deploy_ids() == []


def test_worker_connections_not_above_max_streams_is_a_deploy_warning(monkeypatch):
    monkeypatch.setenv("GUNICORN_CMD_ARGS", "-k gevent --worker-connections 1000")  # MAX_STREAMS is 1000 too
    assert deploy_ids() == ["django_realtime.W006"]
    with override_settings(REALTIME={"MAX_STREAMS": None}):
        monkeypatch.setenv("GUNICORN_CMD_ARGS", "--worker-connections 5000")
        assert deploy_ids() == ["django_realtime.W006"]
    monkeypatch.setenv("GUNICORN_CMD_ARGS", "-k gevent --worker-connections 1200")
    assert deploy_ids() == []
    monkeypatch.setenv("GUNICORN_CMD_ARGS", "-k gevent")  # the command line may give it: not known here
    assert deploy_ids() == []
