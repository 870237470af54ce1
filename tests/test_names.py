import pytest

from django_realtime.cursor import Cursor
from django_realtime.exceptions import InvalidChannelName, InvalidCursor, InvalidEventName, InvalidName
from django_realtime.names import (
    CHANNEL_MAX_LENGTH,
    EVENT_MAX_LENGTH,
    channel_pattern_regex,
    parse_cursor,
    reset_json,
    validate_channel,
    validate_event_name,
)


@pytest.mark.parametrize(
    "name", ["chat:lobby", "user:42", "a", "news.eu-west_1", "x@y/z=1+2", "A" * CHANNEL_MAX_LENGTH]
)
def test_valid_channel_names(name):
    assert validate_channel(name) == name


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "must not be empty"),
        ("a\nb", "must not contain CR, LF or NUL"),
        ("a\rb", "must not contain CR, LF or NUL"),
        ("a\0b", "must not contain CR, LF or NUL"),
        ("a b", "may contain only"),
        ("chat:*", "may contain only"),
        ("é", "may contain only"),
        ("a" * (CHANNEL_MAX_LENGTH + 1), "longer than"),
        (None, "must be a str"),
        (b"bytes", "must be a str"),
    ],
)
def test_invalid_channel_names_get_a_clear_value_error(name, message):
    with pytest.raises(InvalidChannelName, match=message) as info:
        validate_channel(name)
    assert isinstance(info.value, ValueError) and isinstance(info.value, InvalidName)


@pytest.mark.parametrize("name", ["message", "tick", "user.joined", "a:b-c_d", "E" * EVENT_MAX_LENGTH])
def test_valid_event_names(name):
    assert validate_event_name(name) == name


@pytest.mark.parametrize("name", ["", "a\nb", "a\r", "a\0", "a b", "a/b", "x" * (EVENT_MAX_LENGTH + 1)])
def test_invalid_event_names(name):
    with pytest.raises(InvalidEventName):
        validate_event_name(name)


@pytest.mark.parametrize("name", ["reset", "error"])
def test_reserved_event_names(name):
    with pytest.raises(InvalidEventName, match="reserved"):
        validate_event_name(name)
    assert validate_event_name(name, allow_reserved=True) == name


@pytest.mark.parametrize(("text", "value"), [("0", 0), ("1", 1), ("9223372036854775807", 2**63 - 1)])
def test_cursors(text, value):
    assert parse_cursor(text) == Cursor(value)
    assert parse_cursor(f"{text}~1") if value > 1 else True


@pytest.mark.parametrize(
    "text", ["", "abc", "-1", "+1", "01", "1.0", " 1", "1\n", "1\r\n", "١", "9223372036854775808", "9" * 40, None, 5]
)
def test_malformed_cursors(text):
    with pytest.raises(InvalidCursor, match="decimal number"):
        parse_cursor(text)


def test_a_malformed_cursor_is_quoted_in_its_error_up_to_40_characters():
    with pytest.raises(InvalidCursor, match=r"got 'x1'$"):
        parse_cursor("x1")
    with pytest.raises(InvalidCursor, match=r"got '%s'$" % ("9" * 40)):
        parse_cursor("9" * 41)


@pytest.mark.parametrize("name", ["a\n" * 30_000, "a" * 30_000, "é" * 150])
def test_an_error_quotes_only_the_start_of_a_long_name(name):
    with pytest.raises(InvalidChannelName) as info:
        validate_channel(name)
    assert len(str(info.value)) < 150
    with pytest.raises(InvalidEventName) as info:
        validate_event_name(name)
    assert len(str(info.value)) < 150


def test_an_error_quotes_a_name_whole_up_to_40_characters_and_then_its_start():
    with pytest.raises(InvalidChannelName) as info:
        validate_channel("a" * 39 + " ")
    assert str(info.value).endswith(repr("a" * 39 + " "))
    with pytest.raises(InvalidChannelName) as info:
        validate_channel("a" * 40 + " ")
    assert str(info.value).endswith(repr("a" * 40) + "...")


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("chat:[", r"a '\[' has no '\]'"),
        ("chat:[]", r"a set \[\.\.\.\] is empty"),
        ("chat:[!]", r"a set \[\.\.\.\] is empty"),
        ("chat:[a ]", r"a set \[\.\.\.\] holds ' ', which is in no channel name"),
        ("chat:[a- ]", r"a set \[\.\.\.\] holds ' ', which is in no channel name"),
        ("chat:[z-a]", r"the range z-a, which goes down or ends in '-'"),
        ("chat:[a--]", r"the range a--, which goes down or ends in '-'"),
        ("chat:[--a]", r"the range --a, which goes down or ends in '-'"),
        ("chat:[a-b-c]", r"a '-' in a set \[\.\.\.\] that is neither first, last nor in a range"),
        ("chat lobby", r"' ' is in no channel name"),
    ],
)
def test_a_channel_pattern_that_means_another_thing_to_a_database_is_refused_saying_why(pattern, message):
    with pytest.raises(ValueError, match=message):
        channel_pattern_regex(pattern)


@pytest.mark.parametrize(
    ("pattern", "regex"),
    [
        ("chat:*", r"^chat:.*$"),
        ("user:?", r"^user:.$"),
        ("room:[!a-c-]", r"^room:[^a-c-]$"),
        ("room:[-ab]", r"^room:[-ab]$"),
        ("news.eu+1", r"^news\.eu\+1$"),
        ("room:[a]-[b]", r"^room:[a]\-[b]$"),
        ("x:[a-a]", r"^x:[a-a]$"),
    ],
)
def test_a_channel_pattern_becomes_the_regex_every_database_reads_alike(pattern, regex):
    assert channel_pattern_regex(pattern) == regex


def test_an_invalid_event_name_is_named_so_and_told_what_it_may_contain():
    with pytest.raises(InvalidEventName, match=r"^event name may contain only letters, digits and _-\.:: 'a b'$"):
        validate_event_name("a b")


def test_a_reset_is_compact_json_in_a_fixed_order():
    assert reset_json("expired", 10, 12, ["a", "b"]) == (
        '{"reason":"expired","last_event_id":"10","resume_id":"12","channels":["a","b"]}'
    )


def test_an_invalid_channel_name_is_named_so_and_told_what_it_may_contain():
    with pytest.raises(
        InvalidChannelName, match=r"^channel name may contain only letters, digits and _-\.:@/=\+: 'a b'$"
    ):
        validate_channel("a b")
    with pytest.raises(InvalidChannelName, match=r"^channel name must be a str, not bytes$"):
        validate_channel(b"a")
