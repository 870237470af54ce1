"""System checks for django_realtime's settings."""

from __future__ import annotations

import importlib.util
import os

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from .conf import realtime_settings


@register()
def check_settings(app_configs, **kwargs):
    """Check that the backend and the authorization hook can be loaded."""
    from .backends import load_backend

    try:
        realtime_settings.BACKEND  # noqa: B018  (loads and validates the whole dict)
    except ImproperlyConfigured as exc:
        return [Error(str(exc), hint="Fix or remove the REALTIME keys named.", id="django_realtime.E003")]
    errors: list[CheckMessage] = []
    try:
        load_backend(realtime_settings.BACKEND, realtime_settings.OPTIONS)
    except Exception as exc:
        errors.append(
            Error(
                f"REALTIME['BACKEND'] cannot be loaded: {exc}",
                hint="Use 'polling', 'inprocess', 'postgres', 'redis' or a dotted path to a BaseBackend subclass.",
                id="django_realtime.E001",
            )
        )
    hook = realtime_settings.AUTHORIZE
    if isinstance(hook, str):
        try:
            import_string(hook)
        except ImportError as exc:
            errors.append(
                Error(
                    f"REALTIME['AUTHORIZE'] = {hook!r} cannot be imported: {exc}",
                    hint="Give the dotted path of a callable(user, channel, action) -> bool.",
                    id="django_realtime.E002",
                )
            )
    errors += _check_backend_fits()
    if "django.middleware.gzip.GZipMiddleware" in settings.MIDDLEWARE:
        errors.append(
            Warning(
                "Django's GZipMiddleware holds event streams back until they end.",
                hint="Use 'django_realtime.sse.middleware.GZipMiddleware' in its place.",
                id="django_realtime.W001",
            )
        )
    return errors


def _check_backend_fits():
    """Check that the chosen backend suits the database and the deployment."""
    from django.db import connections

    from .backends import ALIASES

    backend = ALIASES.get(realtime_settings.BACKEND, realtime_settings.BACKEND)
    alias = realtime_settings.DATABASE
    if alias not in connections:
        return [
            Error(
                f"REALTIME['DATABASE'] = {alias!r} is not in DATABASES.",
                hint="Name the database alias that holds the event log.",
                id="django_realtime.E004",
            )
        ]
    drivers = {ALIASES["postgres"]: ("psycopg", "postgres"), ALIASES["redis"]: ("redis", "redis")}
    if backend in drivers:
        module, extra = drivers[backend]
        if importlib.util.find_spec(module) is None:
            return [
                Error(
                    f"The {extra} backend needs the {module} package, which is not installed.",
                    hint=f"pip install 'django-realtime-log[{extra}]'",
                    id="django_realtime.E006",
                )
            ]
    vendor = connections[alias].vendor
    if backend == ALIASES["postgres"] and vendor != "postgresql":
        return [
            Error(
                f"The postgres backend needs the event log on PostgreSQL, but {alias!r} is {vendor}.",
                hint="Use BACKEND 'polling' or 'redis', or move the log to PostgreSQL with REALTIME['DATABASE'].",
                id="django_realtime.E005",
            )
        ]
    if backend == ALIASES["inprocess"] and not settings.DEBUG:
        return [
            Warning(
                "The inprocess backend wakes streams of the publishing process only; with several "
                "workers or a publish_event from cron, other processes never see those events live.",
                hint="Use 'polling' (the default), 'postgres' or 'redis' unless you run exactly one process.",
                id="django_realtime.W002",
            )
        ]
    return []


@register()
def check_metrics(app_configs, **kwargs):
    """Check that metrics asked for can be served: prometheus_client is installed (E010)."""
    from .metrics import available

    try:
        wanted = realtime_settings.METRICS
    except ImproperlyConfigured:
        return []  # E003 reports it
    if wanted is True and not available():
        return [
            Error(
                "REALTIME['METRICS'] is True but prometheus_client is not installed.",
                hint="pip install 'django-realtime-log[metrics]', or set METRICS to None (on when installed).",
                id="django_realtime.E010",
            )
        ]
    return []


@register(deploy=True)
def check_metrics_multiprocess(app_configs, **kwargs):
    """Check that metrics under gunicorn's workers add up across them: PROMETHEUS_MULTIPROC_DIR (W010)."""
    from .metrics import enabled

    try:
        on = enabled()
    except ImproperlyConfigured:
        return []
    if not on or os.environ.get("PROMETHEUS_MULTIPROC_DIR") or importlib.util.find_spec("gunicorn") is None:
        return []
    return [
        Warning(
            "Metrics are on and gunicorn is installed, but PROMETHEUS_MULTIPROC_DIR is not set: under several "
            "gunicorn workers each scrape would show one worker's figures.",
            hint="Set PROMETHEUS_MULTIPROC_DIR to an empty directory for the servers (and this check), and mark "
            "dead workers in gunicorn's child_exit hook (docs/metrics.md). Ignore it under one process.",
            id="django_realtime.W010",
        )
    ]
