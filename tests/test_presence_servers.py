"""Presence across real server processes: gunicorn with gevent (SSE) and daphne (WebSocket), one log.

A member joined on one server is seen by the other's clients, live and in its
snapshot; a stream that closes leaves; and when a server is killed with
SIGKILL, so that its members cannot leave, another server sends their leaves
within PRESENCE_TIMEOUT + PRESENCE_HEARTBEAT.
"""

import json
import os
import signal
import time

import httpx
import pytest
from websockets.sync.client import connect

from django_realtime.presence import JOIN, LEAVE
from tests.support.servers import EventStream, manage, project_env, start_server, stop_server

pytestmark = pytest.mark.server

HEARTBEAT = 0.5
TIMEOUT = 1.5
CHANNEL = "chat:presence"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    database = tmp_path_factory.mktemp("presence") / "events.sqlite3"
    env = project_env(f"sqlite:///{database}")
    env["REALTIME_JSON"] = json.dumps(
        {"PRESENCE_CHANNELS": ["chat:*"], "PRESENCE_HEARTBEAT": HEARTBEAT, "PRESENCE_TIMEOUT": TIMEOUT}
    )
    manage(env, "migrate", "--no-input", "-v", "0")
    return env


@pytest.fixture
def servers(env, tmp_path):
    started = []
    try:
        for kind in ("gunicorn-gevent", "daphne"):
            started.append(start_server(kind, env, tmp_path / f"{kind}.log"))
        yield started
    finally:
        for server in started:
            stop_server(server)


def who(server):
    reply = httpx.get(f"{server.events_url()}presence/", params={"channel": CHANNEL}, timeout=5)
    assert reply.status_code == 200, reply.text
    return sorted(member["user"] for member in reply.json()["members"])


def presence_of(stream, count, timeout=10.0):
    """Return the next *count* presence events of *stream* as (event, user)."""
    events = []
    deadline = time.monotonic() + timeout
    while len(events) < count:
        sse = stream.next(deadline - time.monotonic())
        if sse.event in (JOIN, LEAVE):
            events.append((sse.event, json.loads(sse.data)["user"]))
    return events


def wait_for(check, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.05)


def test_presence_spans_servers_leaves_on_close_and_expires_after_kill_9(servers):
    gunicorn, daphne = servers
    with EventStream(daphne.events_url(), params=[("channel", CHANNEL)]) as watcher:
        # ada on gunicorn, over SSE.
        ada = EventStream(gunicorn.events_url(), params=[("channel", CHANNEL), ("presence", CHANNEL), ("name", "ada")])
        ada.open()
        # bob on daphne, over a WebSocket.
        with connect(daphne.url.replace("http", "ws") + "/ws/", origin=daphne.url, open_timeout=10) as bob:
            bob.send(json.dumps({"type": "join", "channel": CHANNEL, "name": "bob"}))
            replies = [json.loads(bob.recv(timeout=5))]
            assert replies[0]["type"] == "joined", replies
            assert presence_of(watcher, 2) == [(JOIN, "ada"), (JOIN, "bob")]
            assert who(gunicorn) == who(daphne) == ["ada", "bob"]
            bob.send(json.dumps({"type": "presence", "channel": CHANNEL, "ref": "who"}))
            reply = json.loads(bob.recv(timeout=5))
            assert sorted(member["user"] for member in reply["members"]) == ["ada", "bob"]

            # ada closes her stream: gunicorn notices at its next keepalive (1 s) and she leaves.
            ada.close()
            assert presence_of(watcher, 1) == [(LEAVE, "ada")]
            assert who(daphne) == ["bob"]

            # dave over SSE on daphne (ASGI): his stream's end is a cancelled task there.
            dave = EventStream(
                daphne.events_url(), params=[("channel", CHANNEL), ("presence", CHANNEL), ("name", "dave")]
            )
            dave.open()
            assert presence_of(watcher, 1) == [(JOIN, "dave")]
            dave.close()
            assert presence_of(watcher, 1) == [(LEAVE, "dave")]

            # carol joins on gunicorn, which is then killed: she cannot leave by herself.
            carol = EventStream(
                gunicorn.events_url(), params=[("channel", CHANNEL), ("presence", CHANNEL), ("name", "carol")]
            )
            carol.open()
            assert presence_of(watcher, 1) == [(JOIN, "carol")]
            os.killpg(gunicorn.process.pid, signal.SIGKILL)
            gunicorn.process.wait(10)
            killed = time.monotonic()
            # Left out of the snapshot once her server is PRESENCE_TIMEOUT silent...
            wait_for(lambda: who(daphne) == ["bob"], timeout=TIMEOUT + HEARTBEAT + 3)
            # ...and her leave is sent by daphne's heartbeat.
            assert presence_of(watcher, 1, timeout=TIMEOUT + 2 * HEARTBEAT + 3) == [(LEAVE, "carol")]
            assert time.monotonic() - killed < TIMEOUT + 2 * HEARTBEAT + 3
            carol.close()
        assert presence_of(watcher, 1) == [(LEAVE, "bob")]
        assert who(daphne) == []
