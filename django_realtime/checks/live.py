"""Checks of live models: one that renders later needs a tasks framework (E007)."""

from __future__ import annotations

from django.core.checks import Error, register


@register()
def check_render_later(app_configs, **kwargs):
    """Check that a tasks framework is there when a live model renders later."""
    from ..live.declarations import _registry

    models = [declaration.model for declaration in _registry.values() if declaration.render == "later"]
    if not models:
        return []  # nothing imports the tasks framework (nor reads TASKS) for a site that renders now
    from ..live import later

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
