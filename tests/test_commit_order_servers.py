"""No event waits for another transaction: real servers on PostgreSQL and MariaDB, over SSE and WebSockets.

A busy site always has a publishing transaction open: a request that
published early under ``ATOMIC_REQUESTS`` and then sends an e-mail.  Here a
process of the test's own (tests/held_publisher.py) holds such
transactions open on command, one after the other and overlapping, while
another publishes in autocommit, on the held channel and on another.  Every
event that has committed must reach the streams of gunicorn (gevent) and
daphne at once, whatever is still open; a held one when it commits, after
the ones that committed before it (commit order), each once; and a client
that reconnects with the cursor it got (``Last-Event-ID``, ``last_id``) gets
exactly what it lacks, on either server.
"""

from __future__ import annotations

import json
import queue
import threading
import uuid

import pytest
from websockets.sync.client import connect

from django_realtime.cursor import Cursor
from tests.commit_order_site import ARRIVAL, publisher_fixture, site_fixture  # noqa: F401  (fixtures)
from tests.support.servers import EventStream, running_servers

pytestmark = [pytest.mark.server, pytest.mark.postgres]


class Socket:
    """A WebSocket subscribed to channels, read on a thread of its own: (event id, channel, cursor text)."""

    def __init__(self, server, channels: list[str], last_ids: dict[str, str] | None = None) -> None:
        self.context = connect(server.url.replace("http", "ws") + "/ws/", origin=server.url, open_timeout=10)
        self.ws = self.context.__enter__()
        self.events: queue.Queue[tuple[int, str, str]] = queue.Queue()
        for channel in channels:
            message = {"type": "subscribe", "channel": channel}
            if last_ids and channel in last_ids:
                message["last_id"] = last_ids[channel]
            self.ws.send(json.dumps(message))
        subscribed = set()
        while subscribed != set(channels):
            reply = json.loads(self.ws.recv(timeout=10))
            assert reply["type"] == "subscribed", reply
            subscribed.add(reply["channel"])
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for text in self.ws:
                message = json.loads(text)
                if message["type"] == "event":
                    self.events.put((Cursor.event_id(message["id"]), message["channel"], message["id"]))
        except Exception:  # closed by the test
            pass

    def next(self, timeout: float = ARRIVAL) -> tuple[int, str, str]:
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no WebSocket event within {timeout}s") from None

    def close(self) -> None:
        self.context.__exit__(None, None, None)


def sse_next(stream: EventStream) -> tuple[int, str, str]:
    event = stream.next(timeout=ARRIVAL)
    return Cursor.event_id(event.id), event.event, event.id


def test_a_held_transaction_delays_no_other_event_and_arrives_once_when_it_commits(site, publisher):
    _, servers = site
    slow, fast = f"chat:slow-{uuid.uuid4().hex[:6]}", f"chat:fast-{uuid.uuid4().hex[:6]}"
    channels = [slow, fast]
    streams = [
        EventStream(server.events_url(), params=[*(("channel", c) for c in channels)]) for server in servers.values()
    ]
    for stream in streams:
        stream.open()
    socket = Socket(servers["daphne"], channels)
    try:
        held = publisher.begin("a", slow)
        # Committed after the held one drew its id: on the other channel, and on the held one's own.
        others = [publisher.publish(fast), publisher.publish(slow), publisher.publish(fast)]
        for stream in streams:
            got = [sse_next(stream) for _ in others]
            assert [event_id for event_id, _, _ in got] == others, f"{stream}: waited for the held transaction"
            assert all(not Cursor.parse(text).covers(held) for _, _, text in got), "a cursor covered the held id"
        # A WebSocket's subscriptions are each in commit order; across them, in no promised order.
        assert sorted(socket.next()[0] for _ in others) == sorted(others)
        publisher.end("a")
        for stream in streams:
            event_id, _, text = sse_next(stream)
            assert event_id == held and text.startswith(f"{held}@"), "the held event, once it committed, named"
            assert Cursor.parse(text).dominates(Cursor(others[-1])), "its cursor covers everything before it"
        assert socket.next()[0] == held
        after = publisher.publish(fast)
        for stream in streams:
            assert sse_next(stream)[0] == after, "nothing twice, nothing else"
        assert socket.next()[0] == after
    finally:
        socket.close()
        for stream in streams:
            stream.close()


def test_back_to_back_held_transactions_never_stop_delivery(site, publisher):
    """The busy site: some publishing transaction is always open, yet every committed event arrives."""
    _, servers = site
    slow, fast = f"chat:slow-{uuid.uuid4().hex[:6]}", f"chat:fast-{uuid.uuid4().hex[:6]}"
    streams = {
        kind: EventStream(server.events_url(), params=[("channel", slow), ("channel", fast)])
        for kind, server in servers.items()
    }
    for stream in streams.values():
        stream.open()
    try:
        held = {"t0": publisher.begin("t0", slow)}
        order = []
        for n in range(1, 6):
            # Open the next before ending the last: the log always has one in flight.
            held[f"t{n}"] = publisher.begin(f"t{n}", slow)
            fast_id = publisher.publish(fast)
            for stream in streams.values():
                assert sse_next(stream)[0] == fast_id, f"{stream}: delivery stopped while transactions overlap"
            publisher.end(f"t{n - 1}")
            order += [fast_id, held[f"t{n - 1}"]]
            for stream in streams.values():
                assert sse_next(stream)[0] == held[f"t{n - 1}"]
        publisher.end("t5")
        for stream in streams.values():
            assert sse_next(stream)[0] == held["t5"]
    finally:
        for stream in streams.values():
            stream.close()


@pytest.mark.parametrize("transport", ["sse", "ws"])
def test_a_client_resumes_from_its_cursor_on_the_other_server_and_gets_exactly_what_it_lacks(
    site, publisher, transport
):
    _, servers = site
    channel = f"chat:resume-{uuid.uuid4().hex[:6]}"
    first, second = servers["gunicorn-gevent"], servers["daphne"]
    if transport == "ws":
        first, second = second, first  # gunicorn serves no WebSockets: resume over SSE on it instead
    held = publisher.begin("r", channel)
    before_id = publisher.publish(channel)
    if transport == "sse":
        with EventStream(first.events_url(), params=[("channel", channel), ("lastEventId", str(before_id - 2))]) as s:
            event_id, _, cursor = sse_next(s)
    else:
        socket = Socket(first, [channel], {channel: str(before_id - 2)})
        event_id, _, cursor = socket.next()
        socket.close()
    assert event_id == before_id and not Cursor.parse(cursor).covers(held)
    # Gone: the held transaction commits, and another event follows; the client comes back elsewhere.
    publisher.end("r")
    later = publisher.publish(channel)
    with EventStream(second.events_url(), params=[("channel", channel)], headers={"Last-Event-ID": cursor}) as s:
        assert [sse_next(s)[0] for _ in range(2)] == [held, later], "what it lacked, the held one first"
        with pytest.raises(AssertionError):
            s.next(timeout=1.0)  # and nothing more
    socket = Socket(second if transport == "sse" else first, [channel], {channel: cursor})
    try:
        assert [socket.next()[0] for _ in range(2)] == [held, later]
        with pytest.raises(AssertionError):
            socket.next(timeout=1.0)
    finally:
        socket.close()


def test_servers_started_while_a_transaction_is_held_serve_at_once(site, publisher, tmp_path):
    """A process that starts (a deploy, a restart) while a publishing transaction is open serves streams at once,
    and the held event when it commits; not only once that transaction ends."""
    env, _ = site
    channel = f"chat:start-{uuid.uuid4().hex[:6]}"
    held = publisher.begin("s", channel)
    later = publisher.publish(channel)
    with running_servers(["gunicorn-gevent", "daphne"], env, tmp_path) as servers:
        streams = [
            EventStream(server.events_url(), params=[("channel", channel), ("lastEventId", str(held - 1))])
            for server in servers.values()
        ]
        socket = None
        try:
            for stream in streams:
                stream.open()
            socket = Socket(servers["daphne"], [channel], {channel: str(held - 1)})
            for stream in streams:
                assert sse_next(stream)[0] == later, f"{stream}: waited for the transaction open at its start"
            assert socket.next()[0] == later
            publisher.end("s")
            for stream in streams:
                assert sse_next(stream)[0] == held
            assert socket.next()[0] == held
        finally:
            if socket is not None:
                socket.close()
            for stream in streams:
                stream.close()
