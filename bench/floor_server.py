"""The floor: a bare asyncio server that writes each event to every stream, and nothing else.

No framework, no log, no HTTP chunking: the least a Python process can spend
to put one small event on one socket, measured by the same clients in the
same run so the other servers' figures have a yardstick.

    python -m bench.floor_server --port 8000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
    b"Cache-Control: no-cache\r\n\r\nretry: 3000\n\n"
)


class FloorServer:
    def __init__(self) -> None:
        self.streams: set[asyncio.StreamWriter] = set()
        self.next_id = 0

    def publish(self, seq: int) -> None:
        self.next_id += 1
        data = json.dumps({"t": time.time(), "seq": seq}, separators=(",", ":"))
        frame = f"id: {self.next_id}\ndata: {data}\n\n".encode()
        for writer in self.streams:
            writer.write(frame)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                method, target = head.split(b" ", 2)[:2]
                if target.startswith(b"/events/"):
                    writer.write(STREAM_HEAD)
                    self.streams.add(writer)
                    await reader.read()  # until the client goes away
                    return
                if method == b"POST" and target.startswith(b"/bench/publish/?seq="):
                    self.publish(int(target.split(b"=", 1)[1]))
                    body = b"{}"
                else:
                    body = b"ok\n"
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.streams.discard(writer)
            writer.close()


async def serve(port: int) -> None:
    server = await asyncio.start_server(FloorServer().handle, "127.0.0.1", port, backlog=2048)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
