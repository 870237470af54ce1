"""The request a change comes from: its id, so that the page that sent it skips the refresh it causes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

#: The request id of the request being served, from its ``Realtime-Request-Id`` header.
_request_id: ContextVar[str | None] = ContextVar("django_realtime_live_request_id", default=None)

#: What a request id may be: what ``{% live_request_id %}`` makes, and no more.
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")


def current_request_id() -> str | None:
    """Return the id of the request whose changes are being published, if one named itself."""
    return _request_id.get()


@contextmanager
def originating(request_id: str | None) -> Iterator[None]:
    """Mark the refreshes published in this block as caused by *request_id*: the page that sent it skips them."""
    if request_id is not None and not REQUEST_ID_PATTERN.match(request_id):
        raise ValueError(f"a request id holds 1 to 64 letters, digits, _ and -, got {request_id[:80]!r}")
    token = _request_id.set(request_id)
    try:
        yield
    finally:
        _request_id.reset(token)


class RequestIdMiddleware:
    """Take the ``Realtime-Request-Id`` header of each request: the refreshes its changes publish name it."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Any) -> None:
        from asgiref.sync import iscoroutinefunction, markcoroutinefunction

        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        if self.is_async:
            return self._acall(request)
        with originating(_header(request)):
            return self.get_response(request)

    async def _acall(self, request: Any) -> Any:
        with originating(_header(request)):
            return await self.get_response(request)


def _header(request: Any) -> str | None:
    value = request.headers.get("Realtime-Request-Id")
    return value if value is not None and REQUEST_ID_PATTERN.match(value) else None
