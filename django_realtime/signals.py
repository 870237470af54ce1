"""Signals of django_realtime."""

from django.dispatch import Signal

#: Sent once the transaction that stored an event commits (at once in
#: autocommit), with ``event`` (the stored :class:`~django_realtime.models.Event`)
#: and ``using`` (the database alias): for ``publish()`` and for rows written
#: through the ORM.  Never sent for a publish that rolled back.
event_published = Signal()

#: Sent when an event is stored, before its transaction commits, with
#: ``event`` and ``using``: what ``django_realtime.testing.capture_events()``
#: listens to, so that it sees events in a test whose transaction never commits.
event_stored = Signal()

#: Sent by ``Event.objects.bulk_create()`` with ``events`` (the stored rows) and ``using``:
#: rows stored without publish(), which the hubs must be woken for.
events_stored = Signal()
