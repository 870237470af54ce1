"""What the package does under uvicorn beyond ASGI: writing a parked SSE stream's chunks to its connection.

Each chunk Django sends goes through uvicorn's ``send()`` and h11, which
frames it, before asyncio's ``transport.write()``: with Django's response
loop and the task the hub wakes for each event, about six times the CPU of
the write itself per delivered event (docs/benchmarks.md).  A parked stream
(``streams.OnLoop``) writes to the transport itself, framed as h11 frames
it.  Checked with uvicorn 0.54 and 0.55, its h11 and httptools protocols;
under uvloop, or anything this does not recognise, streams send every
chunk through uvicorn as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any


def uvicorn_sse_writer(scope: Mapping[str, Any]) -> tuple[Callable[[bytes], bool], bool] | None:
    """Return a function that writes an SSE stream's chunk to its uvicorn connection, and whether to frame it.

    The connection is the one whose response cycle has *scope*.  The
    function returns False, writing nothing, while uvicorn holds writes back
    (the transport's buffer is past its high-water mark: uvicorn's ``send()``
    then waits, and the watchdog sees a client that stopped reading), or
    once the client has left or the response is complete.  Call it on the
    event loop.
    """
    protocol = _protocol(scope)
    module = type(protocol).__module__
    if module == "uvicorn.protocols.http.h11_impl":
        writer = type(getattr(protocol.conn, "_writer", None)).__name__
        if writer not in ("ChunkedWriter", "Http10Writer"):  # h11 frames chunks, or sends the body up to the close
            return None
        chunked = writer == "ChunkedWriter"
    elif module == "uvicorn.protocols.http.httptools_impl":
        if protocol.cycle.chunked_encoding is not True:  # else a body of a Content-Length: not a stream
            return None
        chunked = True
    else:
        return None
    cycle = protocol.cycle
    transport, flow = cycle.transport, cycle.flow

    def write(data: bytes) -> bool:
        if flow.write_paused or cycle.disconnected or cycle.response_complete or transport.is_closing():
            return False
        transport.write(data)  # asyncio sends at once what the socket takes, and buffers the rest
        return True

    return write, chunked


def _protocol(scope: Mapping[str, Any]) -> Any:
    """Return the protocol of the running loop's connection whose response cycle has *scope*, or None."""
    transports = getattr(asyncio.get_running_loop(), "_transports", None)  # selector loops: fd -> transport
    if transports is None:
        return None
    for transport in list(transports.values()):
        protocol = transport.get_protocol()
        if getattr(getattr(protocol, "cycle", None), "scope", None) is scope:
            return protocol
    return None
