"""End to end: one daphne process writes each event's frame, made once, to many subscribers, and hands a full
socket back to its connection's task.

daphne runs with ``-v 2``, so its own ``send()`` logs "Sent WebSocket packet
to client for [host, port]" for every message it is handed: a frame the
package writes straight to the transport (``daphne_server.frame_writer``)
leaves no such line, which tells the two paths apart from outside.
"""

import itertools
import json
import os
import re
import socket
import threading
from collections import Counter
from contextlib import ExitStack

import pytest

from tests.support.servers import manage, project_env, publish_lines, running_server
from tests.support.websocket import receive, subscribe, take_events

pytestmark = [pytest.mark.server, pytest.mark.handlers]

_names = itertools.count()
#: daphne's debug line for each message its send() hands to autobahn (daphne/ws_protocol.py, serverSend).
SENT_BY_DAPHNE = re.compile(r"Sent WebSocket packet to client for \['127\.0\.0\.1', (\d+)\]")


def new_channel() -> str:
    return f"chat:fan{next(_names)}-{os.getpid()}"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    database = tmp_path_factory.mktemp("fan-db") / "events.sqlite3"
    # A send timeout long enough for a client to sit on a full socket while the test looks.
    settings = {"POLL_INTERVAL": 0.1, "WEBSOCKET_SEND_TIMEOUT": 30}
    env = project_env(f"sqlite:///{database}", REALTIME_KEEPALIVE=None, REALTIME_JSON=json.dumps(settings))
    manage(env, "migrate", "--no-input", "-v", "0")
    return env


@pytest.fixture(scope="module")
def server(env, tmp_path_factory):
    log = tmp_path_factory.mktemp("daphne") / "daphne.log"
    with running_server("daphne", env, log, ["-v", "2"]) as server:
        yield server


def sent_by_daphne(server, start: int) -> Counter:
    """Count the messages daphne's send() handled since log offset *start*, by client port."""
    return Counter(int(port) for port in SENT_BY_DAPHNE.findall(server.log(start)))


def test_many_subscribers_get_every_event_once_in_order_from_frames_written_straight_to_them(server, env):
    channel, count = new_channel(), 10
    with ExitStack() as stack:
        sockets = [stack.enter_context(server.connect()) for _ in range(30)]
        for ws in sockets:
            subscribe(ws, channel)
        start = server.log_size()
        ids = publish_lines(env, channel, [{"n": n} for n in range(count)])
        for ws in sockets:
            events = take_events(ws, count)
            assert [e["id"] for e in events] == ids
            assert [e["data"] for e in events] == [{"n": n} for n in range(count)]
            assert {e["channel"] for e in events} == {channel}
    through_send = sum(sent_by_daphne(server, start).values())
    # Caught-up subscribers are written to from the hub's wake-up; a stray
    # one that was not parked yet may still go through daphne's send().
    assert through_send <= len(sockets) * count // 10, f"{through_send} of {len(sockets) * count} through send()"


def test_a_subscriber_whose_socket_fills_is_handed_back_and_catches_up_exactly_once(server, env):
    channel, count, size = new_channel(), 600, 16_000
    # max_queue=1: the client library stops reading the socket while one message waits for recv();
    # a small receive buffer, set before connecting, keeps the kernel from holding much for it.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    sock.connect(("127.0.0.1", server.port))
    with server.connect(max_queue=1, sock=sock) as slow, server.connect(max_queue=None) as fast:
        subscribe(slow, channel)
        subscribe(fast, channel)
        start = server.log_size()
        got_fast: list[str] = []
        reader = threading.Thread(target=lambda: got_fast.extend(e["id"] for e in take_events(fast, count)))
        reader.start()
        # About 10 MB: more than daphne's socket send buffer (at most 4 MB here) and Twisted's 64 KiB hold.
        ids = publish_lines(env, channel, [{"n": n, "pad": "x" * size} for n in range(count)])
        reader.join(timeout=60)
        assert got_fast == ids
        handed_back = sent_by_daphne(server, start)[slow.local_address[1]]
        assert handed_back > 0, "the slow subscriber's events were all written straight to its full socket"
        got_slow = [receive(slow)["id"] for _ in range(count)]
        assert got_slow == ids
        # Nothing more follows: a ping's answer is the very next message.
        slow.send(json.dumps({"type": "ping", "ref": "end"}))
        assert receive(slow) == {"type": "pong", "ref": "end"}
