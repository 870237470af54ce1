"""The hub's daemon threads, whose liveness a request may ask without yielding.

``Thread.is_alive()`` is not a plain read once gevent has monkey-patched
``threading``: it tries the thread's state lock without blocking, and a
patched lock that is taken yields to every other greenlet before it answers
(``gevent/thread.py``, gevent#1464).  The hub asks whether its reader and
ticker run on every new stream, with its lock held: each ask let the next
requests in, and they waited for that lock with Django's whole request on
their stacks, which gevent saved to the heap.  A burst of 1,000 streams left
about 14 KB more per stream in a worker's RSS (issue 26).  A :class:`Daemon`
answers from a flag that its thread clears on its way out.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class Daemon:
    """A daemon thread that runs *target* and tells whether it still does, without switching."""

    __slots__ = ("thread", "running", "_target")

    def __init__(self, target: Callable[[], None], name: str) -> None:
        self._target = target
        #: True from now (its creator starts it, perhaps after letting go of a lock) until *target* has
        #: returned or raised: a daemon about to start is not started twice.
        self.running = True
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        try:
            self.thread.start()
        except BaseException:  # no thread to run it (RuntimeError: can't start new thread)
            self.running = False
            raise

    def alive(self) -> bool:
        """Return whether the thread is still running its target: a read, never a switch to another greenlet."""
        return self.running

    def join(self, timeout: float) -> None:
        """Wait up to *timeout* seconds for the thread to end, unless it is the caller's own."""
        thread = self.thread
        if self.running and thread.ident is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        try:
            self._target()
        finally:
            self.running = False
