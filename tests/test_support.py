"""The test harness's own guards: the delivery check, the environment, process groups, a server's restart.

The end-to-end tests trust tests/support/ to say when an event went missing
and to leave no process behind; these tests make sure it does.
"""

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.processes import stop_group, workers_of
from tests.support.scale_out import Outcome
from tests.support.servers import Server, project_env
from tests.support.subscribers import delivery_problems, has_all

CHANNELS = ("a", "b")


def outcome() -> Outcome:
    """Publisher p1 committed 1, 2 (a) and 4 (b), in that order; 3 (a) rolled back."""
    committed = {1: ("a", {"publisher": "p1", "n": 1}), 2: ("a", {"publisher": "p1", "n": 2})}
    committed[4] = ("b", {"publisher": "p1", "n": 4})
    return Outcome(committed, {3: ("a", {"publisher": "p1", "n": 3})}, {1: 1.0, 2: 2.0, 3: 3.0, 4: 4.0})


def received(*ids: int) -> list[tuple]:
    """Return events *ids* as a subscriber records them, each with the data it was published with."""
    published = {**outcome().committed, **outcome().rolled_back}
    return [(i, None, "scale", published.get(i, ("", {}))[1], 10.0 + i) for i in ids]


def check(ids: tuple[int, ...], cursors: list[str] | None = None, **options) -> list[str]:
    got = received(*ids)
    return delivery_problems("s", "sse", CHANNELS, got, cursors or [str(i) for i in ids], outcome(), **options)


def test_delivery_problems_are_none_when_every_committed_event_came_once_in_order():
    assert check((1, 2, 4)) == []
    assert has_all(received(1, 2, 4), CHANNELS, {"a": [1, 2], "b": [4]})


def test_delivery_problems_name_a_missing_event():
    (problem,) = check((1, 4))
    assert "a: 1 of 2 events missing: 2" in problem
    assert not has_all(received(1, 4), CHANNELS, {"a": [1, 2], "b": [4]})


def test_delivery_problems_name_an_event_received_twice():
    assert "s: a: events received more than once: [2]" in check((1, 2, 2, 4))


def test_delivery_problems_name_a_rolled_back_event_and_one_nobody_published():
    problems = check((1, 2, 3, 4, 9))
    assert "s: got rolled-back event 3 of a" in problems
    assert any("got event 9" in problem and "which no publisher committed" in problem for problem in problems)


def test_delivery_problems_name_an_event_of_a_channel_not_subscribed():
    got = received(1, 2, 4)
    problems = delivery_problems("s", "sse", ("a",), got, ["1", "2", "4"], outcome())
    assert problems == ["s: got event 4 of b, a channel it did not subscribe to"]


def test_delivery_problems_name_events_out_of_commit_order():
    assert check((2, 1, 4), cursors=["2", "2", "4"]) == ["s: a: p1's events out of commit order: [(2, 1)]"]


def test_delivery_problems_name_a_cursor_that_leaves_out_an_event_received():
    # 4 came with a cursor that says 2 is still to come: a resume from it would replay 2.
    problems = check((1, 2, 4), cursors=["1", "2", "4~2"])
    assert problems == ["s: the cursor 4~2 of event 4 leaves out [2]"]


def test_delivery_problems_expect_only_the_events_after_the_starting_cursor():
    assert check((2, 4), after=1) == []
    assert check((4,), after=1) != []


def test_project_env_sets_and_unsets_what_it_is_told():
    env = project_env("sqlite:///x", DJANGO_SETTINGS_MODULE="tests.ws_settings", REALTIME_KEEPALIVE=None)
    assert env["DJANGO_SETTINGS_MODULE"] == "tests.ws_settings"
    assert env["DATABASE_URL"] == "sqlite:///x"
    assert "REALTIME_KEEPALIVE" not in env
    assert project_env("sqlite:///x")["REALTIME_KEEPALIVE"] == "1"


def alive(pid: int) -> bool:
    """Return whether *pid* runs (a zombie, exited but not reaped, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.timeout(60)
def test_stop_group_ends_a_leader_that_ignores_sigterm_and_the_child_it_leaves():
    script = (
        "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); print('ready', flush=True); "
        "time.sleep(60)"
    )
    leader = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, start_new_session=True)
    assert leader.stdout.readline() == b"ready\n"
    (child,) = workers_of(leader.pid)
    stop_group(leader, signal.SIGTERM, grace=0.5)
    leader.stdout.close()
    assert leader.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 10
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child), "the child outlived its group's stop"


@pytest.mark.server
def test_a_server_started_again_after_a_kill_comes_back_on_its_port_its_log_kept(tmp_path):
    server = Server("gunicorn-gevent", project_env(f"sqlite:///{tmp_path / 'db.sqlite3'}"), tmp_path / "server.log")
    server.start()
    try:
        port, first = server.port, server.process.pid
        server.kill()
        with pytest.raises(httpx.TransportError):
            httpx.get(server.events_url(), timeout=2)
        server.start()
        assert (server.port, server.url) == (port, f"http://127.0.0.1:{port}")
        assert server.process.pid != first
        assert httpx.get(server.events_url(), timeout=5).status_code == 400  # no channel: answered, not a stream
        assert server.log().count("Booting worker") == 2, server.log()
    finally:
        server.stop()
    assert server.process.poll() is not None
