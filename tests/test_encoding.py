import json

import pytest

from django_realtime.sse.encoding import (
    KEEPALIVE,
    FieldError,
    encode_channel_field,
    encode_comment,
    encode_error,
    encode_event,
    encode_retry,
)


def test_event_fields_come_in_order_and_end_with_a_blank_line():
    assert encode_event("hi", event="message", id="7") == b"id: 7\nevent: message\ndata: hi\n\n"


def test_data_only_event():
    assert encode_event("x") == b"data: x\n\n"


@pytest.mark.parametrize("data", ["a\nb", "a\rb", "a\r\nb"])
def test_every_spec_line_break_splits_data_into_lines(data):
    assert encode_event(data) == b"data: a\ndata: b\n\n"


@pytest.mark.parametrize("char", ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c"])
def test_unicode_line_separators_stay_inside_one_data_line(char):
    assert encode_event(f"a{char}b") == f"data: a{char}b\n\n".encode()


def test_empty_lines_in_data_survive():
    assert encode_event("\n\na\n") == b"data: \ndata: \ndata: a\ndata: \n\n"


def test_empty_data_still_sends_one_data_line_so_the_event_dispatches():
    assert encode_event("") == b"data: \n\n"


def test_leading_space_is_kept_because_one_space_follows_the_colon():
    assert encode_event(" x") == b"data:  x\n\n"


def test_data_is_utf8():
    assert encode_event("é😀") == "data: é😀\n\n".encode()


@pytest.mark.parametrize("value", ["a\nb", "a\rb", "a\r\nb"])
@pytest.mark.parametrize("field", ["event", "id"])
def test_line_breaks_in_single_line_fields_are_refused(field, value):
    with pytest.raises(FieldError, match="must not contain CR, LF"):
        encode_event("x", **{field: value})


def test_nul_in_id_is_refused_because_browsers_ignore_such_ids():
    with pytest.raises(FieldError, match="NUL"):
        encode_event("x", id="1\0")


def test_comments_and_keepalive():
    assert encode_comment("hi\nthere") == b": hi\n: there\n\n"
    assert encode_comment() == b":\n\n"
    assert KEEPALIVE.startswith(b":") and KEEPALIVE.endswith(b"\n\n")


def test_retry_is_all_digits():
    assert encode_retry(3000) == b"retry: 3000\n\n"
    for bad in (-1, 1.5, "10", True):
        with pytest.raises(FieldError):
            encode_retry(bad)


def test_the_channel_field_is_one_line_before_the_event():
    assert encode_channel_field("chat:lobby") + encode_event("1", id="5") == b"channel: chat:lobby\nid: 5\ndata: 1\n\n"


@pytest.mark.parametrize("value", ["a\nb", "a\rb", "a\0b"])
def test_line_breaks_and_nul_in_the_channel_field_are_refused(value):
    with pytest.raises(FieldError, match="must not contain CR, LF or NUL"):
        encode_channel_field(value)


@pytest.mark.parametrize("name", ["a\nid: 1", "a\r\n\r\nevent: x", "a\u2028b", "é"])
def test_an_error_event_keeps_any_channel_name_inside_one_ascii_data_line(name):
    encoded = encode_error(name, "invalid_channel", f"bad {name}")
    lines = encoded.decode("ascii").split("\n")
    assert lines[0] == "event: error" and lines[1].startswith("data: {") and lines[2:] == ["", ""]
    assert json.loads(lines[1].removeprefix("data: "))["channel"] == name
