"""WebRTC signalled over the event log: two browsers call each other on a pair channel; a third user reads none of it.

The demo's call page (testproject/chat/calls.py, static/chat/call.js on
``Realtime.peer()``) runs in headless Chromium with fake media devices, on
loopback, where WebRTC needs no STUN server.  Two pages, logged in as two
users by their session cookies, set up a data channel and a video track
through ``call:<pkA>-<pkB>``: over WebSockets under daphne, and over SSE
(the publish endpoint for sending) under gunicorn with gevent, which serves
no WebSocket at all.  A third logged-in user is refused the pair channel,
live and by replay, on both transports: plain HTTP and ``websockets``.
"""

from __future__ import annotations

import json
import re
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from django_realtime.auth import pair_channel
from tests.support.browser import (
    CHROMIUM_ARGS,
    Pages,
    chromium_path,
    require_browser,
    wait_for_state,
    wait_for_value,
)
from tests.support.servers import EventStream, Server, manage, project_env, publish_event
from tests.support.websocket import receive, request, send, subscribe

pytestmark = [pytest.mark.server]

MEDIA_ARGS = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
SIGNALS = {"webrtc.hello", "webrtc.description", "webrtc.candidate", "webrtc.bye"}

#: Users of the servers' database and the session each is logged in with.
MAKE_USERS = """
import json
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.backends.db import SessionStore

found = {}
for name in ("ann", "bob", "eve"):
    user = get_user_model().objects.create_user(name)
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    found[name] = {"pk": user.pk, "session": session.session_key}
print(json.dumps(found))
"""


# Fixtures ----------------------------------------------------------------


@pytest.fixture(scope="module")
def database(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("webrtc") / "db.sqlite3"


@pytest.fixture(scope="module")
def env(database) -> dict[str, str]:
    environment = project_env(f"sqlite:///{database}")
    manage(environment, "migrate", "--verbosity", "0")
    return environment


@pytest.fixture(scope="module")
def users(env) -> dict[str, dict[str, Any]]:
    # The last line: shell may print notes of its own before it.
    return json.loads(manage(env, "shell", "-c", MAKE_USERS).strip().splitlines()[-1])


@pytest.fixture(scope="module")
def crowd(env) -> list[dict[str, Any]]:
    """Sixteen more signed-in users: as many as MAX_CHANNELS, each a callable member of a room."""
    code = MAKE_USERS.replace('("ann", "bob", "eve")', str(tuple(f"crowd{n:02}" for n in range(16))))
    found = json.loads(manage(env, "shell", "-c", code).strip().splitlines()[-1])
    return [found[name] for name in sorted(found)]


def _serve(kind: str, env: dict[str, str], tmp_path_factory) -> Iterator[Server]:
    server = Server(kind, env, tmp_path_factory.mktemp(kind) / "server.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()
        print(f"--- {kind} ---\n{server.log()[-4000:]}")


@pytest.fixture(scope="module")
def asgi(env, tmp_path_factory) -> Iterator[Server]:
    yield from _serve("daphne", env, tmp_path_factory)


@pytest.fixture(scope="module")
def wsgi(env, tmp_path_factory) -> Iterator[Server]:
    yield from _serve("gunicorn-gevent", env, tmp_path_factory)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path(), args=[*CHROMIUM_ARGS, *MEDIA_ARGS])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def open_as(browser) -> Iterator[Callable[..., Any]]:
    """Open a URL logged in as a user (their session cookie), in a browser context of its own."""
    pages = Pages(browser, timeout=20.0)

    def open_as(user: dict[str, Any], server: Server, path: str, *, init_script: str | None = None) -> Any:
        cookies = [{"name": "sessionid", "value": user["session"], "url": server.url}]
        return pages.open(server.url + path, label=f"{user['pk']} {path}", cookies=cookies, init_script=init_script)

    yield open_as
    pages.close()


def describe(signals: list[tuple[str, str, str]]) -> str:
    """Return one line per signal: its event, sender, recipient, and a description's type and ICE ufrags."""
    lines = []
    for _id, event, text in signals:
        data = json.loads(text)
        extra = ""
        if "description" in data:
            sdp = data["description"]["sdp"]
            ufrags = sorted(set(re.findall(r"ice-ufrag:(\S+)", sdp)))
            extra = f"{data['description']['type']} {','.join(ufrags)} m={sdp.count('m=')}"
        elif "candidate" in data:
            extra = f"{data['candidate'].get('usernameFragment')} {data['candidate']['candidate'][:40]}"
        lines.append(f"{event} {data.get('from', '')[:6]} -> {(data.get('to') or '*')[:6]} {extra}")
    return "\n".join(lines)


def stored(database: Path, channel: str, after: int = 0) -> list[tuple[str, str, str]]:
    """Return the (id, event, data) of the events of *channel* in the log after id *after*, oldest first."""
    with closing(sqlite3.connect(database)) as db:
        rows = db.execute(
            "SELECT id, event, data FROM django_realtime_event WHERE channel = ? AND id > ? ORDER BY id",
            (channel, after),
        ).fetchall()
    return [(str(id), event, data) for id, event, data in rows]


def newest(database: Path, channel: str) -> int:
    """Return the id of the newest event of *channel* in the log, 0 if none: what a test reads after.

    An id, not a count: the demo prunes call channels (RETENTION), which may delete
    older events between two reads.
    """
    with closing(sqlite3.connect(database)) as db:
        (found,) = db.execute("SELECT MAX(id) FROM django_realtime_event WHERE channel = ?", (channel,)).fetchone()
    return found or 0


# Two users call each other -----------------------------------------------

#: What a failing test shows of a call page.
CALL_STATE = """() => {
  const peer = demoCall.peer;
  const pc = peer && peer.connection;
  return {
    status: document.querySelector(".call-status").textContent,
    peer: peer && { id: peer.id, remote: peer.remoteId, polite: peer.polite, state: peer.state },
    pc: pc && [pc.signalingState, pc.iceGatheringState, pc.iceConnectionState, pc.connectionState],
  };
}"""
MESSAGES = "() => Array.from(document.querySelectorAll('.call-messages li:not(.from-note)'), (e) => e.textContent)"
REMOTE_VIDEO = (
    "() => { const s = document.querySelector('.call-remote').srcObject; return !!s && s.getVideoTracks().length }"
)


@pytest.mark.browser
@pytest.mark.parametrize(("kind", "transport"), [("asgi", "websocket"), ("wsgi", "sse")])
def test_two_users_connect_a_data_channel_and_video_through_their_pair_channel(
    request, open_as, users, database, kind, transport
):
    server = request.getfixturevalue(kind)
    ann, bob = users["ann"], users["bob"]
    query = "?transport=ws" if transport == "websocket" else "?transport=sse"
    ann_page = open_as(ann, server, f"/call/{bob['pk']}/{query}")
    bob_page = open_as(bob, server, f"/call/{ann['pk']}/{query}")
    for page in (ann_page, bob_page):
        wait_for_state(page, "live")
        assert page.evaluate(
            "() => demoCall && DjangoRealtime && document.querySelector('#status .via').textContent"
        ) == ("WebSocket" if transport == "websocket" else "SSE")
    channel = pair_channel("call", ann["pk"], bob["pk"])
    before = newest(database, channel)

    ann_page.click(".call-start")
    bob_page.wait_for_selector(".call-answer:visible")
    bob_page.click(".call-answer")
    for page in (ann_page, bob_page):
        try:
            page.wait_for_selector(".call-status[data-state=connected]")
            page.wait_for_selector(".call-text:enabled")
        except Exception as exc:
            states = [page.evaluate(CALL_STATE) for page in (ann_page, bob_page)]
            signals = describe(stored(database, channel, after=before))
            raise AssertionError(f"not connected: {states}\nsignals:\n{signals}") from exc

    ann_page.fill(".call-text", "Hello Bob, peer to peer")
    ann_page.press(".call-text", "Enter")
    wait_for_value(bob_page, MESSAGES, ["ann: Hello Bob, peer to peer"])
    bob_page.fill(".call-text", "Hi Ann, straight back")
    bob_page.press(".call-text", "Enter")
    wait_for_value(ann_page, MESSAGES, ["You: Hello Bob, peer to peer", "bob: Hi Ann, straight back"])
    # The fake camera's video arrives on each side.
    for page in (ann_page, bob_page):
        wait_for_value(page, f"() => ({REMOTE_VIDEO})() > 0", True)

    for page in (ann_page, bob_page):
        assert page.is_visible(".call-videos")
    ann_page.click(".call-hangup")
    bob_page.wait_for_selector(".call-status[data-state=idle]")
    assert bob_page.text_content(".call-status") == "ann hung up."
    for page in (ann_page, bob_page):  # no black video boxes left behind
        wait_for_value(page, "() => document.querySelector('.call-videos').hidden", True)

    # The signalling went through the pair channel, over the transport of the pages;
    # the messages of the data channel went peer to peer, never through the log.
    signals = stored(database, channel, after=before)
    print(describe(signals))
    assert {event for _id, event, _data in signals} == SIGNALS
    assert not any("peer to peer" in data or "straight back" in data for _id, _event, data in signals)
    senders = {json.loads(data)["from"] for _id, _event, data in signals}
    assert len(senders) == 2


@pytest.mark.browser
def test_a_declined_call_ends_on_the_callers_page(open_as, users, asgi):
    ann, bob = users["ann"], users["bob"]
    ann_page = open_as(ann, asgi, f"/call/{bob['pk']}/?transport=ws")
    bob_page = open_as(bob, asgi, f"/call/{ann['pk']}/?transport=ws")
    for page in (ann_page, bob_page):
        wait_for_state(page, "live")
    ann_page.click(".call-start")
    bob_page.wait_for_selector(".call-decline:visible")
    bob_page.click(".call-decline")
    ann_page.wait_for_selector(".call-status[data-state=idle]")
    assert ann_page.evaluate("() => demoCall.peer") is None
    assert bob_page.text_content(".call-status") == "Declined ann's call."


@pytest.mark.browser
def test_in_the_room_a_user_calls_another_from_who_is_here_and_they_answer_from_the_notice(
    browser, open_as, users, asgi
):
    ann = users["ann"]
    ann_room = open_as(ann, asgi, "/room/calls/?transport=ws")
    # Bob is a guest: he signs in with a name alone (the demo's sign-in), and is back in the room.
    context = browser.new_context()
    bob_room = context.new_page()
    bob_room.set_default_timeout(20_000)
    bob_room.goto(f"{asgi.url}/room/calls/?transport=ws")
    assert bob_room.locator(".person a.call-link").count() == 0
    bob_room.click("#sign-in")
    bob_room.fill("input[name=name]", "bobby")
    bob_room.click("button[type=submit]")
    bob_room.wait_for_url(f"{asgi.url}/room/calls/?transport=ws")
    bob = {"pk": bob_room.evaluate("() => JSON.parse(document.getElementById('chat-config').textContent).me")}
    # Each signed-in user is listed with a Call link to the other (and none to themselves).
    ann_room.wait_for_selector(f".person a.call-link[href^='/call/{bob['pk']}/?call=1']")
    bob_room.wait_for_selector(f".person a.call-link[href^='/call/{ann['pk']}/?call=1']")
    assert ann_room.locator(".person.me a.call-link").count() == 0

    with ann_room.context.expect_page() as opened:
        ann_room.click(".person a.call-link")
    ann_call = opened.value
    # The link opens the call page, which calls on Ann's click there, and not before.
    ann_call.wait_for_selector(".call-start:visible")
    assert ann_call.text_content(".call-status") == "Call bobby, or wait for their call."
    ann_call.click(".call-start")
    # Bob's room rings, with a link that answers; Ann's own room does not ring for her own call.
    bob_room.wait_for_selector(".notice a.call-link")
    assert bob_room.text_content(".notice:has(a.call-link)") == "ann is calling you: answer"
    # Hard to miss: as large as the messages, not a muted small line among them.
    size = bob_room.eval_on_selector(".notice:has(a.call-link)", "(e) => parseFloat(getComputedStyle(e).fontSize)")
    assert size >= 15, size
    with bob_room.context.expect_page() as opened:
        bob_room.click(".notice a.call-link")
    bob_call = opened.value
    # The link says who calls; Bob answers with a click.
    bob_call.wait_for_selector(".call-answer:visible")
    assert bob_call.text_content(".call-status") == "ann is calling…"
    bob_call.click(".call-answer")
    for page in (ann_call, bob_call):
        page.wait_for_selector(".call-status[data-state=connected]")
        page.wait_for_selector(".call-text:enabled")
    ann_call.fill(".call-text", "Called from the room")
    ann_call.press(".call-text", "Enter")
    wait_for_value(bob_call, MESSAGES, ["ann: Called from the room"])
    wait_for_value(ann_call, "() => document.querySelector('.call-status').textContent", "In a call with bobby.")
    assert ann_room.locator(".notice a.call-link").count() == 0
    ann_call.click(".call-hangup")
    bob_call.wait_for_selector(".call-status[data-state=idle]")
    context.close()


#: Count the page's requests for a camera and microphone, in window.mediaAsked.
COUNT_MEDIA = """
window.mediaAsked = 0;
const realGetUserMedia = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
navigator.mediaDevices.getUserMedia = (constraints) => {
  window.mediaAsked += 1;
  return realGetUserMedia(constraints);
};
"""


@pytest.mark.browser
def test_a_call_page_opened_to_call_shows_whom_it_calls_and_calls_only_on_a_click(open_as, users, database, asgi):
    ann, bob = users["ann"], users["bob"]
    channel = pair_channel("call", ann["pk"], bob["pk"])
    # Bob waits on his own call page to ann, which rings for her call and answers it.
    bob_call = open_as(bob, asgi, f"/call/{ann['pk']}/?transport=ws")
    wait_for_state(bob_call, "live")
    before = newest(database, channel)

    # The link of the room's Call button, to bob's call page, which bob can send ann.
    ann_call = open_as(ann, asgi, f"/call/{bob['pk']}/?call=1&transport=ws", init_script=COUNT_MEDIA)
    wait_for_state(ann_call, "live")
    ann_call.wait_for_timeout(3000)  # a calling page says hello meanwhile, three times
    # Ann's page says whom it would call and waits for her click: no Peer, no camera, no signal.
    assert ann_call.evaluate("() => [demoCall.peer, window.mediaAsked]") == [None, 0]
    assert ann_call.text_content(".call-status") == "Call bob, or wait for their call."
    assert ann_call.evaluate("() => document.activeElement.className") == "call-start"  # a key or a click away
    assert stored(database, channel, after=before) == []
    assert bob_call.get_attribute(".call-status", "data-state") == "idle"  # nothing rings

    ann_call.click(".call-start")
    bob_call.wait_for_selector(".call-answer:visible")
    assert bob_call.text_content(".call-status") == "ann is calling…"
    bob_call.click(".call-answer")
    for page in (ann_call, bob_call):
        page.wait_for_selector(".call-status[data-state=connected]")
    assert ann_call.evaluate("() => window.mediaAsked") == 1
    ann_call.click(".call-hangup")
    bob_call.wait_for_selector(".call-status[data-state=idle]")


@pytest.mark.browser
def test_a_call_page_opened_to_answer_shows_who_calls_and_connects_only_on_a_click(open_as, users, database, asgi):
    ann, bob = users["ann"], users["bob"]
    channel = pair_channel("call", ann["pk"], bob["pk"])
    before = newest(database, channel)
    ann_call = open_as(ann, asgi, f"/call/{bob['pk']}/?call=1&transport=ws")
    ann_call.click(".call-start")
    ann_call.wait_for_function("() => demoCall.peer && demoCall.peer.id")
    caller = ann_call.evaluate("() => demoCall.peer.id")

    # The link of the room's "ann is calling you: answer" notice, which anyone can send bob.
    bob_call = open_as(bob, asgi, f"/call/{ann['pk']}/?answer=1&transport=ws", init_script=COUNT_MEDIA)
    wait_for_state(bob_call, "live")
    bob_call.wait_for_timeout(3000)  # ann says hello again meanwhile; an answering page would connect
    # Bob's page says who calls and waits for his click: no Peer, no camera, no signal of its own.
    assert bob_call.evaluate("() => [demoCall.peer, window.mediaAsked]") == [None, 0]
    assert bob_call.text_content(".call-status") == "ann is calling…"
    assert bob_call.is_visible(".call-answer") and bob_call.is_visible(".call-decline")
    assert ann_call.evaluate("() => demoCall.peer.state") == "waiting"
    senders = {json.loads(data)["from"] for _id, _event, data in stored(database, channel, after=before)}
    assert senders == {caller}

    bob_call.click(".call-answer")
    for page in (ann_call, bob_call):
        page.wait_for_selector(".call-status[data-state=connected]")
    assert bob_call.evaluate("() => window.mediaAsked") == 1
    ann_call.click(".call-hangup")
    bob_call.wait_for_selector(".call-status[data-state=idle]")


@pytest.mark.browser
def test_a_call_declined_on_a_page_opened_to_answer_before_the_callers_hello_ends_on_the_callers_page(
    open_as, users, asgi
):
    ann, bob = users["ann"], users["bob"]
    bob_call = open_as(bob, asgi, f"/call/{ann['pk']}/?answer=1&transport=ws")
    wait_for_state(bob_call, "live")
    bob_call.click(".call-decline")  # before any hello: the page does not know the caller's session yet
    ann_call = open_as(ann, asgi, f"/call/{bob['pk']}/?call=1&transport=ws")
    wait_for_state(ann_call, "live")
    ann_call.click(".call-start")
    wait_for_value(ann_call, "() => document.querySelector('.call-status').textContent", "bob hung up.")
    assert ann_call.get_attribute(".call-status", "data-state") == "idle"
    assert ann_call.evaluate("() => demoCall.peer") is None
    assert bob_call.text_content(".call-status") == "Declined ann's call."
    assert bob_call.evaluate("() => demoCall.peer") is None


# Who may be called from a room ----------------------------------------------

#: Each person of a room page's "Here now" list: [name, the href of their Call link or null].
CALL_LINKS = """() => Array.from(document.querySelectorAll('#people .person'), (e) => [
  e.querySelector('.name').textContent,
  e.querySelector('a.call-link') && e.querySelector('a.call-link').getAttribute('href'),
])"""
#: Record the channels of each SSE stream the page opens, in window.streams.
RECORD_STREAMS = """
window.streams = [];
const realFetch = window.fetch;
window.fetch = function (url, init) {
  const parsed = new URL(String(url), location.href);
  if (parsed.pathname === "/events/") window.streams.push(parsed.searchParams.getAll("channel"));
  return realFetch.call(this, url, init);
};
"""


def join_room(server: Server, room: str, name: str, info: dict[str, Any], user: dict[str, Any] | None = None) -> Any:
    """Open an SSE stream present in *room* as a page of the demo is, as *user* (else a guest); return it, open."""
    channel = f"chat:{room}"
    params = [("channel", channel), ("presence", channel), ("name", name), ("info", json.dumps(info))]
    stream = EventStream(
        f"{server.url}/events/", params=[*params, ("include", "channel")], headers=cookie(user) if user else {}
    )
    stream.open()
    return stream


@pytest.mark.browser
def test_a_guest_who_claims_a_users_pk_in_its_presence_info_gets_no_call_link_and_the_room_stays_live(
    open_as, users, wsgi
):
    ann, bob, eve = users["ann"], users["bob"], users["eve"]
    room = f"fake-{uuid.uuid4().hex[:8]}"
    with ExitStack() as stack:
        # Sixteen guests in the room, each claiming to be a user one may call: the first as bob,
        # with bob's pk; the others with the pks of users that need not exist.
        for n in range(16):
            info = {"page": f"fake{n}", "pk": bob["pk"] if n == 0 else 1000 + n}
            stack.callback(join_room(wsgi, room, "bob" if n == 0 else f"guest-{n:02}", info).close)
        # And eve, signed in, who can be called.
        stack.callback(join_room(wsgi, room, "eve", {"page": "eve"}, eve).close)
        page = open_as(ann, wsgi, f"/room/{room}/?transport=sse", init_script=RECORD_STREAMS)
        wait_for_state(page, "live")
        wait_for_value(page, f"() => ({CALL_LINKS})().length", 18)
        page.wait_for_timeout(1000)  # the pair channels the page subscribes to, if any

        # Only eve's entry can be called: the guests' pks were the server's to set (null).
        links = {name: href for name, href in page.evaluate(CALL_LINKS) if href}
        assert links == {"eve": f"/call/{eve['pk']}/?call=1&transport=sse"}
        # The page lives on: it follows the room and eve's pair channel, and a message arrives.
        wait_for_state(page, "live")
        assert page.evaluate("() => window.streams.at(-1)") == [
            pair_channel("call", ann["pk"], eve["pk"]),
            f"chat:{room}",
        ]
        publish_event(wsgi.env, f"chat:{room}", {"nick": "cron", "text": "still here"})
        page.wait_for_selector("#messages li.msg:has-text('still here')")


@pytest.mark.browser
def test_a_room_full_of_users_one_may_call_keeps_the_page_within_the_servers_channel_limit(open_as, users, crowd, wsgi):
    ann = users["ann"]
    room = f"full-{uuid.uuid4().hex[:8]}"
    with ExitStack() as stack:
        for user in crowd:  # as many signed-in users as MAX_CHANNELS, joined as their room pages join
            stack.callback(join_room(wsgi, room, "x", {"page": f"page{user['pk']}", "pk": user["pk"]}, user).close)
        page = open_as(ann, wsgi, f"/room/{room}/?transport=sse", init_script=RECORD_STREAMS)
        wait_for_state(page, "live")
        wait_for_value(page, f"() => ({CALL_LINKS})().filter(([, href]) => href).length", len(crowd))
        page.wait_for_timeout(1000)

        # Everyone can be called, but the page rings for a few of them only: its stream stays
        # well under MAX_CHANNELS (16), which would refuse it whole.
        streams = page.evaluate("() => window.streams")
        assert max(len(channels) for channels in streams) <= 9, streams
        assert len([c for c in streams[-1] if c.startswith("call:")]) == 8, streams[-1]
        wait_for_state(page, "live")
        publish_event(wsgi.env, f"chat:{room}", {"nick": "cron", "text": "still here"})
        page.wait_for_selector("#messages li.msg:has-text('still here')")


# A third user ------------------------------------------------------------


@pytest.fixture(scope="module")
def pair(env, users) -> dict[str, Any]:
    """Signals of ann and bob's pair channel already in the log, and their ids."""
    channel = pair_channel("call", users["ann"]["pk"], users["bob"]["pk"])
    ids = [
        publish_event(
            env,
            channel,
            {"from": "a1", "description": {"type": "offer", "sdp": "v=0 secret"}},
            event="webrtc.description",
        ),
        publish_event(
            env,
            channel,
            {"from": "a1", "candidate": {"candidate": "candidate:1 1 udp 1 10.0.0.1 9 typ host"}},
            event="webrtc.candidate",
        ),
    ]
    return {"channel": channel, "ids": ids}


def cookie(user: dict[str, Any]) -> dict[str, str]:
    return {"Cookie": f"sessionid={user['session']}"}


@pytest.mark.parametrize("who", ["eve", "anonymous"])
def test_a_third_user_cannot_read_the_pair_channel_over_sse_live_or_by_replay(wsgi, users, pair, who):
    headers = cookie(users["eve"]) if who == "eve" else {}
    url = f"{wsgi.url}/events/"
    channel = pair["channel"]
    with httpx.Client(timeout=10) as client:
        for extra in ({}, {"Last-Event-ID": "0"}):
            response = client.get(url, params={"channel": channel}, headers={**headers, **extra})
            assert response.status_code == 403, response.text
            assert f"not allowed to subscribe to {channel}" in response.text
        response = client.get(url, params={"channel": channel, "lastEventId": "0"}, headers=headers)
        assert response.status_code == 403
    # Beside a channel the user may read, with every id replayed from 0: an in-band
    # error for the pair channel, and not one of its events.
    params = [("channel", channel), ("channel", "chat:webrtc-third"), ("include", "channel"), ("lastEventId", "0")]
    with EventStream(url, params=params, headers=headers) as stream:
        marker = publish_event(wsgi.env, "chat:webrtc-third", {"text": "marker"})
        events = stream.until_id(marker, timeout=10)
    errors = [json.loads(e.data) for e in events if e.event == "error"]
    assert [(e["channel"], e["code"]) for e in errors] == [(channel, "forbidden")]
    assert not [e for e in events if e.event != "error" and (e.id in pair["ids"] or channel in e.data)]


def test_the_pair_replays_its_own_channel_over_sse_and_websockets(wsgi, asgi, users, pair):
    """The checks of the third user would pass if nothing were stored: the pair itself reads the ids back."""
    for name in ("ann", "bob"):
        params = [("channel", pair["channel"]), ("lastEventId", "0")]
        with EventStream(f"{wsgi.url}/events/", params=params, headers=cookie(users[name])) as stream:
            ids = [e.id for e in stream.until_id(pair["ids"][-1], timeout=10)]
        assert set(pair["ids"]) <= set(ids)
        with ws(asgi, users[name]) as socket:
            subscribe(socket, pair["channel"], last_id="0")
            ids = []
            while pair["ids"][-1] not in ids:
                message = receive(socket)
                if message["type"] == "event":  # after a reset, if the demo's RETENTION pruned the channel
                    ids.append(message["id"])
        assert set(pair["ids"]) <= set(ids)


def ws(server: Server, user: dict[str, Any] | None) -> Any:
    url = server.url.replace("http://", "ws://") + "/ws/"
    return connect(url, origin=server.url, additional_headers=cookie(user) if user else {}, open_timeout=10)


@pytest.mark.parametrize("who", ["eve", "anonymous"])
def test_a_third_user_cannot_read_or_publish_to_the_pair_channel_over_a_websocket(asgi, users, pair, database, who):
    channel = pair["channel"]
    before = newest(database, channel)
    with ws(asgi, users["eve"] if who == "eve" else None) as socket:
        for message in (
            {"type": "subscribe", "channel": channel, "ref": 1},
            {"type": "subscribe", "channel": channel, "last_id": "0", "ref": 2},
            {"type": "publish", "channel": channel, "event": "webrtc.description", "data": {"from": "x"}, "ref": 3},
        ):
            reply = request(socket, message)
            assert (reply["type"], reply["code"], reply["ref"]) == ("error", "forbidden", message["ref"])
        # Nothing of the pair channel follows: the next messages are of another channel.
        subscribe(socket, "chat:webrtc-third-ws")
        send(socket, {"type": "publish", "channel": "chat:webrtc-third-ws", "data": "marker", "ref": 4})
        messages = [receive(socket), receive(socket)]
        assert sorted(m["type"] for m in messages) == ["ack", "event"]
        assert all(m["channel"] == "chat:webrtc-third-ws" for m in messages)
    assert stored(database, channel, after=before) == []  # the forged offer was not stored


def test_a_third_user_cannot_publish_to_the_pair_channel_over_http(wsgi, users, pair, database):
    channel = pair["channel"]
    before = newest(database, channel)
    with httpx.Client(base_url=wsgi.url, timeout=10, cookies={"sessionid": users["eve"]["session"]}) as client:
        page = client.get(f"/call/{users['ann']['pk']}/")
        assert page.status_code == 200  # eve may call ann, on their own pair channel
        headers = {"X-CSRFToken": client.cookies["csrftoken"]}
        message = {"type": "publish", "channel": channel, "event": "webrtc.description", "data": {"from": "x"}}
        response = client.post("/events/publish/", json=message, headers=headers)
        assert (response.status_code, response.json()["code"]) == (403, "forbidden")
        own = {**message, "channel": pair_channel("call", users["eve"]["pk"], users["ann"]["pk"])}
        assert client.post("/events/publish/", json=own, headers=headers).status_code == 200
    assert stored(database, channel, after=before) == []
