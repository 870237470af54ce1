"""Exceptions raised by django_realtime."""

from django.core.exceptions import ImproperlyConfigured


class InvalidName(ValueError):
    """A channel or event name breaks the documented rules."""


class InvalidChannelName(InvalidName):
    """A channel name is empty, too long or holds a forbidden character."""


class InvalidEventName(InvalidName):
    """An event name is empty, too long, reserved or holds a forbidden character."""


class InvalidCursor(ValueError):
    """An event id given as a resume cursor is not a decimal event id."""


class InvalidEventData(ValueError):
    """Event data cannot be encoded as JSON."""


class EventTooLarge(InvalidEventData):
    """Event data is larger than the MAX_DATA_SIZE setting allows."""


class BackendConfigError(ImproperlyConfigured):
    """The BACKEND setting names something that cannot be loaded."""


class UnsupportedOption(ValueError):
    """An argument of another package's API (``django_realtime.compat``) asks for what django_realtime cannot do."""


class InvalidProgress(ValueError):
    """A task's progress report has a bad fraction, message, result or rate, or names no task."""


class ProgressEnded(RuntimeError):
    """A task's progress was reported after it ended (done or failed)."""
