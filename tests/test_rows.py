"""The event type's cache of encoded forms (``Item.encoded``): one per encoder, made once per event."""

from __future__ import annotations

import json

import pytest

from django_realtime.eventlog import Item
from django_realtime.sse.responses import event_bytes, sse_text_chunk
from django_realtime.websocket.consumer import event_text


def test_each_encoder_runs_once_per_event_and_keeps_its_own_form():
    item = Item(7, "chat:a", "message", '"hi"')
    calls = []

    def upper(event: Item) -> str:
        calls.append("upper")
        return event.data_json.upper()

    def length(event: Item) -> int:
        calls.append("length")
        return len(event.data_json)

    for _ in range(3):
        assert item.encoded(upper) == '"HI"'
        assert item.encoded(length) == 4
    assert calls == ["upper", "length"]


def test_an_encoder_that_uses_another_keeps_both_forms():
    item = Item(7, "chat:a", "message", "1")
    calls = []

    def inner(event: Item) -> str:
        calls.append("inner")
        return "inner"

    def outer(event: Item) -> str:
        calls.append("outer")
        return event.encoded(inner) + "+outer"

    assert item.encoded(outer) == "inner+outer"
    assert item.encoded(inner) == "inner"
    assert calls == ["outer", "inner"]


@pytest.mark.parametrize("sse_first", [True, False])
def test_the_transports_forms_of_one_event_do_not_mix(sse_first):
    event = Item(7, "chat:a", "message", '"<b>hi</b>"')
    sse = b'id: 7\nevent: message\ndata: "<b>hi</b>"\n\n'
    if sse_first:
        assert event_bytes(event) == sse
    for _ in range(2):  # made, then taken from the cache
        message = json.loads(event_text("chat:a", event))
        assert (message["type"], message["channel"], message["data"]) == ("event", "chat:a", "<b>hi</b>"), message
        assert event_bytes(event) == sse
        assert sse_text_chunk([event]) == b"id: 7\nevent: message\ndata: <b>hi</b>\n\n"
