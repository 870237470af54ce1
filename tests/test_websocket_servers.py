"""End to end: the demo's /ws/ under real daphne processes, spoken to by the ``websockets`` client."""

import base64
import itertools
import json
import os
import socket
import time

import httpx
import pytest
from httpx_sse import connect_sse
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support.servers import manage, project_env, publish_lines, running_server
from tests.support.websocket import (
    RECEIVE_TIMEOUT,
    SETTINGS,
    close_code,
    receive,
    request,
    send,
    subscribe,
    take_events,
)

pytestmark = [pytest.mark.server, pytest.mark.handlers]

_names = itertools.count()


def new_channel() -> str:
    """Return a chat channel no other test uses (the demo lets clients publish to chat:*)."""
    return f"chat:ws{next(_names)}-{os.getpid()}"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    database = tmp_path_factory.mktemp("ws-db") / "events.sqlite3"
    env = project_env(f"sqlite:///{database}", DJANGO_SETTINGS_MODULE=SETTINGS, REALTIME_KEEPALIVE=None)
    manage(env, "migrate", "--no-input", "-v", "0")
    return env


@pytest.fixture(scope="module")
def server(env, tmp_path_factory):
    with running_server("daphne", env, tmp_path_factory.mktemp("daphne") / "daphne.log") as server:
        yield server


@pytest.fixture(scope="module")
def second_server(env, tmp_path_factory):
    """Another daphne process on the same log, pinging idle clients every second."""
    log = tmp_path_factory.mktemp("daphne2") / "daphne.log"
    with running_server("daphne", env, log, ["--ping-interval", "1", "--ping-timeout", "1"]) as server:
        yield server


def sse_events(server, channel: str, last_event_id: str, count: int) -> list:
    """Read *count* events of *channel* over SSE, resuming after *last_event_id*."""
    url = f"{server.url}/events/?channel={channel}"
    with httpx.Client(timeout=RECEIVE_TIMEOUT) as client:
        with connect_sse(client, "GET", url, headers={"Last-Event-ID": last_event_id}) as source:
            events = []
            for sse in source.iter_sse():
                # httpx-sse also dispatches the data-less retry block that opens a stream.
                if sse.data:
                    events.append(sse)
                    if len(events) == count:
                        return events
    raise AssertionError(f"the SSE stream ended after {len(events)} of {count} events")


# Subscribing ------------------------------------------------------------------


def test_subscribe_without_last_id_gets_the_events_published_after_it(server, env):
    channel = new_channel()
    (before,) = publish_lines(env, channel, ["before"])
    with server.connect() as ws:
        confirmed = subscribe(ws, channel)
        assert int(confirmed["last_id"]) >= int(before)
        (after,) = publish_lines(env, channel, [{"n": 1}])
        (event,) = take_events(ws, 1)
        assert event == {"type": "event", "channel": channel, "id": after, "event": "message", "data": {"n": 1}}


def test_subscribe_with_last_id_replays_the_stored_events_in_order_then_goes_live(server, env):
    channel = new_channel()
    ids = publish_lines(env, channel, [0, 1, 2, 3])
    with server.connect() as ws:
        assert subscribe(ws, channel, ids[0])["last_id"] == ids[0]
        assert [(e["id"], e["data"]) for e in take_events(ws, 3)] == list(zip(ids[1:], [1, 2, 3], strict=True))
        (live,) = publish_lines(env, channel, ["live"])
        assert [e["id"] for e in take_events(ws, 1)] == [live]


# Publishing -------------------------------------------------------------------


def test_a_publish_is_acked_with_the_stored_id_and_reaches_websocket_and_sse_subscribers(server):
    channel = new_channel()
    with server.connect() as listener, server.connect() as sender:
        start = subscribe(listener, channel)["last_id"]
        ack = request(sender, {"type": "publish", "channel": channel, "event": "said", "data": {"t": "hé"}, "ref": 1})
        assert ack["type"] == "ack" and ack["ref"] == 1 and ack["channel"] == channel
        (event,) = take_events(listener, 1)
        assert (event["id"], event["event"], event["data"]) == (ack["id"], "said", {"t": "hé"})
    (sse,) = sse_events(server, channel, start, 1)
    assert (sse.id, json.loads(sse.data)) == (ack["id"], {"t": "hé"})


def test_a_forbidden_publish_is_refused_and_the_connection_stays_usable(server):
    with server.connect() as ws:
        reply = request(ws, {"type": "publish", "channel": "demo:not-for-clients", "data": 1, "ref": "p"})
        assert (reply["type"], reply["code"], reply["ref"]) == ("error", "forbidden", "p")
        assert request(ws, {"type": "ping", "ref": 2}) == {"type": "pong", "ref": 2}


def test_one_id_resumes_on_both_transports(server, env):
    channel = new_channel()
    (seed,) = publish_lines(env, channel, ["seed"])
    ids = publish_lines(env, channel, [1, 2, 3])
    # SSE -> WebSocket: the id of the first event read over SSE resumes a subscription.
    (first,) = sse_events(server, channel, seed, 1)
    assert first.id == ids[0]
    with server.connect() as ws:
        subscribe(ws, channel, first.id)
        second, third = take_events(ws, 2)
    assert [second["id"], third["id"]] == ids[1:]
    # WebSocket -> SSE: the id of an event read over the WebSocket resumes a stream.
    (fourth,) = publish_lines(env, channel, [4])
    assert [e.id for e in sse_events(server, channel, second["id"], 2)] == [third["id"], fourth]


# Refusals and errors ----------------------------------------------------------


@pytest.mark.parametrize("origin", ["http://evil.example", None], ids=["foreign", "missing"])
def test_a_foreign_or_missing_origin_is_refused(server, origin):
    with pytest.raises(InvalidStatus) as info:
        server.connect(origin=origin).close()
    assert info.value.response.status_code == 403


def test_invalid_json_a_binary_frame_and_an_oversize_message_get_errors_and_the_connection_stays_usable(server):
    with server.connect() as ws:
        assert request(ws, "{nope")["code"] == "bad_json"
        send(ws, b'{"type": "ping"}')
        assert receive(ws)["code"] == "bad_message"
        oversize = {"type": "publish", "channel": "chat:big", "data": "x" * (100 * 1024)}
        assert request(ws, oversize) == {
            "type": "error",
            "code": "too_large",
            "message": "message is larger than 65536 bytes",
        }
        assert request(ws, {"type": "ping", "ref": "still here"}) == {"type": "pong", "ref": "still here"}


def test_a_message_over_the_servers_own_limit_is_closed_with_1009(server):
    with server.connect() as ws:
        send(ws, json.dumps({"type": "ping", "ref": "x" * (1024 * 1024 + 1)}))
        with pytest.raises(ConnectionClosed) as info:
            receive(ws)
    assert close_code(info.value) == 1009


# Several processes ------------------------------------------------------------


def test_an_event_published_through_another_server_process_is_delivered(server, second_server, env):
    channel = new_channel()
    with server.connect() as listener, second_server.connect() as sender:
        subscribe(listener, channel)
        ack = request(sender, {"type": "publish", "channel": channel, "data": "from the other process"})
        assert ack["type"] == "ack"
        (event,) = take_events(listener, 1)
        assert (event["id"], event["data"]) == (ack["id"], "from the other process")


def test_runserver_serves_the_websocket_too(env, tmp_path):
    channel = new_channel()
    with running_server("runserver", env, tmp_path / "runserver.log") as server, server.connect() as ws:
        subscribe(ws, channel)
        ack = request(ws, {"type": "publish", "channel": channel, "data": 1, "ref": "r"})
        events = [ack, receive(ws)]
        assert sorted(m["type"] for m in events) == ["ack", "event"]


# Dead and slow clients --------------------------------------------------------


def handshake(server) -> socket.socket:
    """Open a WebSocket by hand, with a tiny receive buffer, and never read from it again."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(RECEIVE_TIMEOUT)
    sock.connect(("127.0.0.1", server.port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws/ HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nOrigin: {server.origin}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    assert sock.recv(12) == b"HTTP/1.1 101"
    return sock


def test_a_peer_that_stops_answering_pings_is_dropped(second_server):
    sock = handshake(second_server)
    try:
        # daphne's access log names the connection's port in its "WSDISCONNECT /ws/" line.
        marker = f"127.0.0.1:{sock.getsockname()[1]} "
        deadline = time.monotonic() + 15
        while not any(marker in line and "WSDISCONNECT" in line for line in second_server.log().splitlines()):
            assert time.monotonic() < deadline, "daphne did not drop a peer that answers no ping"
            time.sleep(0.1)
    finally:
        sock.close()


def test_a_client_that_stops_reading_is_closed_with_bounded_memory_and_resumes_without_loss(server, env):
    channel = new_channel()
    count, size = 8000, 10_000
    with server.connect(max_queue=1) as ws:
        start = subscribe(ws, channel)["last_id"]
        rss_before = server.memory_kb("VmRSS")
        # The client reads nothing while another process publishes 80 MB.
        ids = publish_lines(env, channel, [{"n": n, "pad": "x" * size} for n in range(count)])
        server.wait_for_log("does not read fast enough (4000)", timeout=30)
        growth_mb = (server.memory_kb("VmHWM") - rss_before) / 1024
        got = []
        with pytest.raises(ConnectionClosed) as info:
            while True:
                got.append(receive(ws)["id"])
    # The close frame waits behind the unread data, so the client sees it
    # only if it drains everything before daphne gives up on the handshake.
    assert close_code(info.value) in (4000, 1006)
    published_mb = count * size / 1024 / 1024
    assert growth_mb < published_mb / 2, f"daphne grew by {growth_mb:.0f} MB while {published_mb:.0f} MB were sent"
    assert got == ids[: len(got)]
    with server.connect() as ws:
        subscribe(ws, channel, got[-1] if got else start)
        got += [e["id"] for e in take_events(ws, count - len(got))]
    assert got == ids
