"""The wake-up floor: the least a gevent process does per event with our design, and nothing else.

A bare gevent ``StreamServer`` (no Django, no gunicorn, no hub) that holds
SSE streams in a dict channel -> sockets.  One psycopg 3 connection LISTENs
on ``django_realtime`` (what the ``postgres`` backend's INSERT notifies);
on each notification a second connection reads the rows after the last id
seen with one plain query, and each row goes, encoded as SSE, to its
channel's sockets with ``sendall``.  So each event costs the process what a
wake-up must: the notify arriving, a query round trip, a send per
subscriber, and gevent's loop in between.  ``bench.per_user --floor``
measures it beside our worker, in the same run and with the same clients
and publisher.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/db python -m bench.wake_floor --port 8000
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
from urllib.parse import parse_qs, urlsplit  # noqa: E402

import gevent  # noqa: E402
import psycopg  # noqa: E402
from gevent.server import StreamServer  # noqa: E402

#: The LISTEN channel the postgres backend's INSERT notifies (django_realtime.backends.postgres.CHANNEL).
LISTEN_CHANNEL = "django_realtime"
#: The plain query each notification runs: the rows after the last id seen.
READ = "SELECT id, channel, event, data FROM django_realtime_event WHERE id > %s ORDER BY id LIMIT 500"
STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
    b"Cache-Control: no-cache\r\n\r\nretry: 3000\n\n"
)
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"


def response(body: bytes, content_type: bytes = b"text/plain") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s" % (content_type, len(body), body)


class WakeFloor:
    def __init__(self, conninfo: str) -> None:
        self.channels: dict[str, set[socket.socket]] = {}
        self.listener = psycopg.connect(conninfo, autocommit=True, connect_timeout=5)
        self.reader = psycopg.connect(conninfo, autocommit=True, connect_timeout=5)
        # LISTEN before the first ping is answered: no event published after that is missed.
        self.listener.execute(f'LISTEN "{LISTEN_CHANNEL}"')
        (self.last_id,) = self.reader.execute("SELECT coalesce(max(id), 0) FROM django_realtime_event").fetchone()

    def listen(self) -> None:
        """For each notification ("<channel> <id>"), read and deliver the rows not seen yet."""
        for notify in self.listener.notifies():
            if int(notify.payload.rpartition(" ")[2]) > self.last_id:
                self.deliver()

    def deliver(self) -> None:
        rows = self.reader.execute(READ, (self.last_id,)).fetchall()
        for event_id, channel, event, data in rows:
            sockets = self.channels.get(channel)
            if sockets:
                frame = f"id: {event_id}\nevent: {event}\ndata: {data}\n\n".encode()
                for sock in list(sockets):
                    try:
                        sock.sendall(frame)
                    except OSError:
                        sockets.discard(sock)
        if rows:
            self.last_id = rows[-1][0]

    def handle(self, sock: socket.socket, address: object) -> None:
        buffer = b""
        try:
            while True:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    data = sock.recv(4096)
                    if not data:
                        return
                    buffer += data
                    continue
                head, buffer = buffer[:end], buffer[end + 4 :]
                target = head.split(b"\r\n", 1)[0].split(b" ")[1].decode()
                url = urlsplit(target)
                if url.path == "/events/":
                    self.stream(sock, parse_qs(url.query).get("channel", [""])[0])
                    return
                if url.path == "/bench/ping/":
                    sock.sendall(response(b"ok\n"))
                elif url.path == "/bench/info/":
                    info = {"server": "bench.wake_floor", "pid": os.getpid()}
                    sock.sendall(response(json.dumps(info).encode(), b"application/json"))
                else:
                    sock.sendall(NOT_FOUND)
        except OSError:
            pass
        finally:
            sock.close()

    def stream(self, sock: socket.socket, channel: str) -> None:
        """Hold *sock* on *channel* until the client goes away."""
        sock.sendall(STREAM_HEAD)
        sockets = self.channels.setdefault(channel, set())
        sockets.add(sock)
        try:
            while sock.recv(4096):
                pass
        finally:
            sockets.discard(sock)
            if not sockets and self.channels.get(channel) is sockets:
                del self.channels[channel]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"), help="default: $DATABASE_URL")
    args = parser.parse_args()
    if not args.database_url:
        parser.error("give --database-url or set DATABASE_URL")
    floor = WakeFloor(args.database_url)
    listening = gevent.spawn(floor.listen)
    server = StreamServer(("127.0.0.1", args.port), floor.handle, backlog=2048)
    server.start()
    try:
        listening.get()  # the listener only returns if its connection fails: then the process ends
    except KeyboardInterrupt:  # SIGINT: the runner's stop()
        pass
    finally:
        server.stop(timeout=1)


if __name__ == "__main__":
    main()
