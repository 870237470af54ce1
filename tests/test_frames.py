"""The server's text frames, made once per event, against autobahn's own framing of a broadcast message."""

import pytest
from autobahn.websocket.protocol import PreparedMessage

from django_realtime.websocket.frames import text_frame


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70_000])
def test_a_text_frame_is_the_frame_autobahn_prepares_for_a_broadcast(size):
    text = ("é" * size)[: size // 2] + "x" * (size - size // 2)  # some two-byte characters: the length is in bytes
    payload = text.encode()
    assert text_frame(text) == PreparedMessage(payload, isBinary=False, applyMask=False, doNotCompress=True).payloadHybi


def test_a_text_frame_carries_the_length_of_its_utf8_bytes():
    frame = text_frame("é" * 63)  # 126 bytes: past the one-byte length
    assert frame[:4] == bytes([0x81, 126, 0, 126]) and frame[4:].decode() == "é" * 63
