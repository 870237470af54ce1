"""A publishing transaction held open on another thread: the commit-order trap, for the tailer tests."""

import threading

from django.db import connections, transaction

from django_realtime import publish


def published():
    return publish("c", "held").id


class Held:
    """Run *write* in a transaction on *using* on another thread, and hold the transaction open until end()."""

    def __init__(self, write=published, *, using):
        self.write = write
        self.using = using
        self.drawn, self.release, self.keep = threading.Event(), threading.Event(), True
        self.thread = threading.Thread(target=self._run)
        self.thread.start()
        assert self.drawn.wait(10)

    def _run(self):
        try:
            with transaction.atomic(using=self.using):
                self.id = self.write()
                self.drawn.set()
                self.release.wait(20)
                if not self.keep:
                    transaction.set_rollback(True, using=self.using)
        finally:
            connections[self.using].close()

    def end(self, *, commit):
        self.keep = commit
        self.release.set()
        self.thread.join(10)
