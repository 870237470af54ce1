"""RFC 6455 framing of the server's text messages, once per event for every subscriber.

A server's frames are not masked (RFC 6455, section 5.1), so one event's
message is the same bytes on every connection that negotiated no extension:
made once, it can be written to each transport as it is
(``daphne_server.frame_writer``), instead of being framed again for each.
"""

from __future__ import annotations

import struct

#: FIN and the text opcode (RFC 6455, section 5.2).
_TEXT = 0x81


def text_frame(text: str) -> bytes:
    """Return *text* as one final, unmasked text frame."""
    payload = text.encode()
    size = len(payload)
    if size < 126:
        head = bytes((_TEXT, size))
    elif size < 1 << 16:
        head = struct.pack("!BBH", _TEXT, 126, size)
    else:
        head = struct.pack("!BBQ", _TEXT, 127, size)
    return head + payload
