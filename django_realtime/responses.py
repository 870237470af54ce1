"""The SSE response, streaming with an iterator of the kind the server needs.

Under ASGI Django consumes a *sync* iterator whole before sending anything,
and under WSGI it buffers an *async* one (see the project notes), so every
response is built from the request: an async iterator for ``ASGIRequest``,
a sync one otherwise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.core.handlers.asgi import ASGIRequest
from django.http import StreamingHttpResponse

from .conf import realtime_settings
from .sse import KEEPALIVE, encode_retry

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from django.http import HttpRequest

    from .hub import Item


class SSEResponse(StreamingHttpResponse):
    """A ``text/event-stream`` response that proxies leave alone."""

    def __init__(self, streaming_content: Iterator[bytes] | AsyncIterator[bytes], **kwargs) -> None:
        super().__init__(streaming_content, content_type="text/event-stream; charset=utf-8", **kwargs)
        self["Cache-Control"] = "no-cache"
        self["X-Accel-Buffering"] = "no"


def is_async_request(request: HttpRequest) -> bool:
    """Return whether *request* is served by ASGI and needs an async iterator."""
    return isinstance(request, ASGIRequest)


def prelude() -> bytes:
    """Return the bytes every stream starts with: the retry delay, at once."""
    return encode_retry(int(realtime_settings.RETRY))


def sse_bytes(batches: Iterator[list[Item]]) -> Iterator[bytes]:
    """Turn batches of events into SSE bytes; an empty batch into a keepalive."""
    yield prelude()
    for batch in batches:
        yield b"".join(item.sse for item in batch) if batch else KEEPALIVE


async def asse_bytes(batches: AsyncIterator[list[Item]]) -> AsyncIterator[bytes]:
    """Turn batches of events into SSE bytes, on asyncio."""
    yield prelude()
    async for batch in batches:
        yield b"".join(item.sse for item in batch) if batch else KEEPALIVE
