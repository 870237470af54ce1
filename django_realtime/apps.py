from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    name = "django_realtime"
    verbose_name = "Realtime events"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
