"""The bounded queue of one WebSocket connection's outgoing messages.

The :class:`Outbox` holds the messages not yet handed to the server, bounded
in characters; a producer that finds it full waits, and the consumer closes
a connection whose outbox stays full too long.  It bounds what the package
holds; what the server holds once ``send()`` returns is bounded by
:mod:`django_realtime.daphne_server`.
"""

from __future__ import annotations

import asyncio
from collections import deque


class Outbox:
    """A FIFO of text frames holding at most *limit* characters (one frame always fits).

    Producers that wait for room get it in the order they came, and a new
    frame does not overtake them: a large event is not starved by a stream
    of small ones.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self._frames: deque[str] = deque()
        self._filled = asyncio.Event()
        self._drained = asyncio.Event()
        self._queue = asyncio.Lock()  # held by the producer first in line; FIFO-fair

    def __len__(self) -> int:
        return len(self._frames)

    def _fits(self, text: str) -> bool:
        return not self._frames or self.size + len(text) <= self.limit

    def _append(self, text: str) -> None:
        self._frames.append(text)
        self.size += len(text)
        self._filled.set()

    def put_nowait(self, text: str) -> bool:
        """Append *text* if it fits now and no producer is waiting; return whether it did."""
        if self._queue.locked() or not self._fits(text):
            return False
        self._append(text)
        return True

    async def put(self, text: str) -> None:
        """Append *text*, waiting behind earlier producers while it would take the outbox over its limit."""
        async with self._queue:
            while not self._fits(text):
                self._drained.clear()
                await self._drained.wait()
            self._append(text)

    async def get(self) -> str:
        """Remove and return the oldest frame, waiting for one."""
        while not self._frames:
            self._filled.clear()
            await self._filled.wait()
        text = self._frames.popleft()
        self.size -= len(text)
        self._drained.set()
        return text
