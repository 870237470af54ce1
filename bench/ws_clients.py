"""WebSocket clients for the benchmark: the SSE clients' workers, speaking RFC 6455 over raw asyncio.

A :class:`WebSocketStream` sends the opening handshake (with an ``Origin``
the server's ``ALLOWED_HOSTS`` accepts), then one masked text frame
``{"type": "subscribe", "channel": C}`` where C is the ``channel`` of the
path's query string (``/ws/?channel=demo:bench``; the server never sees the
query).  The stream counts as open once ``{"type": "subscribed"}`` comes
back, so every open stream is subscribed before the first event is published.
Each text frame is ``json.loads``-ed whole; an ``event`` message carries
``{"t": publish time, "seq": n}`` in its ``data``, and is counted exactly as
an SSE event is.  Pings are answered; any ``error`` message is counted as
unexpected.

    pool.open("127.0.0.1", port, "/ws/?channel=demo%3Abench", 1000, kind=WebSocketStream)
"""

from __future__ import annotations

import base64
import json
import os
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bench.clients import Stream, Worker

TEXT, CLOSE, PING, PONG, CONTINUATION = 0x1, 0x8, 0x9, 0xA, 0x0


def client_frame(payload: bytes, opcode: int = TEXT) -> bytes:
    """Return one final frame carrying *payload*, masked as RFC 6455 (5.3) requires of a client."""
    size = len(payload)
    if size < 126:
        head = bytes([0x80 | opcode, 0x80 | size])
    elif size < 1 << 16:
        head = bytes([0x80 | opcode, 0x80 | 126]) + size.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + size.to_bytes(8, "big")
    mask = os.urandom(4)
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return head + mask + masked


class WebSocketStream(Stream):
    """One WebSocket: handshake, subscribe to one channel, then count the events that arrive."""

    @staticmethod
    def prepare(host: str, port: int, path: str) -> tuple[bytes, bytes]:
        """Return the opening handshake and the subscribe message of every socket to *path*."""
        url = urlsplit(path)
        channel = parse_qs(url.query)["channel"][0]
        key = base64.b64encode(os.urandom(16)).decode()  # any key will do: the answer is not checked
        handshake = (
            f"GET {url.path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: http://{host}:{port}\r\n\r\n"
        ).encode()
        return handshake, json.dumps({"type": "subscribe", "channel": channel}).encode()

    def __init__(self, worker: Worker, prepared: tuple[bytes, bytes], index: int | None = None) -> None:
        super().__init__(worker, prepared[0], index)
        self.subscribe = prepared[1]
        self.fragments: list[bytes] = []
        self.close_code: int | None = None

    def data_received(self, data: bytes) -> None:
        now = time.time()
        if not self.in_body:
            taken = self.take_head(data, (b"http/1.1 101",), "handshake answered")
            if taken is None:
                return
            data = taken[1]
            self.transport.write(client_frame(self.subscribe))
        raw = self.raw + data if self.raw else data
        pos, size = 0, len(raw)
        while size - pos >= 2:
            first, second = raw[pos], raw[pos + 1]
            length, start = second & 0x7F, pos + 2
            if length >= 126:
                extra = 2 if length == 126 else 8
                if size < start + extra:
                    break
                length = int.from_bytes(raw[start : start + extra], "big")
                start += extra
            if second & 0x80:  # a server must not mask (RFC 6455, 5.1)
                self._fail("a masked frame from the server")
                return
            end = start + length
            if end > size:
                break
            self._frame(first, raw[start:end], now)
            pos = end
        self.raw = raw[pos:]

    def _frame(self, first: int, payload: bytes, now: float) -> None:
        opcode, final = first & 0x0F, first & 0x80
        if opcode in (TEXT, CONTINUATION):
            if not final:
                self.fragments.append(payload)
                return
            if self.fragments:
                payload, self.fragments = b"".join([*self.fragments, payload]), []
            self._message(json.loads(payload), now)
        elif opcode == PING:
            self.transport.write(client_frame(payload, PONG))
        elif opcode == CLOSE:
            self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.transport.write(client_frame(payload[:2], CLOSE))
            self.transport.close()

    def _message(self, message: dict[str, Any], now: float) -> None:
        kind = message.get("type")
        if kind == "event":
            self._count(message["data"], now)
        elif kind == "subscribed":
            if not self.opened.done():
                self.opened.set_result(None)
        elif kind == "error":
            if not self.opened.done():
                self.opened.set_exception(ConnectionError(f"subscribe answered {message}"))
            else:
                self.worker.tally.unexpected += 1

    def _fail(self, reason: str) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(reason))
        self.worker.tally.unexpected += 1
        self.transport.close()
