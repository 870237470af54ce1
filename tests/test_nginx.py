"""The deployment guide's nginx blocks, as they stand, in front of gunicorn (gevent, 2 workers) and daphne.

The blocks are taken from docs/deployment.md and given free ports (nginx on
ports other than 80 and 443, as CSRF's origin check is strictest there), a
static directory and a self-signed certificate the test makes; one nginx
serves them all, in the foreground with a prefix of the test's own: the
HTTP block, the same block with the guide's HTTPS and HTTP/2 lines, and two
variants that check the guide's claims (``proxy_buffering on`` with HTTP/1.0
to the upstream, where the response's ``X-Accel-Buffering: no`` must still
keep the stream unbuffered; short ``proxy_read_timeout`` values against a
1 s ``KEEPALIVE``).
Through it: pages, the admin's login, SSE and WebSocket events from another
process, static files (httpx and websockets), and in Chromium: both HTTP
versions, an SSE event within 50 ms of the direct path, a WebSocket, 12
tabs of one origin over HTTP/2 and the 7th tab's wait over HTTP/1.1.
The hubs are woken through Redis, so that both gunicorn workers read an
event at once (polling would let them differ by up to POLL_INTERVAL).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from tests.support import services
from tests.support.browser import launched_chromium
from tests.support.servers import (
    EventStream,
    Publisher,
    free_port,
    manage,
    project_env,
    publish_event,
    running_server,
)

pytestmark = pytest.mark.server

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "behind nginx"
#: Milliseconds by which an event through nginx may trail the same event on the direct path.
UNBUFFERED_MS = 50
#: The variant's proxy_read_timeout, above the servers' KEEPALIVE (1 s, project_env's), and one below it.
LONG_ENOUGH, TOO_SHORT = "2s", "300ms"


def nginx_blocks() -> tuple[str, str]:
    """Return the two nginx blocks of docs/deployment.md's "nginx" section: the site's, and its HTTPS lines."""
    text = (ROOT / "docs" / "deployment.md").read_text()
    section = text[text.index("## nginx\n") :]
    section = section[: section.index("\n## ", 1)]
    site, tls = re.findall(r"```nginx\n(.*?)```", section, re.S)
    return site, tls


@dataclass
class Site:
    """The URLs nginx serves, the direct gunicorn's, and the environment of the project's commands."""

    http: str  # the guide's block
    https: str  # the guide's block with its HTTPS and HTTP/2 lines
    buffered: str  # the guide's block with proxy_buffering on
    long_enough: str  # the guide's block with proxy_read_timeout LONG_ENOUGH
    too_short: str  # the guide's block with proxy_read_timeout TOO_SHORT
    direct: str  # gunicorn, no nginx
    env: dict[str, str]
    access_log: Path


def start_nginx(nginx: str, base: Path, config: Path) -> subprocess.Popen[bytes]:
    with (base / "logs" / "stderr.log").open("wb") as stderr:
        return subprocess.Popen(
            [nginx, "-p", str(base), "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    """nginx in front of gunicorn and daphne, as the guide puts them, over HTTP/1.1 and HTTP/2 with TLS."""
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        services.unavailable("nginx is not installed", remedy="apt-get install nginx-light")
    if shutil.which("openssl") is None:
        services.unavailable("openssl is not installed", remedy="apt-get install openssl")
    services.require(services.REDIS, "Redis")
    base = tmp_path_factory.mktemp("nginx")
    env = {**project_env(f"sqlite:///{base / 'db.sqlite3'}"), "REALTIME_BACKEND": "redis"}
    env["REALTIME_JSON"] = json.dumps({"WEBSOCKETS": True})  # as the guide's settings say
    manage(env, "migrate", "--verbosity", "0")
    static = base / "staticfiles"
    shutil.copytree(ROOT / "django_realtime" / "static", static)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        + ["-days", "1", "-subj", "/CN=localhost", "-keyout", str(base / "key.pem"), "-out", str(base / "cert.pem")],
        check=True,
        capture_output=True,
    )
    ports = {name: free_port() for name in ("http", "https", "buffered", "long_enough", "too_short")}
    with (
        running_server("gunicorn-gevent", env, base / "gunicorn.log", ("-w", "2")) as gunicorn,
        running_server("daphne", env, base / "daphne.log") as daphne,
    ):
        block, tls = nginx_blocks()
        block = (
            block.replace("127.0.0.1:8000", gunicorn.url.removeprefix("http://"))
            .replace("127.0.0.1:8001", daphne.url.removeprefix("http://"))
            .replace("/srv/mysite/staticfiles/", f"{static}/")
        )
        upstreams, server = block[: block.index("server {")], block[block.index("server {") :]
        assert server.count("listen 80;") == 1 and "listen 443 ssl http2;" in tls

        def on(port: str, server: str = server) -> str:
            return server.replace("listen 80;", f"listen 127.0.0.1:{ports[port]};")

        tls = (
            tls.replace("listen 443 ssl http2;", f"listen 127.0.0.1:{ports['https']} ssl http2;")
            .replace("/etc/ssl/certs/www.example.com.pem", str(base / "cert.pem"))
            .replace("/etc/ssl/private/www.example.com.key", str(base / "key.pem"))
        )
        # /events/'s timeout (/ws/'s, with its own comment, stays).
        events_timeout = re.search(r"proxy_read_timeout 1h; +# must be longer than KEEPALIVE[^\n]*", server).group()
        assert server.count("proxy_buffering off;") == 1 and server.count(events_timeout) == 1
        assert server.count("proxy_http_version 1.1;                     # chunked") == 1
        servers = [
            on("http"),
            server.replace("    listen 80;\n", tls),
            # Buffering on, and nginx's default HTTP/1.0 to the upstream: with 1.1's chunks nginx 1.22
            # passed each chunk on at once even so, and the header would be put to no test.
            on(
                "buffered",
                server.replace("proxy_buffering off;", "proxy_buffering on;").replace(
                    "proxy_http_version 1.1;                     # chunked", "proxy_http_version 1.0;  # chunked", 1
                ),
            ),
            on("long_enough", server.replace(events_timeout, f"proxy_read_timeout {LONG_ENOUGH};")),
            on("too_short", server.replace(events_timeout, f"proxy_read_timeout {TOO_SHORT};")),
        ]
        (base / "logs").mkdir()
        config = base / "nginx.conf"
        access_log = base / "logs" / "access.log"
        config.write_text(
            # As root, nginx's workers would run as nobody, who may not read the test's temporary directory.
            f"daemon off;\n{'user root;' if os.geteuid() == 0 else ''}\nworker_processes 1;\n"
            f"pid {base}/nginx.pid;\nerror_log {base}/logs/error.log;\n"
            "events {}\n"
            "http {\n  log_format protocols '$server_port $server_protocol \"$request\" $status';\n"
            f"  access_log {access_log} protocols;\n  client_body_temp_path {base}/body;\n"
            f"  proxy_temp_path {base}/proxy;\n{upstreams}\n" + "\n".join(servers) + "\n}\n"
        )
        process = start_nginx(nginx, base, config)
        urls = {port: f"http://127.0.0.1:{number}" for port, number in ports.items()}
        urls["https"] = f"https://127.0.0.1:{ports['https']}"
        try:
            deadline = time.monotonic() + 10
            while True:
                assert process.poll() is None, (base / "logs" / "stderr.log").read_text()
                try:
                    httpx.get(f"{urls['https']}/static/django_realtime/realtime.js", timeout=1, verify=False)
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "nginx did not answer"
                    time.sleep(0.05)
            yield Site(**urls, direct=gunicorn.url, env=env, access_log=access_log)
        finally:
            process.terminate()
            process.wait(10)


def test_the_sites_pages_and_the_admins_login_pass_through_on_a_port_other_than_80(site):
    url, env = site.http, site.env
    manage(
        env,
        "shell",
        "-c",
        f"from django.contrib.auth.models import User; User.objects.create_superuser('ops', password={PASSWORD!r})",
    )
    with httpx.Client(base_url=url, timeout=10) as client:
        page = client.get("/room/lobby/")
        assert page.status_code == 200
        # Pages come from gunicorn, /ws/ from daphne: the WEBSOCKETS setting tells the pages so.
        assert 'data-transports="websocket sse"' in page.text
        login = client.get("/admin/login/?next=/admin/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
        response = client.post(
            "/admin/login/?next=/admin/",
            data={"csrfmiddlewaretoken": token, "username": "ops", "password": PASSWORD, "next": "/admin/"},
            headers={"Origin": url, "Referer": f"{url}/admin/login/"},  # as a browser sends them
        )
        assert response.status_code == 302 and response.headers["Location"] == "/admin/", response.text[:500]
        assert client.get("/admin/").status_code == 200


def test_an_event_from_another_process_comes_through_unbuffered_over_sse_and_a_websocket(site):
    url, env = site.http, site.env
    with (
        EventStream(f"{url}/events/", params=[("channel", "chat:nginx")]) as stream,
        connect(f"{url.replace('http', 'ws')}/ws/", origin=url, open_timeout=10) as socket,
    ):
        socket.send(json.dumps({"type": "subscribe", "channel": "chat:nginx"}))
        assert json.loads(socket.recv(timeout=10))["type"] == "subscribed"
        published = time.monotonic()
        publish_event(env, "chat:nginx", {"text": "through nginx"})
        event = stream.next(timeout=5)
        assert json.loads(event.data) == {"text": "through nginx"}
        assert time.monotonic() - published < 5  # not held in a buffer until the stream ends
        message = json.loads(socket.recv(timeout=5))
        assert message["type"] == "event" and message["data"] == {"text": "through nginx"}


def test_static_files_come_from_static_root(site):
    url = site.http
    response = httpx.get(f"{url}/static/django_realtime/realtime.js", timeout=5)
    assert response.status_code == 200
    assert response.content == (ROOT / "django_realtime" / "static" / "django_realtime" / "realtime.js").read_bytes()


# Claims of the guide: X-Accel-Buffering and proxy_read_timeout --------------


def test_the_responses_x_accel_buffering_keeps_a_stream_unbuffered_with_proxy_buffering_on(site):
    channel = "chat:buffering"
    with (
        EventStream(f"{site.http}/events/", params=[("channel", channel)]) as guide,
        EventStream(f"{site.buffered}/events/", params=[("channel", channel)]) as buffered,
    ):
        publish_event(site.env, channel, {"text": "not held back"})
        event, guide_at = guide.next_timed(timeout=5)
        buffered_event, buffered_at = buffered.next_timed(timeout=5)
        assert json.loads(buffered_event.data) == json.loads(event.data) == {"text": "not held back"}
        # Buffered, it would wait for seconds at least: nginx's 4 KiB buffer fills with 15-byte keepalives.
        assert buffered_at - guide_at < 1.0, buffered_at - guide_at


def test_an_event_stream_view_is_unbuffered_through_the_guides_location_for_pages(site):
    # location / has nginx's defaults (buffering on, HTTP/1.0 upstream): only the header keeps it live.
    with EventStream(f"{site.http}/clock/stream/") as clock:
        ticks = clock.take(2, timeout=3)  # one a second; buffered, ~70 bytes each would wait for 4 KiB
    assert [tick.event for tick in ticks] == ["tick", "tick"]


def test_a_stream_outlives_a_proxy_read_timeout_longer_than_keepalive_and_not_a_shorter_one(site):
    channel = "chat:timeouts"
    with (
        EventStream(f"{site.long_enough}/events/", params=[("channel", channel)]) as kept,
        EventStream(f"{site.too_short}/events/", params=[("channel", channel)]) as cut,
    ):
        # Five seconds of silence but for the keepalives (every 0.5 to 1 s with KEEPALIVE 1).
        assert kept.during(5) == []
        assert len(kept.comments) >= 4, kept.comments
        assert cut.ended(0), f"nginx kept a stream silent for longer than {TOO_SHORT}"
        publish_event(site.env, channel, {"text": "still here"})
        assert json.loads(kept.next(timeout=5).data) == {"text": "still here"}


# Chromium through nginx --------------------------------------------------

#: Open an EventSource on the page's origin; note each event's number and the moment it arrived.
LISTEN = """(channel) => {
    window.arrivals = [];
    window.source = new EventSource(`/events/?channel=${encodeURIComponent(channel)}`);
    source.addEventListener("message", (e) => arrivals.push([JSON.parse(e.data).n, Date.now()]));
}"""
#: The protocol the page itself came over: "http/1.1" or "h2".
PROTOCOL = "() => performance.getEntriesByType('navigation')[0].nextHopProtocol"
#: Open a WebSocket to /ws/ and subscribe; keep what it receives.
SUBSCRIBE = """async ([url, channel]) => {
    window.received = [];
    const socket = new WebSocket(url);
    socket.onmessage = (e) => received.push(JSON.parse(e.data));
    await new Promise((resolve, reject) => { socket.onopen = resolve; socket.onerror = reject; });
    socket.send(JSON.stringify({type: "subscribe", channel}));
}"""


@pytest.fixture(scope="module")
def browser(site) -> Iterator[Any]:
    yield from launched_chromium()


@pytest.fixture
def context(browser) -> Iterator[Any]:
    """A browser context that takes the test's self-signed certificate, as one profile with several tabs."""
    context = browser.new_context(ignore_https_errors=True)
    context.set_default_timeout(10_000)
    yield context
    context.close()


def listening_page(context: Any, origin: str, channel: str) -> Any:
    """Open a page of *origin* (a small JSON document of the site) and an EventSource on *channel*."""
    page = context.new_page()
    page.goto(f"{origin}/events/health/")
    page.evaluate(LISTEN, channel)
    return page


def wait_open(pages: list[Any], timeout: float = 10.0) -> None:
    for page in pages:
        page.wait_for_function("() => source.readyState === EventSource.OPEN", timeout=timeout * 1000)


def access_log_lines(site: Site, pattern: str, count: int, timeout: float = 5.0) -> list[str]:
    """Wait for *count* lines of nginx's access log (written as each request ends) that match *pattern*."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [line for line in site.access_log.read_text().splitlines() if re.search(pattern, line)]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


@pytest.mark.browser
def test_in_chromium_sse_through_nginx_trails_the_direct_path_by_under_50_ms_over_http1_and_http2(site, context):
    channel = "chat:paths"
    origins = {"direct": site.direct, "http/1.1": site.http, "h2": site.https}
    pages = {name: listening_page(context, origin, channel) for name, origin in origins.items()}
    assert pages["http/1.1"].evaluate(PROTOCOL) == "http/1.1"
    assert pages["h2"].evaluate(PROTOCOL) == "h2"
    wait_open(list(pages.values()))
    count = 5
    with Publisher(site.env, channel) as publisher:
        for n in range(count):
            publisher.send({"n": n})
            time.sleep(0.1)
    for page in pages.values():
        page.wait_for_function(f"() => arrivals.length === {count}")
    arrivals = {name: dict(page.evaluate("() => arrivals")) for name, page in pages.items()}
    for name in ("http/1.1", "h2"):
        lags = [arrivals[name][n] - arrivals["direct"][n] for n in range(count)]
        print(f"{name}: ms behind the direct path: {lags}")
        assert statistics.median(lags) < UNBUFFERED_MS, f"{name}: ms behind the direct path: {lags}"


@pytest.mark.browser
def test_in_chromium_a_websocket_upgrades_through_nginx_from_pages_over_http1_and_http2(site, context):
    channel = "chat:ws-browser"
    pages = []
    for origin in (site.http, site.https):
        page = context.new_page()
        page.goto(f"{origin}/events/health/")
        page.evaluate(SUBSCRIBE, [f"{origin.replace('http', 'ws', 1)}/ws/", channel])
        page.wait_for_function("() => received.some((m) => m.type === 'subscribed')")
        pages.append(page)
    assert pages[1].evaluate(PROTOCOL) == "h2"
    publish_event(site.env, channel, {"text": "to the sockets"})
    for page in pages:
        page.wait_for_function("() => received.some((m) => m.type === 'event')")
        event = next(m for m in page.evaluate("() => received") if m["type"] == "event")
        assert event["data"] == {"text": "to the sockets"}
        page.close()
    # nginx 1.22 takes no WebSocket over HTTP/2: Chromium upgraded an HTTP/1.1 connection of the HTTPS port.
    https_port = site.https.rsplit(":", 1)[1]
    assert access_log_lines(site, rf'^{https_port} HTTP/1\.1 "GET /ws/ HTTP/1\.1" 101$', 1)


@pytest.mark.browser
def test_in_chromium_12_tabs_of_one_origin_over_http2_all_receive_an_event(site, context):
    channel = "chat:twelve"
    pages = [listening_page(context, site.https, channel) for _ in range(12)]
    assert {page.evaluate(PROTOCOL) for page in pages} == {"h2"}
    wait_open(pages)
    publish_event(site.env, channel, {"n": 1})
    for page in pages:
        page.wait_for_function("() => arrivals.length === 1")
    for page in pages:
        page.close()
    https_port = site.https.rsplit(":", 1)[1]
    streams = access_log_lines(
        site, rf'^{https_port} HTTP/2\.0 "GET /events/\?channel=chat%3Atwelve HTTP/2\.0" 200$', 12
    )
    assert len(streams) == 12, streams


@pytest.mark.browser
def test_in_chromium_the_7th_tab_of_one_origin_over_http1_waits_for_a_connection(site, context):
    channel = "chat:seventh"
    # Each page loaded first: once six streams hold the six connections, a 7th page would not even load.
    pages = [context.new_page() for _ in range(7)]
    for page in pages:
        page.goto(f"{site.http}/events/health/")
    for page in pages:
        page.evaluate(LISTEN, channel)
    wait_open(pages[:6])
    publish_event(site.env, channel, {"n": 1})
    for page in pages[:6]:
        page.wait_for_function("() => arrivals.length === 1")
    # Six connections to the host, each held by a stream: the 7th stream has not even been sent.
    assert pages[6].evaluate("() => [source.readyState, arrivals.length]") == [0, 0]
    pages[0].close()
    wait_open(pages[6:])
    publish_event(site.env, channel, {"n": 2})
    pages[6].wait_for_function("() => arrivals.length === 1")
    assert pages[6].evaluate("() => arrivals[0][0]") == 2
