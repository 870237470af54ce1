"""Live events for Django over Server-Sent Events and WebSockets, from one event log."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["ServerEvent", "apublish", "event_stream", "publish", "publish_html", "stream_channels"]
__version__ = "0.1.0"

if TYPE_CHECKING:
    from .publishing import apublish, publish, publish_html
    from .sse.decorators import ServerEvent, event_stream
    from .sse.views import stream_channels

_HOMES = {
    "ServerEvent": "sse.decorators",
    "event_stream": "sse.decorators",
    "publish": "publishing",
    "apublish": "publishing",
    "publish_html": "publishing",
    "stream_channels": "sse.views",
}


def __getattr__(name: str) -> Any:
    # Imported on first use: importing models here would need the app
    # registry before Django has populated it.
    if name in _HOMES:
        from importlib import import_module

        return getattr(import_module(f"{__name__}.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
