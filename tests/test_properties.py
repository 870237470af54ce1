"""Property-based tests of what strangers control: any data, name or id either survives the wire intact or is refused.

The SSE bytes are decoded by httpx-sse's line and event decoders, which share
no code with ``django_realtime.sse.encoding``.
"""

import json
import math

from httpx_sse._decoders import SSEDecoder, SSELineDecoder
from hypothesis import example, given, settings
from hypothesis import strategies as st

from django_realtime.cursor import ID_MAX as CURSOR_MAX
from django_realtime.exceptions import EventTooLarge, InvalidChannelName, InvalidCursor, InvalidEventData
from django_realtime.names import CHANNEL_MAX_LENGTH, parse_cursor, validate_channel
from django_realtime.publishing import encode_data
from django_realtime.sse.encoding import FieldError, encode_event

#: Any text, lone surrogates included (st.text() leaves them out by default).
ANY_TEXT = st.text(st.characters(codec=None, categories=None))
#: Text that likes the characters that matter on the wire.
WIRE_TEXT = st.lists(
    st.sampled_from(["\r", "\n", "\r\n", "\0", " ", ":", "data:", "id: 1", "é", "\u2028", "\ufeff", "x"])
).map("".join)
TEXT = st.one_of(st.text(), WIRE_TEXT)


def decode(payload: bytes, chunk: int) -> list:
    """Decode *payload*, fed *chunk* bytes at a time, into events."""
    lines, events = SSELineDecoder(), SSEDecoder()
    text = payload.decode("utf-8")
    received = []
    for start in range(0, len(text), chunk):
        for line in lines.decode(text[start : start + chunk]):
            event = events.decode(line.rstrip("\n"))
            if event is not None:
                received.append(event)
    for line in lines.flush():
        event = events.decode(line)
        if event is not None:
            received.append(event)
    return received


@settings(max_examples=500)
@given(data=TEXT, event=TEXT, id=TEXT, chunk=st.integers(1, 64))
@example(data="a\r\nb\rc\nd", event="x", id="1", chunk=1)
@example(data="", event="", id="", chunk=3)
@example(data="x\n\nid: 666\nevent: reset", event="m", id="2", chunk=5)
def test_an_event_decodes_to_what_was_encoded_or_is_refused(data, event, id, chunk):
    try:
        payload = encode_event(data, event=event, id=id)
    except FieldError:
        assert any(c in event for c in "\r\n") or any(c in id for c in "\r\n\0")
        return
    (decoded,) = decode(payload, chunk)
    assert decoded.data == "\n".join(data.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    assert decoded.event == (event or "message")
    assert decoded.id == id


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | ANY_TEXT,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(ANY_TEXT, children, max_size=5),
    max_leaves=30,
)


def has_non_finite(value) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, list):
        return any(has_non_finite(item) for item in value)
    if isinstance(value, dict):
        return any(has_non_finite(item) for item in value.values())
    return False


def has_lone_surrogate(value) -> bool:
    if isinstance(value, str):
        return any("\ud800" <= char <= "\udfff" for char in value)
    if isinstance(value, list):
        return any(has_lone_surrogate(item) for item in value)
    if isinstance(value, dict):
        return any(has_lone_surrogate(key) or has_lone_surrogate(item) for key, item in value.items())
    return False


@settings(max_examples=300)
@given(value=JSON)
def test_event_data_round_trips_through_json_and_the_wire_or_is_refused(value):
    try:
        text = encode_data(value, limit=256 * 1024)
    except InvalidEventData:
        assert has_non_finite(value) or has_lone_surrogate(value)
        return
    except EventTooLarge:
        return
    assert not has_non_finite(value) and not has_lone_surrogate(value)
    assert json.loads(text) == value
    (decoded,) = decode(encode_event(text, event="message", id="1"), 7)
    assert json.loads(decoded.data) == value


@given(name=st.one_of(ANY_TEXT, WIRE_TEXT, st.from_regex(r"[A-Za-z0-9_\-.:@/=+]{1,210}", fullmatch=True)))
def test_a_channel_name_is_accepted_only_if_it_is_safe_on_every_wire(name):
    try:
        assert validate_channel(name) == name
    except InvalidChannelName as exc:
        assert str(exc)  # a message a person can act on
        return
    assert 0 < len(name) <= CHANNEL_MAX_LENGTH
    assert all(c.isascii() and (c.isalnum() or c in "_-.:@/=+") for c in name)


@given(value=st.one_of(ANY_TEXT, WIRE_TEXT, st.integers(-5, 2**64).map(str), st.from_regex(r"0*[0-9]{1,20}")))
def test_an_event_id_parses_as_a_cursor_only_from_its_canonical_decimal_form(value):
    try:
        cursor = parse_cursor(value)
    except InvalidCursor:
        assert not (value.isascii() and value.isdigit() and str(int(value)) == value and int(value) <= CURSOR_MAX)
        return
    if value.isdigit():
        assert str(cursor) == value and not cursor.pending
        assert 0 <= cursor.top <= CURSOR_MAX
    else:  # a cursor's text: it reads back the same
        assert cursor.text_for(cursor.event_id(value)) == value


#: Channel names and retention patterns over a few characters, the ones sets and ranges turn on among them.
NAME_CHARACTERS = "ab-Z9:"
PATTERN_SET = st.builds("[{}{}]".format, st.sampled_from(["", "!"]), st.text(NAME_CHARACTERS + "]^\\", max_size=4))
PATTERN_TEXT = st.lists(st.one_of(st.sampled_from([*NAME_CHARACTERS, "*", "?", "[", "]", "!", " "]), PATTERN_SET)).map(
    "".join
)


@settings(max_examples=1000)
@given(pattern=PATTERN_TEXT, names=st.lists(st.text(NAME_CHARACTERS, min_size=1, max_size=6), max_size=20))
@example(pattern="x[!]", names=["x[!]"])
@example(pattern="[!-a-]", names=["-", "b"])
def test_a_channel_pattern_is_refused_or_matches_in_the_database_what_fnmatch_matches(pattern, names):
    import re
    from fnmatch import fnmatchcase

    from django_realtime.names import channel_pattern_regex

    try:
        regex = re.compile(channel_pattern_regex(pattern))
    except ValueError:
        return
    for name in names:
        assert bool(regex.search(name)) == fnmatchcase(name, pattern), (pattern, name)
