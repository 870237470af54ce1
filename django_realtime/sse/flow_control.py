"""Flow control for SSE under daphne, whose ``send()`` never waits.

Django sends each chunk of a stream with the server's ``send()`` before it
asks for the next.  uvicorn, hypercorn and granian make that wait while the
client does not read, so the hub's SSE_SEND_TIMEOUT watch sees it (see
responses.asse_stream).  daphne hands each chunk to Twisted at once, whose
transport buffers it without limit: a client that stops reading would grow
the process by every event of its channels.  So under daphne the stream
finds its connection's Twisted transport (among the reactor's readers, by
the peer and server addresses of the ASGI scope: public Twisted API) and
takes part in Twisted's producer flow control, as the WebSocket consumer
does (websocket/flow_control.py): it hands the next chunk over only while
the transport's buffer has room, and ends the stream if it stays full for
SSE_SEND_TIMEOUT.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Mapping
from typing import Any, cast

from ..websocket.flow_control import WriteGate

logger = logging.getLogger("django_realtime")


def daphne_write_gate(scope: Mapping[str, Any]) -> asyncio.Event | None:
    """Return an event set while the write buffer of the daphne connection of *scope* has room.

    Return None under any other server, or if the connection is not found.
    Call it on the event loop, which daphne shares with Twisted's reactor.
    """
    if "daphne.server" not in sys.modules or "twisted.internet.reactor" not in sys.modules:
        return None  # not daphne: and importing the reactor would install one
    client, server = scope.get("client"), scope.get("server")
    if not client or not server:
        return None
    from twisted.internet import reactor

    # The stubs type the reactor as an interface, not as the reactor.
    for reader in cast(Any, reactor).getReaders():
        try:
            peer, host = reader.getPeer(), reader.getHost()
        except Exception:  # a listening port, a waker: not a connection
            continue
        if (getattr(peer, "host", None), getattr(peer, "port", None)) != (client[0], client[1]):
            continue
        if getattr(host, "port", None) != server[1] or not hasattr(reader, "registerProducer"):
            continue
        try:
            return WriteGate(reader).open
        except (TypeError, RuntimeError) as exc:
            logger.warning("django_realtime cannot watch this SSE connection's write buffer: %s", exc)
            return None
    return None
