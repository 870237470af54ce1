"""The WebSocket floor: a bare ASGI application on daphne that sends each event to every socket, and nothing else.

No Django, no Channels, no log: what daphne itself (Twisted and autobahn)
spends to put one small message on one WebSocket, measured by the same
clients in the same run so the other servers' figures have a yardstick.
It answers the clients' ``subscribe`` with ``subscribed``, ``POST
/bench/publish/?seq=N`` with one ``event`` message to every socket, and
``GET /bench/ping/``.

    daphne -b 127.0.0.1 -p 8000 bench.ws_floor:application
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import parse_qs

CHANNEL = "demo:bench"

_sockets: set[Any] = set()  # the ASGI send callables of the subscribed sockets
_next_id = 0


async def _respond(send: Any, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


async def _http(scope: dict, receive: Any, send: Any) -> None:
    global _next_id
    while (await receive()).get("more_body"):
        pass
    if scope["path"] == "/bench/ping/":
        await _respond(send, 200, b"ok\n")
    elif scope["path"] == "/bench/publish/" and scope["method"] == "POST":
        seq = int(parse_qs(scope["query_string"].decode())["seq"][0])
        _next_id += 1
        data = json.dumps({"t": time.time(), "seq": seq}, separators=(",", ":"))
        text = f'{{"type":"event","channel":"{CHANNEL}","id":"{_next_id}","event":"message","data":{data}}}'
        for socket_send in list(_sockets):
            await socket_send({"type": "websocket.send", "text": text})
        await _respond(send, 200, b"%d\n" % _next_id)
    else:
        await _respond(send, 404, b"not found\n")


async def _websocket(scope: dict, receive: Any, send: Any) -> None:
    try:
        while True:
            message = await receive()
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.accept"})
            elif message["type"] == "websocket.receive":
                request = json.loads(message.get("text") or "{}")
                if request.get("type") == "subscribe":
                    _sockets.add(send)
                    subscribed = json.dumps({"type": "subscribed", "channel": CHANNEL})
                    await send({"type": "websocket.send", "text": subscribed})
            elif message["type"] == "websocket.disconnect":
                return
    finally:
        _sockets.discard(send)


async def application(scope: dict, receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await _http(scope, receive, send)
    elif scope["type"] == "websocket":
        await _websocket(scope, receive, send)
