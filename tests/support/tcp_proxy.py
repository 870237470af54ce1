"""A TCP proxy on loopback that a fault test puts in front of a service, and then breaks.

The test owns the proxy and nothing behind it: the shared PostgreSQL or a
test's own ``redis-server`` keep running while the proxy, in front of them,

* ``forward()``s bytes both ways (the normal state),
* ``refuse()``s: closes every connection with a reset and stops listening,
  so a new connection is refused, as by a host that is down, and
* ``blackhole()``s: accepts connections and holds every byte sent either
  way, as a network partition does; ``forward()`` then delivers what was
  held, as TCP's retransmissions would once the partition heals.

It keeps the first bytes each client sent on each connection (``heads``): a
test reads there what an HTTP client asked for, e.g. the ``Last-Event-ID``
an ``EventSource`` sent by itself on a reconnect.
"""

from __future__ import annotations

import socket
import struct
import threading


class TCPProxy:
    """Forward 127.0.0.1:``port`` to *target*, until told otherwise."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._flowing = threading.Event()
        self._flowing.set()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._closed = False
        self._listener: socket.socket | None = None
        self.port = 0
        #: The first bytes the client sent on each connection, in the order they came.
        self.heads: list[bytes] = []
        self._listen()

    def __enter__(self) -> TCPProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def forward(self) -> None:
        """Forward again: listen if refusing, deliver what a black hole held."""
        if self._listener is None:
            self._listen()
        self._flowing.set()

    def blackhole(self) -> None:
        """Hold every byte, both ways, of every connection, old and new, until forward()."""
        self._flowing.clear()

    def refuse(self) -> None:
        """Reset every connection and refuse new ones until forward()."""
        listener, self._listener = self._listener, None
        if listener is not None:
            # close() alone leaves the socket listening (Linux) while the accept thread is blocked in accept():
            # the port would take connections still, and forward() could not listen on it again.  shutdown()
            # wakes that accept() and stops the listening.
            try:
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
        self._reset_all()
        self._flowing.set()

    def close(self) -> None:
        self._closed = True
        self.refuse()

    # Inside -----------------------------------------------------------------

    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), name="proxy accept", daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # refuse() or close() closed the listener
            threading.Thread(target=self._connect, args=(client,), name="proxy connect", daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        self._track(client)
        self._flowing.wait()  # a black hole answers nothing, not even by reaching the service
        try:
            upstream = socket.create_connection(self.target, timeout=5)
            upstream.settimeout(None)
        except OSError:
            self._reset(client)
            return
        self._track(upstream)
        for source, sink in ((client, upstream), (upstream, client)):
            args = (source, sink, source is client)
            threading.Thread(target=self._pump, args=args, name="proxy pump", daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        try:
            while data := source.recv(65536):
                if from_client:
                    self.heads.append(data)
                    from_client = False
                self._flowing.wait()
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            self._reset(source)
            self._reset(sink)

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            if self._closed or self._listener is None:
                self._reset(sock)
                return
            self._sockets.add(sock)

    def _reset_all(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            self._reset(sock)

    @staticmethod
    def _reset(sock: socket.socket) -> None:
        # SO_LINGER 0: close() sends a RST, as a host that drops the connection does.
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()
