"""System checks for django_realtime's settings."""

from __future__ import annotations

import importlib.util
import os

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from . import gunicorn_server
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
    return errors


#: Middleware that compresses a stream into a buffer it sends only when it fills (Django's
#: compress_sequence, and django-compression-middleware's zstd and brotli streams alike): a
#: browser gets no event until then.  Under ASGI, Django's compresses each chunk as a gzip
#: member of its own instead, and Chromium decodes the first member only.
BUFFERING_MIDDLEWARE = {
    "django.middleware.gzip.GZipMiddleware": (
        "django_realtime.W001",
        "compresses event streams as Django's GZipMiddleware does",
        "Use 'django_realtime.sse.middleware.GZipMiddleware' in its place.",
    ),
    "compression_middleware.middleware.CompressionMiddleware": (
        "django_realtime.W005",
        "compresses event streams as django-compression-middleware does (zstd, brotli or gzip)",
        "Remove it, or subclass it to return text/event-stream responses unchanged, as "
        "django_realtime.sse.middleware.GZipMiddleware does for Django's.",
    ),
}


@register()
def check_compression_middleware(app_configs, **kwargs):
    """Warn about middleware that holds event streams back: it, or a subclass that compresses as it does."""
    warnings = []
    for path in settings.MIDDLEWARE:
        base = _buffering_base(path)
        if base is not None:
            check_id, what, hint = BUFFERING_MIDDLEWARE[base]
            warnings.append(
                Warning(
                    f"{path!r} in MIDDLEWARE {what}: it holds events back until its buffer fills, or for good.",
                    hint=hint,
                    id=check_id,
                )
            )
    return warnings


def _buffering_base(path: str) -> str | None:
    """Return the entry of BUFFERING_MIDDLEWARE whose compression the middleware *path* keeps, if any."""
    if path in BUFFERING_MIDDLEWARE:
        return path
    try:
        middleware = import_string(path)
    except ImportError:  # Django reports it when it loads the middleware
        return None
    for base_path in BUFFERING_MIDDLEWARE:
        try:
            base = import_string(base_path)
        except ImportError:  # not installed, so nothing subclasses it
            continue
        # A subclass that keeps the base's process_response compresses streams as it does.
        if isinstance(middleware, type) and issubclass(middleware, base):
            if getattr(middleware, "process_response", None) is base.process_response:
                return base_path
    return None


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
    """Warn when metrics are on and GUNICORN_CMD_ARGS (or WEB_CONCURRENCY) runs several gunicorn workers
    without PROMETHEUS_MULTIPROC_DIR: each scrape would show one worker's figures (W010)."""
    from .metrics import enabled

    try:
        on = enabled()
    except ImproperlyConfigured:  # check_settings reports it
        return []
    if not on or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return []
    workers = _gunicorn_workers()
    if workers is None or workers < 2:
        return []
    return [
        Warning(
            f"Metrics are on and gunicorn runs {workers} workers, but PROMETHEUS_MULTIPROC_DIR is not set: "
            "each scrape would show one worker's figures.",
            hint="Set PROMETHEUS_MULTIPROC_DIR to an empty directory for the servers (and this check), and mark "
            "dead workers in gunicorn's child_exit hook (docs/metrics.md).",
            id="django_realtime.W010",
        )
    ]


def _gunicorn_workers() -> int | None:
    """Return the workers GUNICORN_CMD_ARGS or WEB_CONCURRENCY give gunicorn, or None if neither does."""
    parsed = gunicorn_server.parse_cmd_args(os.environ.get("GUNICORN_CMD_ARGS", ""))
    if parsed is None:
        return None
    config, given = parsed
    if "workers" in given:
        return int(config.workers)
    concurrency = os.environ.get("WEB_CONCURRENCY", "")  # gunicorn's default, read when gunicorn is imported
    return int(concurrency) if concurrency.isdigit() else None


@register(deploy=True)
def check_stream_worker(app_configs, **kwargs):
    """Warn when GUNICORN_CMD_ARGS chooses a gunicorn worker class that gives each stream an OS thread."""
    worker = gunicorn_server.configured_worker(os.environ.get("GUNICORN_CMD_ARGS", ""))
    if worker is None:
        return []
    return [
        Warning(
            f"GUNICORN_CMD_ARGS chooses the {worker} worker: {gunicorn_server.THREADED[worker]}.",
            hint=gunicorn_server.HINT,
            id="django_realtime.W003",
        )
    ]


@register(deploy=True)
def check_worker_connections(app_configs, **kwargs):
    """Warn when GUNICORN_CMD_ARGS caps a worker's connections at or below MAX_STREAMS: pages then wait, not 503s."""
    connections = gunicorn_server.configured_worker_connections(os.environ.get("GUNICORN_CMD_ARGS", ""))
    try:
        limit = realtime_settings.MAX_STREAMS
    except ImproperlyConfigured:  # check_settings reports it
        return []
    if connections is None or (limit is not None and limit < connections):
        return []
    shown = "no limit" if limit is None else limit
    return [
        Warning(
            f"GUNICORN_CMD_ARGS gives --worker-connections {connections}, and REALTIME['MAX_STREAMS'] is {shown}: "
            "a worker full of streams accepts no connection at all, so its pages wait instead of its "
            "streams being refused with a 503.",
            hint="Keep MAX_STREAMS below --worker-connections, with room for the pages "
            "(for example MAX_STREAMS 1000 and --worker-connections 1200).",
            id="django_realtime.W006",
        )
    ]


#: PgBouncer's default port.
PGBOUNCER_PORT = 6432


@register(deploy=True)
def check_listener_behind_pooler(app_configs, **kwargs):
    """Warn when the postgres backend would LISTEN through what looks like PgBouncer in transaction mode."""
    from django.db import connections

    from .backends import load_backend
    from .backends.postgres import PostgresBackend

    try:
        backend = load_backend(realtime_settings.BACKEND, realtime_settings.OPTIONS)
    except Exception:  # check_settings reports it
        return []
    if not isinstance(backend, PostgresBackend) or backend.dsn:
        return []
    alias = backend.database or realtime_settings.DATABASE
    if alias not in connections:
        return []
    entry = connections[alias].settings_dict
    # Django's documented setting for transaction pooling, and PgBouncer's port.
    signs = []
    if entry.get("DISABLE_SERVER_SIDE_CURSORS"):
        signs.append("DISABLE_SERVER_SIDE_CURSORS is True")
    if str(entry.get("PORT")) == str(PGBOUNCER_PORT):
        signs.append(f"PORT is {PGBOUNCER_PORT}")
    if not signs:
        return []
    return [
        Warning(
            f"The postgres backend listens through DATABASES[{alias!r}], which looks like PgBouncer "
            f"({' and '.join(signs)}): in transaction mode LISTEN hears nothing, and other processes' "
            "events reach this one's streams late, at its hub's next read of the log (every KEEPALIVE / 2 seconds).",
            hint="Give REALTIME['OPTIONS']['dsn'] a connection string that reaches PostgreSQL directly "
            "or through a session-mode pool.",
            id="django_realtime.W004",
        )
    ]


@register()
def check_render_later(app_configs, **kwargs):
    """Check that a tasks framework is there when a live model renders later."""
    from .live.declarations import _registry

    models = [declaration.model for declaration in _registry.values() if declaration.render == "later"]
    if not models:
        return []  # nothing imports the tasks framework (nor reads TASKS) for a site that renders now
    from .live import later

    if later.available():
        return []
    return [
        Error(
            f"{model._meta.label} is declared with render='later', and {later.MISSING}.",
            hint="Install django-tasks (on Django 5.2) or upgrade to Django 6.0, or declare render='now'.",
            obj=model,
            id="django_realtime.E007",
        )
        for model in models
    ]
