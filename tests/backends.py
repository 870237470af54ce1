"""A backend that records its notifications, for tests."""

from django_realtime.backends.inprocess import InProcessBackend

notified: list[tuple[str, int]] = []


class RecordingBackend(InProcessBackend):
    def notify(self, channel, event_id):
        notified.append((channel, event_id))
        super().notify(channel, event_id)
