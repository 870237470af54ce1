"""The deployment guide's nginx ``server`` block, as it stands, in front of gunicorn (gevent) and daphne.

The block is taken from docs/deployment.md and given free ports (nginx on a
port other than 80, as CSRF's origin check is strictest there) and a static
directory; nginx runs in the foreground with a prefix of the test's own.
Through it: a page of the site and the admin's login (the ``location /``,
and ``Host $http_host`` for CSRF), an SSE event from another process
unbuffered, a WebSocket, and a static file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from tests import services
from tests.servers import EventStream, free_port, manage, project_env, publish_event, running_server

pytestmark = pytest.mark.server

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "behind nginx"


def server_block() -> str:
    """Return the nginx block of docs/deployment.md's "nginx" section."""
    text = (ROOT / "docs" / "deployment.md").read_text()
    section = text[text.index("## nginx\n") :]
    return re.search(r"```nginx\n(.*?)```", section, re.S).group(1)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """nginx in front of gunicorn and daphne, as the guide puts them; yield its URL and the environment."""
    nginx = shutil.which("nginx") or (Path("/usr/sbin/nginx") if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        services.unavailable("nginx is not installed", remedy="apt-get install nginx-light")
    base = tmp_path_factory.mktemp("nginx")
    env = project_env(f"sqlite:///{base / 'db.sqlite3'}")
    env["REALTIME_JSON"] = json.dumps({"WEBSOCKETS": True})  # as the guide's settings say
    manage(env, "migrate", "--verbosity", "0")
    static = base / "staticfiles"
    shutil.copytree(ROOT / "django_realtime" / "static", static)
    port = free_port()
    with (
        running_server("gunicorn-gevent", env, base / "gunicorn.log") as gunicorn,
        running_server("daphne", env, base / "daphne.log") as daphne,
    ):
        block = (
            server_block()
            .replace("127.0.0.1:8000", gunicorn.url.removeprefix("http://"))
            .replace("127.0.0.1:8001", daphne.url.removeprefix("http://"))
            .replace("listen 80;", f"listen 127.0.0.1:{port};")
            .replace("/srv/mysite/staticfiles/", f"{static}/")
        )
        (base / "logs").mkdir()
        config = base / "nginx.conf"
        config.write_text(
            # As root, nginx's workers would run as nobody, who may not read the test's temporary directory.
            f"daemon off;\n{'user root;' if os.geteuid() == 0 else ''}\nworker_processes 1;\n"
            f"pid {base}/nginx.pid;\nerror_log {base}/logs/error.log;\n"
            "events {}\n"
            f"http {{\n  access_log {base}/logs/access.log;\n  client_body_temp_path {base}/body;\n"
            f"  proxy_temp_path {base}/proxy;\n{block}\n}}\n"
        )
        with (base / "logs" / "stderr.log").open("wb") as stderr:
            process = subprocess.Popen(
                [str(nginx), "-p", str(base), "-c", str(config)],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 10
            while True:
                assert process.poll() is None, (base / "logs" / "stderr.log").read_text()
                try:
                    httpx.get(f"{url}/static/django_realtime/realtime.js", timeout=1)
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "nginx did not answer"
                    time.sleep(0.05)
            yield url, env
        finally:
            process.terminate()
            process.wait(10)


def test_the_sites_pages_and_the_admins_login_pass_through_on_a_port_other_than_80(site):
    url, env = site
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
    url, env = site
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
    url, _env = site
    response = httpx.get(f"{url}/static/django_realtime/realtime.js", timeout=5)
    assert response.status_code == 200
    assert response.content == (ROOT / "django_realtime" / "static" / "django_realtime" / "realtime.js").read_bytes()
