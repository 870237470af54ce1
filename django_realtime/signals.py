"""Signals of django_realtime."""

from django.dispatch import Signal

#: Sent by ``Event.objects.bulk_create()`` with ``events`` (the stored rows) and ``using``:
#: rows stored without publish(), which the hubs must be woken for.
events_stored = Signal()
