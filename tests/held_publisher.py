"""Publishing transactions held open on command, in a process of their own: the busy site's slow requests.

Run as ``python -m tests.held_publisher`` with ``DJANGO_SETTINGS_MODULE`` and
``DATABASE_URL`` set.  It reads one command per line on stdin and answers
one line on stdout:

* ``begin NAME CHANNEL``: open a transaction (on a thread and connection of
  its own), ``publish()`` one event on CHANNEL in it, and hold it open;
  answers ``begun NAME ID``;
* ``publish CHANNEL``: publish one event in autocommit; answers ``published ID``;
* ``commit NAME`` or ``rollback NAME``: end that transaction; answers
  ``committed NAME`` or ``rolled back NAME`` once it has ended.

Each event's data is ``{"n": <a counter>, "t": time.time()}``.
"""

from __future__ import annotations

import itertools
import os
import queue
import sys
import threading
import time


def emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class Held:
    """One transaction on a thread of its own, held open until told how to end."""

    def __init__(self, name: str, channel: str, counter: itertools.count) -> None:
        self.name = name
        self.channel = channel
        self.counter = counter
        self.ending: queue.Queue[str] = queue.Queue()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        from django.db import connection, transaction

        from django_realtime import publish

        outcome = "committed"
        try:
            with transaction.atomic():
                event = publish(self.channel, {"n": next(self.counter), "t": time.time()})
                emit(f"begun {self.name} {event.id}")
                if self.ending.get() == "rollback":
                    outcome = "rolled back"
                    transaction.set_rollback(True)
        finally:
            connection.close()
        emit(f"{outcome} {self.name}")


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")
    import django

    django.setup()
    from django.db import connection

    from django_realtime import publish

    counter = itertools.count()
    held: dict[str, Held] = {}
    emit("ready")
    for line in sys.stdin:
        command, *args = line.split()
        if command == "begin":
            name, channel = args
            held[name] = Held(name, channel, counter)
        elif command == "publish":
            (channel,) = args
            event = publish(channel, {"n": next(counter), "t": time.time()})
            emit(f"published {event.id}")
        elif command in ("commit", "rollback"):
            held.pop(args[0]).ending.put(command)
    for transaction in held.values():
        transaction.ending.put("rollback")
    connection.close()


if __name__ == "__main__":
    main()
