import json

import pytest

from django_realtime import protocol
from django_realtime.protocol import Ping, ProtocolError, Publish, Subscribe, Unsubscribe, parse

LIMIT = 1024


def parse_json(message, limit=LIMIT):
    return parse(json.dumps(message), limit)


def refused(text, limit=LIMIT):
    with pytest.raises(ProtocolError) as info:
        parse(text, limit)
    return info.value


# Parsing ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "request_"),
    [
        ({"type": "subscribe", "channel": "c"}, Subscribe("c")),
        ({"type": "subscribe", "channel": "c", "last_id": "7", "ref": "r"}, Subscribe("c", "7", "r")),
        ({"type": "subscribe", "channel": "c", "last_id": None}, Subscribe("c")),
        ({"type": "unsubscribe", "channel": "c", "ref": 3}, Unsubscribe("c", 3)),
        ({"type": "publish", "channel": "c", "data": {"a": [1]}}, Publish("c", {"a": [1]})),
        ({"type": "publish", "channel": "c", "data": None, "event": "e", "ref": 0}, Publish("c", None, "e", 0)),
        ({"type": "ping"}, Ping()),
        ({"type": "ping", "ref": "x" * protocol.REF_MAX_LENGTH}, Ping("x" * protocol.REF_MAX_LENGTH)),
        ({"type": "ping", "ref": None}, Ping()),
    ],
)
def test_each_request_type_parses_into_its_request(message, request_):
    assert parse_json(message) == request_


def test_fields_the_protocol_does_not_know_are_ignored():
    assert parse_json({"type": "ping", "ref": 1, "future": True}) == Ping(1)


@pytest.mark.parametrize("text", ["", "{", "nope", "{'type': 'ping'}", '{"type": "ping"} x', "NaN", '{"a": Infinity}'])
def test_text_that_is_not_json_is_bad_json(text):
    error = refused(text)
    assert error.code == protocol.BAD_JSON and error.ref is None


def test_json_nested_too_deeply_is_bad_json_not_a_crash():
    error = refused("[" * 50_000 + "]" * 50_000, limit=200_000)
    assert error.code == protocol.BAD_JSON
    assert "nested too deeply" in error.message


@pytest.mark.parametrize(
    ("text", "kind"), [("[]", "an array"), ('"ping"', "a string"), ("1", "a number"), ("null", "null")]
)
def test_json_that_is_not_an_object_is_a_bad_message(text, kind):
    error = refused(text)
    assert error.code == protocol.BAD_MESSAGE
    assert error.message == f"message must be a JSON object, not {kind}"


@pytest.mark.parametrize(
    ("message", "words"),
    [
        ({"ref": 1}, "needs a type field"),
        ({"type": 5, "ref": 1}, "needs a type field"),
        ({"type": "dance", "ref": 1}, "unknown type 'dance'"),
        ({"type": "subscribe", "ref": 1}, "subscribe needs a channel field"),
        ({"type": "subscribe", "channel": ["c"], "ref": 1}, "subscribe needs a channel field"),
        ({"type": "subscribe", "channel": "c", "last_id": 7, "ref": 1}, "last_id must be a string, not a number"),
        ({"type": "unsubscribe", "ref": 1}, "unsubscribe needs a channel field"),
        ({"type": "publish", "channel": "c", "ref": 1}, "publish needs a data field"),
        ({"type": "publish", "data": 1, "ref": 1}, "publish needs a channel field"),
        ({"type": "publish", "channel": "c", "data": 1, "event": 2, "ref": 1}, "event must be a string"),
    ],
)
def test_a_missing_or_wrong_typed_field_is_a_bad_message_that_keeps_the_ref(message, words):
    error = refused(json.dumps(message))
    assert error.code == protocol.BAD_MESSAGE
    assert words in error.message
    assert error.ref == 1


@pytest.mark.parametrize("ref", [True, 1.5, ["r"], {"r": 1}, "x" * (protocol.REF_MAX_LENGTH + 1)])
def test_a_bad_ref_is_a_bad_message_without_a_ref(ref):
    error = refused(json.dumps({"type": "ping", "ref": ref}))
    assert error.code == protocol.BAD_MESSAGE and error.ref is None
    assert "ref must be" in error.message


def test_a_message_over_the_limit_is_too_large_before_it_is_parsed():
    text = json.dumps({"type": "ping", "ref": "x" * LIMIT})
    error = refused(text)
    assert (error.code, error.ref) == (protocol.TOO_LARGE, None)
    assert error.message == f"message is larger than {LIMIT} bytes"
    assert refused("{" * (LIMIT + 1)).code == protocol.TOO_LARGE


def test_the_limit_counts_utf8_bytes_not_characters():
    ascii_text = json.dumps({"type": "ping", "ref": "a" * 100}, ensure_ascii=False)
    wide_text = json.dumps({"type": "ping", "ref": "€" * 100}, ensure_ascii=False)
    assert parse(ascii_text, len(ascii_text)) == Ping("a" * 100)
    assert parse(wide_text, protocol.utf8_size(wide_text)) == Ping("€" * 100)
    assert refused(wide_text, len(wide_text)).code == protocol.TOO_LARGE


# Building ---------------------------------------------------------------------


def decoded(text):
    return json.loads(text)


def test_server_messages_carry_the_ref_only_when_there_is_one():
    assert decoded(protocol.pong()) == {"type": "pong"}
    assert decoded(protocol.pong(0)) == {"type": "pong", "ref": 0}
    assert decoded(protocol.subscribed("c", "5", "r")) == {
        "type": "subscribed",
        "channel": "c",
        "last_id": "5",
        "ref": "r",
    }
    assert decoded(protocol.unsubscribed("c")) == {"type": "unsubscribed", "channel": "c"}
    assert decoded(protocol.ack("9", "c", "p")) == {"type": "ack", "channel": "c", "id": "9", "ref": "p"}
    assert decoded(protocol.error("forbidden", "no", 4)) == {
        "type": "error",
        "code": "forbidden",
        "message": "no",
        "ref": 4,
    }


def test_an_event_splices_the_stored_json_text_in_unchanged():
    data_json = '{"b":1,"a":"\u2028 line\\nbreak","n":1.50}'
    text = protocol.event("chat:a", "12", "message", data_json)
    assert text == '{"type":"event","channel":"chat:a","id":"12","event":"message","data":' + data_json + "}"
    assert decoded(text)["data"] == {"b": 1, "a": "\u2028 line\nbreak", "n": 1.5}


def test_a_reset_names_the_channel_the_reason_and_both_ids():
    assert decoded(protocol.reset("c", "expired", "3", "40")) == {
        "type": "reset",
        "channel": "c",
        "reason": "expired",
        "last_id": "3",
        "resume_id": "40",
    }


def test_an_echoed_lone_surrogate_is_escaped_so_the_frame_stays_valid_utf8():
    text = protocol.error("bad_message", "bad", "\ud800")
    text.encode("utf-8")
    assert decoded(text)["ref"] == "\ud800"


def test_a_protocol_error_replies_with_an_error_message():
    error = ProtocolError(protocol.RATE_LIMITED, "slow down", "r")
    assert decoded(error.reply()) == {"type": "error", "code": "rate_limited", "message": "slow down", "ref": "r"}
    assert str(error) == "slow down"


def test_close_codes_are_in_the_application_range():
    codes = [protocol.CLOSE_SLOW_CONSUMER, protocol.CLOSE_LIFETIME, protocol.CLOSE_UNAVAILABLE]
    assert all(4000 <= code <= 4999 for code in codes)
    assert len(set(codes)) == len(codes)
