"""Checks of the REALTIME settings: they are valid, and what they name can be loaded (E001-E003, E010)."""

from __future__ import annotations

from django.core.checks import CheckMessage, Error, register
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from ..conf import realtime_settings
from .backends import check_backend_fits


@register()
def check_settings(app_configs, **kwargs):
    """Check that the backend and the authorization hook can be loaded."""
    from ..backends import load_backend

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
    errors += check_backend_fits()
    return errors


@register()
def check_metrics(app_configs, **kwargs):
    """Check that metrics asked for can be served: prometheus_client is installed (E010)."""
    from ..metrics import available

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
