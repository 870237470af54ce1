"""The textbook Channels broadcast: join a group on connect, forward each group message as JSON."""

from channels.generic.websocket import AsyncJsonWebsocketConsumer

GROUP = "demo.bench"  # group names allow letters, digits, "-", "_" and "." only


class BroadcastConsumer(AsyncJsonWebsocketConsumer):
    """Join GROUP on connect; send every ``bench.event`` of the group to the client."""

    async def connect(self):
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def receive_json(self, content, **kwargs):
        # The benchmark's clients speak django-realtime's protocol: answer a
        # subscribe as it does, so they know the socket is in the group.
        if content.get("type") == "subscribe":
            await self.send_json({"type": "subscribed", "channel": content.get("channel")})

    async def bench_event(self, message):
        # The message shape of django-realtime's "event", encoded once per socket, as send_json does.
        await self.send_json(message["event"])
