"""Settings of the daphne processes the WebSocket end-to-end tests start: the demo's, with tighter limits.

A small hub buffer keeps the process's memory close to what its
connections hold (and sends lagging subscriptions to the log); a short send
timeout lets a test see a slow consumer closed within seconds.
"""

from testproject.settings import *  # noqa: F403

REALTIME = {  # noqa: F405
    **REALTIME,  # noqa: F405
    "BUFFER_SIZE": 20,
    "POLL_INTERVAL": 0.1,
    "WEBSOCKET_SEND_TIMEOUT": 2.0,
}
