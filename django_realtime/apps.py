from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    name = "django_realtime"
    verbose_name = "Realtime events"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_save, pre_save

        from . import (
            checks,  # noqa: F401  (registers the system checks)
            publishing,
            signals,
        )
        from .models import Event

        # Rows written through the ORM are checked as publish() checks its own...
        pre_save.connect(publishing.event_saving, sender=Event, dispatch_uid="django_realtime.event_saving")
        # ...and wake the hubs too (publish() wakes them itself).
        post_save.connect(publishing.event_saved, sender=Event, dispatch_uid="django_realtime.event_saved")
        signals.events_stored.connect(publishing.events_stored, sender=Event, dispatch_uid="django_realtime.stored")
