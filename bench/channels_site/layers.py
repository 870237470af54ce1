"""The in-memory channel layer, counting what it drops.

``InMemoryChannelLayer.group_send`` swallows ``ChannelFull``: a message for
a consumer whose queue is at capacity is dropped without a trace.  This
subclass counts those drops, so the benchmark can report them beside the
losses its clients see.
"""

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer


class CountingInMemoryChannelLayer(InMemoryChannelLayer):
    """An ``InMemoryChannelLayer`` that counts the messages it drops for a full channel."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dropped = 0
        self.sent = 0

    async def send(self, channel, message):
        try:
            await super().send(channel, message)
        except ChannelFull:
            self.dropped += 1
            raise
        self.sent += 1
