"""Checks that the backend suits the log's database and the deployment (E004-E006, W002; W004 at --deploy)."""

from __future__ import annotations

import importlib.util

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register

from ..conf import realtime_settings


def check_backend_fits() -> list[CheckMessage]:
    """Check that the chosen backend suits the database and the deployment (check_settings calls this).

    At most one of E004, E005, E006 and W002, and none while E003 stands.
    """
    from django.db import connections

    from ..backends import ALIASES

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


#: PgBouncer's default port.
PGBOUNCER_PORT = 6432


@register(deploy=True)
def check_listener_behind_pooler(app_configs, **kwargs):
    """Warn when the postgres backend would LISTEN through what looks like PgBouncer in transaction mode."""
    from django.db import connections

    from ..backends import load_backend
    from ..backends.postgres import PostgresBackend

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
