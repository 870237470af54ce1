"""The postgres backend behind a real PgBouncer in transaction mode: check W004, and the listener's own dsn.

PgBouncer (tests/support/pgbouncer.py, a process of the test's own) pools
connections per transaction: a LISTEN made through it hears nothing once
its transaction ends.  The demo runs under gunicorn (gevent) on a database
reached through PgBouncer, with the settings Django's docs give for it
(tests/pgbouncer_settings.py), the ``postgres`` backend, and KEEPALIVE 30:
the hub's own reads of the log, its fallback, come every 15 s, so an event
that arrives within seconds was heard through LISTEN.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.support.pgbouncer import PgBouncer
from tests.support.postgres_database import SERVER, scratch_database
from tests.support.servers import MANAGE, ROOT, EventStream, manage, project_env, publish_event, running_server

pytestmark = pytest.mark.server

CHANNEL = "demo:pooled"
#: Seconds within which LISTEN delivers an event (the hub's fallback read comes after 15 s).
PROMPT = 5.0


@pytest.fixture(scope="module")
def pooled():
    with scratch_database("pgbouncer") as (name, _admin), PgBouncer() as bouncer:
        env = {
            **project_env(bouncer.url(name)),
            "DJANGO_SETTINGS_MODULE": "tests.pgbouncer_settings",
            "REALTIME_BACKEND": "postgres",
            "REALTIME_KEEPALIVE": "30",
        }
        manage(env, "migrate", "--verbosity", "0")
        yield env, f"{SERVER}/{name}", bouncer


def with_dsn(env: dict[str, str], dsn: str) -> dict[str, str]:
    return {**env, "REALTIME_JSON": json.dumps({"OPTIONS": {"dsn": dsn}})}


def check_deploy(env: dict[str, str]) -> str:
    """Return what ``manage.py check --deploy`` says (its warnings go to standard error)."""
    result = subprocess.run(
        [*MANAGE, "check", "--deploy"], cwd=ROOT, env=env, capture_output=True, encoding="utf-8", timeout=60
    )
    return result.stdout + result.stderr


def test_check_deploy_warns_of_a_listener_behind_pgbouncer_without_its_own_dsn(pooled):
    env, direct, _ = pooled

    warned, with_its_own = check_deploy(env), check_deploy(with_dsn(env, direct))
    assert "django_realtime.W004" in warned
    assert "System check identified" in with_its_own and "django_realtime.W004" not in with_its_own, with_its_own


def test_with_the_listeners_dsn_an_event_published_through_pgbouncer_arrives_promptly(pooled, tmp_path):
    env, direct, bouncer = pooled
    env = with_dsn(env, direct)

    with running_server("gunicorn-gevent", env, tmp_path / "server.log") as server:
        with EventStream(server.events_url(), params=[("channel", CHANNEL)]) as stream:
            event_id = publish_event(env, CHANNEL, {"n": 1})  # another process, through PgBouncer
            event = stream.next(timeout=PROMPT)
    assert (event.id, json.loads(event.data)) == (event_id, {"n": 1}), server.log() + bouncer.log()


def test_without_it_the_listener_behind_pgbouncer_hears_nothing(pooled, tmp_path):
    env, _, bouncer = pooled

    with running_server("gunicorn-gevent", env, tmp_path / "server.log") as server:
        with EventStream(server.events_url(), params=[("channel", CHANNEL)]) as stream:
            publish_event(env, CHANNEL, {"n": 2})
            # What W004 warns of: only the hub's read every KEEPALIVE / 2 seconds brings it.
            assert stream.during(PROMPT) == [], server.log() + bouncer.log()
