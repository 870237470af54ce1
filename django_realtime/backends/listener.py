"""The part the postgres and redis backends share: one listening connection per process."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from .base import BaseBackend

if TYPE_CHECKING:
    from ..hub import Hub

logger = logging.getLogger("django_realtime")


class ListenerBackend(BaseBackend):
    """Listen on one connection per process; poll the log while it is down.

    Subclasses provide ``listen(hub)``: connect, call ``subscribed(hub)``
    once wake-ups flow, call ``hub.poke()`` for each, and return or raise
    when the connection ends.  This class reconnects with backoff and has
    the hub read the log after every change, so no wake-up lost in between
    can hold an event back.
    """

    #: Name of the service, for log messages.
    service = "the notification service"

    def __init__(self, fallback_interval: float = 1.0) -> None:
        self.fallback_interval = fallback_interval
        self.listening = threading.Event()
        self._stopping = threading.Event()
        self._backoff = 0.1

    @property
    def poll_interval(self) -> float | None:  # type: ignore[override]
        return None if self.listening.is_set() else self.fallback_interval

    def start(self, hub: Hub) -> None:
        self._stopping.clear()
        thread = threading.Thread(target=self._run, args=(hub,), name="django-realtime-listen", daemon=True)
        thread.start()

    def stop(self) -> None:
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def listen(self, hub: Hub) -> None:
        """Hold one listening connection until it ends or the backend stops."""
        raise NotImplementedError("subclasses of ListenerBackend must provide a listen() method")

    def subscribed(self, hub: Hub) -> None:
        """Note that wake-ups flow, and have the hub read what came while none did."""
        self.listening.set()
        self._backoff = 0.1
        hub.poke()

    def _run(self, hub: Hub) -> None:
        while not self.stopping:
            try:
                self.listen(hub)
            except Exception:
                if self.stopping:
                    break
                logger.warning("%s listener lost; polling the log until it is back", self.service, exc_info=True)
            finally:
                self.listening.clear()
                hub.poke()
            self._stopping.wait(self._backoff)
            self._backoff = min(self._backoff * 2, 5.0)
