"""What an adversarial client tries, against the demo under gunicorn (gevent) and daphne: each is refused or bounded.

One server of each kind serves the whole module, on one SQLite log.  The
rate limits key clients by ``X-Forwarded-For`` here (CLIENT_ADDRESS_HEADER),
so each test is a client of its own.  Rows that ``publish()`` would refuse
(stored before it did, or by raw SQL) are written straight into the file.
"""

import json
import secrets
import socket
import sqlite3
import time
from contextlib import closing

import httpx
import pytest
from websockets.sync.client import connect

from django_realtime.presence import JOIN, LEAVE
from tests.support.processes import memory_kb
from tests.support.servers import EventStream, manage, project_env, start_server, stop_server

pytestmark = pytest.mark.server

KINDS = ("gunicorn-gevent", "daphne")
PRESENCE_BURST = 4
PUBLISH_BURST = 5
#: Bytes each stream may hold to catch up, and the process in all (CATCH_UP_MEMORY).
CATCH_UP_MEMORY = 2 * 1024 * 1024


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    database = tmp_path_factory.mktemp("security") / "events.sqlite3"
    env = project_env(f"sqlite:///{database}")
    env["REALTIME_JSON"] = json.dumps(
        {
            "PUBLIC_CHANNELS": ["chat:*"],
            "PUBLISH_CHANNELS": ["chat:*"],
            "PRESENCE_CHANNELS": ["*"],
            "PRESENCE_RATE": 0.5,
            "PRESENCE_BURST": PRESENCE_BURST,
            "WEBSOCKET_PUBLISH_RATE": 0.5,
            "WEBSOCKET_PUBLISH_BURST": PUBLISH_BURST,
            "CLIENT_ADDRESS_HEADER": "X-Forwarded-For",
            "CATCH_UP_MEMORY": CATCH_UP_MEMORY,
        }
    )
    env["DJANGO_DEBUG"] = "1"  # the demo's default: a 500 would show Django's debug page
    env["DATABASE_PATH"] = str(database)
    manage(env, "migrate", "--no-input", "-v", "0")
    return env


@pytest.fixture(scope="module")
def servers(env, tmp_path_factory):
    logs = tmp_path_factory.mktemp("security-logs")
    started = {}
    try:
        for kind in KINDS:
            started[kind] = start_server(kind, env, logs / f"{kind}.log")
        yield started
    finally:
        for server in started.values():
            stop_server(server)


@pytest.fixture(params=KINDS)
def server(request, servers):
    server = servers[request.param]
    server.check_alive()
    return server


def client_address():
    """Return an address of a client of its own, for the rate limits (X-Forwarded-For)."""
    return f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}"


def rows(env, sql, params=()):
    with closing(sqlite3.connect(env["DATABASE_PATH"], timeout=10)) as db, db:
        return db.execute(sql, params).fetchall()


def stored(env, channel):
    return rows(env, "SELECT event, data FROM django_realtime_event WHERE channel = ? ORDER BY id", [channel])


def insert_raw(env, channel, event, data_json):
    """Store a row as raw SQL does, or a version that did not check it: no publish(), no ORM check."""
    with closing(sqlite3.connect(env["DATABASE_PATH"], timeout=10)) as db, db:
        cursor = db.execute(
            "INSERT INTO django_realtime_event (channel, event, data, created) VALUES (?, ?, ?, ?)",
            [channel, event, data_json, "2026-12-07 00:00:00"],
        )
        return cursor.lastrowid


def newest_id(env):
    return rows(env, "SELECT coalesce(max(id), 0) FROM django_realtime_event")[0][0]


def ws(server, address):
    url = server.url.replace("http", "ws") + "/ws/"
    return connect(url, origin=server.url, open_timeout=10, additional_headers={"X-Forwarded-For": address})


def request(sock, message, ref):
    sock.send(json.dumps({**message, "ref": ref}))
    while True:
        reply = json.loads(sock.recv(timeout=10))
        if reply.get("ref") == ref:
            return reply


def csrf_post(server, path, body, *, headers=None):
    """POST JSON as a page would, with a CSRF cookie and token of the client's choosing (a fresh one each time)."""
    token = secrets.token_hex(16)
    return httpx.post(
        server.url + path,
        content=json.dumps(body),
        headers={"Content-Type": "application/json", "X-CSRFToken": token, **(headers or {})},
        cookies={"csrftoken": token},
        timeout=10,
    )


# 1. A lone surrogate --------------------------------------------------------


def test_a_lone_surrogate_is_refused_on_every_publishing_path(env, servers, server):
    channel = f"chat:surrogate-{server.kind}"
    address = client_address()
    with ws(servers["daphne"], address) as sock:
        reply = request(sock, {"type": "publish", "channel": channel, "data": "\ud800"}, "s")
    assert (reply["type"], reply["code"]) == ("error", "bad_message"), reply
    assert "lone surrogate" in reply["message"]
    reply = csrf_post(server, "/events/publish/", {"type": "publish", "channel": channel, "data": "a\udfffb"})
    assert reply.status_code == 400, reply.text
    assert reply.json()["code"] == "bad_message"
    with pytest.raises(AssertionError, match="lone surrogate"):
        manage(env, "publish_event", channel, '"\\ud800"')
    assert stored(env, channel) == []


def test_a_stored_lone_surrogate_reaches_text_streams_as_a_replacement_character(env, server):
    channel = f"chat:stored-surrogate-{server.kind}"
    before = newest_id(env)
    bad = insert_raw(env, channel, "message", '"<p>a\\ud800b</p>"')
    good = insert_raw(env, channel, "message", '"<p>next</p>"')
    params = [("channel", channel), ("data", "text"), ("lastEventId", str(before))]
    with EventStream(server.events_url(), params=params) as stream:
        events = stream.take(2, timeout=10)
    assert [(event.id, event.data) for event in events] == [(str(bad), "<p>a\ufffdb</p>"), (str(good), "<p>next</p>")]


def test_an_event_that_cannot_be_encoded_ends_the_stream_after_the_ones_before_it(env, server):
    channel = f"chat:unencodable-{server.kind}"
    before = newest_id(env)
    first = insert_raw(env, channel, "message", "1")
    insert_raw(env, channel, "bad\nretry: 1", "2")  # raw SQL: an event name the encoder refuses
    insert_raw(env, channel, "message", "3")
    start = server.log_size()
    with EventStream(server.events_url(), params=[("channel", channel), ("lastEventId", str(before))]) as stream:
        assert stream.next(timeout=10).id == str(first), "the event before the bad one, of the same batch"
        assert stream.ended(timeout=10), "the stream ends rather than stays open and silent"
    assert "cannot be encoded" in server.log(start)


# 2. Presence is rate-limited --------------------------------------------------


def test_websocket_joins_and_leaves_are_rate_limited(env, servers):
    channel = "chat:churn"
    with ws(servers["daphne"], client_address()) as sock:
        codes = []
        for n in range(PRESENCE_BURST + 4):
            kind = "join" if n % 2 == 0 else "leave"
            reply = request(sock, {"type": kind, "channel": channel, "name": "x", "info": {"pad": "x" * 900}}, n)
            codes.append(reply.get("code", reply["type"]))
    assert codes[:PRESENCE_BURST] == ["joined", "left"] * (PRESENCE_BURST // 2), codes
    assert codes[-2:] == ["rate_limited", "not_joined"], codes
    assert codes.count("joined") + codes.count("left") <= PRESENCE_BURST + 1, codes
    stored_events = [event for event, _ in stored(env, channel)]
    assert stored_events.count(JOIN) + stored_events.count(LEAVE) <= PRESENCE_BURST + 1


def test_sse_presence_reconnects_are_rate_limited_with_retry_after(env, server):
    channel = f"chat:sse-churn-{server.kind}"
    headers = {"X-Forwarded-For": client_address(), "Sec-Fetch-Site": "same-origin"}
    params = {"channel": channel, "presence": channel, "name": "x"}
    statuses = []
    for _ in range(PRESENCE_BURST + 3):
        with httpx.stream("GET", server.events_url(), params=params, headers=headers, timeout=10) as response:
            statuses.append(response.status_code)
            retry_after = response.headers.get("Retry-After")
    assert statuses[:PRESENCE_BURST] == [200] * PRESENCE_BURST, statuses
    assert statuses[-1] == 429 and retry_after == "2", (statuses, retry_after)
    assert [event for event, _ in stored(env, channel)].count(JOIN) <= PRESENCE_BURST + 1


def test_presence_lookups_are_rate_limited(server):
    headers = {"X-Forwarded-For": client_address()}
    url = server.events_url() + "presence/"
    statuses = [
        httpx.get(url, params={"channel": "chat:x"}, headers=headers, timeout=10).status_code
        for _ in range(PRESENCE_BURST + 3)
    ]
    assert statuses[:PRESENCE_BURST] == [200] * PRESENCE_BURST, statuses
    assert statuses[-1] == 429 and statuses.count(200) <= PRESENCE_BURST + 1, statuses


# 3. Another site cannot make a visitor present ------------------------------


CROSS_SITE_NAVIGATION = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
CROSS_SITE_EVENTSOURCE = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors", "Origin": "https://evil.example"}


@pytest.mark.parametrize("headers", [CROSS_SITE_NAVIGATION, CROSS_SITE_EVENTSOURCE], ids=["navigation", "eventsource"])
def test_a_stream_from_another_site_does_not_join_presence(env, server, headers):
    channel = f"chat:cross-{server.kind}-{secrets.token_hex(4)}"
    params = {"channel": channel, "presence": channel, "name": "victim", "info": '{"pk": 31337}'}
    headers = {**headers, "X-Forwarded-For": client_address()}
    response = httpx.get(server.events_url(), params=params, headers=headers, timeout=10)
    assert response.status_code == 403, response.text
    # With ?include=channel the stream goes on, unjoined, and says why in band.
    with EventStream(server.events_url(), params=[*params.items(), ("include", "channel")], headers=headers) as stream:
        error = stream.next(timeout=10)
        assert error.event == "error" and json.loads(error.data)["code"] == "presence_forbidden"
    assert stored(env, channel) == []
    same_site_page = {"Sec-Fetch-Site": "same-origin", "X-Forwarded-For": client_address()}
    with EventStream(server.events_url(), params=list(params.items()), headers=same_site_page) as stream:
        assert stream.next(timeout=10).event == JOIN, "a page of the site joins"


# 5. Catching up holds a piece, not the backlog ---------------------------------


def test_streams_that_replay_and_never_read_hold_pieces_not_the_backlog(env, server):
    channel = f"chat:backlog-{server.kind}"
    before = newest_id(env)
    # 9.6 MB of history, in the process's buffer: more than the kernel's socket buffers take.
    manage(env, "publish_event", channel, "--stdin", input="".join(json.dumps("x" * 8000) + "\n" for _ in range(1200)))
    newest = newest_id(env)
    deadline = time.monotonic() + 30
    while httpx.get(server.events_url() + "health/", timeout=10).json()["horizon"] < newest:  # the hub read it all
        assert time.monotonic() < deadline, "the server's hub did not read the backlog within 30 s"
        time.sleep(0.1)
    pid = server.worker_pid()
    baseline = memory_kb(pid)
    sockets = []
    try:
        for _ in range(40):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a client that reads nothing
            sock.connect(("127.0.0.1", int(server.url.rsplit(":", 1)[1])))
            sock.sendall(
                f"GET /events/?channel={channel}&lastEventId={before} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
            )
            sockets.append(sock)
        time.sleep(3)
        grown = memory_kb(pid) - baseline
    finally:
        for sock in sockets:
            sock.close()
    # Each stream's whole backlog, encoded, would be 9.6 MB a stream, less what the kernel took; a piece is 64 KiB.
    assert grown < 40 * 400, f"{grown} KiB for 40 streams: {grown / 40:.0f} KiB each"


# 6. An anonymous client cannot buy tokens with cookies ----------------------


def test_the_publish_endpoint_keys_anonymous_clients_by_address_not_by_a_cookie(server):
    channel = f"chat:cookies-{server.kind}"
    headers = {"X-Forwarded-For": client_address()}
    message = {"type": "publish", "channel": channel, "data": "x"}
    statuses = [
        csrf_post(server, "/events/publish/", message, headers=headers).status_code for _ in range(PUBLISH_BURST + 3)
    ]
    assert statuses[:PUBLISH_BURST] == [200] * PUBLISH_BURST, statuses
    assert statuses[-1] == 429, statuses
    if server.kind == "daphne":  # publishes over a WebSocket from the same address draw on the same bucket
        with ws(server, headers["X-Forwarded-For"]) as sock:
            assert request(sock, {"type": "publish", "channel": channel, "data": "y"}, "p")["code"] == "rate_limited"


# 7. Presence needs the right to read the channel, on both transports -------


def test_a_websocket_may_not_join_a_channel_it_may_not_subscribe_to(env, servers):
    channel = "staff:alerts"
    with ws(servers["daphne"], client_address()) as sock:
        reply = request(sock, {"type": "join", "channel": channel, "name": "eve"}, "j")
    assert (reply["type"], reply["code"]) == ("error", "forbidden"), reply
    assert stored(env, channel) == []


# 8. ?info= cannot crash the view ---------------------------------------------


def test_deeply_nested_or_long_info_is_refused_not_a_server_error(env, servers):
    # On daphne: gunicorn refuses request lines over 4094 bytes itself, and 1,000 nested
    # brackets, percent-encoded, take 6,000.
    server = servers["daphne"]
    channel = "chat:info"
    headers = {"X-Forwarded-For": client_address(), "Sec-Fetch-Site": "same-origin"}
    for info in ("[" * 1500 + "]" * 1500, json.dumps({"k": "x" * 7_000})):
        params = {"channel": channel, "presence": channel, "name": "x", "info": info}
        response = httpx.get(server.events_url(), params=params, headers=headers, timeout=10)
        assert response.status_code == 400, response.text[:300]
        assert "info" in response.text
    assert stored(env, channel) == []
