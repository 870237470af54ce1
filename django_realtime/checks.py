"""System checks for django_realtime's settings."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, Warning, register
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
    errors = []
    try:
        load_backend(realtime_settings.BACKEND, realtime_settings.OPTIONS)
    except Exception as exc:
        errors.append(
            Error(
                f"REALTIME['BACKEND'] cannot be loaded: {exc}",
                hint="Use 'polling', 'inprocess' or a dotted path to a BaseBackend subclass.",
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
    if "django.middleware.gzip.GZipMiddleware" in settings.MIDDLEWARE:
        errors.append(
            Warning(
                "Django's GZipMiddleware holds event streams back until they end.",
                hint="Use 'django_realtime.middleware.GZipMiddleware' in its place.",
                id="django_realtime.W001",
            )
        )
    return errors
