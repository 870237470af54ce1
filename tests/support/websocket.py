"""The ``websockets`` client's side of the WebSocket end-to-end tests: send, receive, subscribe.

The servers are tests/support/servers.py's (``Server.connect()`` opens a
WebSocket with the site's own Origin); the WebSocket tests run them with
``tests.ws_settings``, the demo's settings with tighter limits.
"""

from __future__ import annotations

import json

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

#: The settings of the WebSocket tests' servers: ``project_env(url, DJANGO_SETTINGS_MODULE=SETTINGS)``.
SETTINGS = "tests.ws_settings"
#: Seconds a test waits for one message.
RECEIVE_TIMEOUT = 10.0


# Client side --------------------------------------------------------------


def send(ws: ClientConnection, message: object) -> None:
    ws.send(message if isinstance(message, str | bytes) else json.dumps(message))


def receive(ws: ClientConnection, timeout: float = RECEIVE_TIMEOUT) -> dict:
    return json.loads(ws.recv(timeout=timeout))


def request(ws: ClientConnection, message: object) -> dict:
    send(ws, message)
    return receive(ws)


def subscribe(ws: ClientConnection, channel: str, last_id: str | None = None) -> dict:
    message = {"type": "subscribe", "channel": channel}
    if last_id is not None:
        message["last_id"] = last_id
    reply = request(ws, message)
    assert reply["type"] == "subscribed", reply
    return reply


def take_events(ws: ClientConnection, count: int) -> list[dict]:
    """Receive *count* messages and check that they are events."""
    messages = [receive(ws) for _ in range(count)]
    assert all(m["type"] == "event" for m in messages), messages
    return messages


def close_code(exc: ConnectionClosed) -> int:
    """Return the close code the server sent, or 1006 when the connection ended without one."""
    return exc.rcvd.code if exc.rcvd is not None else 1006
