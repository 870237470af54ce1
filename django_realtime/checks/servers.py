"""Deploy checks of how gunicorn serves the streams, from GUNICORN_CMD_ARGS (W003, W006, W010)."""

from __future__ import annotations

import os

from django.core.checks import Warning, register
from django.core.exceptions import ImproperlyConfigured

from .. import gunicorn_server
from ..conf import realtime_settings


@register(deploy=True)
def check_metrics_multiprocess(app_configs, **kwargs):
    """Warn when metrics are on and GUNICORN_CMD_ARGS (or WEB_CONCURRENCY) runs several gunicorn workers
    without PROMETHEUS_MULTIPROC_DIR: each scrape would show one worker's figures (W010)."""
    from ..metrics import enabled

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
