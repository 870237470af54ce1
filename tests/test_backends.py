"""One contract, every backend: each subclass re-runs these tests against its real service."""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.db import connections, transaction

from django_realtime import publish
from django_realtime.backends.postgres import LISTENER_NAME
from django_realtime.hub import get_hub
from django_realtime.streams import follow
from tests.support import services
from tests.support.redis_server import RedisServer
from tests.support.tcp_proxy import TCPProxy

ROOT = Path(__file__).resolve().parent.parent


def wait_until(predicate, timeout=5.0, message="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"{message} not met within {timeout}s")


#: Seconds within which an event must arrive: far less than the hub's tick, so that a
#: backend that does not wake the hub fails instead of being rescued by the tick.
WITHIN = 3.0


def listener_threads():
    """Return the backend listener threads alive in this process."""
    return [thread for thread in threading.enumerate() if thread.name == "django-realtime-listen"]


def take(batches, count, within=WITHIN):
    """Take *count* events from a follow() iterator (with a short keepalive) within *within* seconds."""
    deadline = time.monotonic() + within
    items = []
    while len(items) < count:
        assert time.monotonic() < deadline, f"{len(items)} of {count} events arrived within {within}s"
        items.extend(next(batches))
    return items


class BackendContract:
    backend = "inprocess"
    options: dict = {}
    alias = "default"
    #: Whether another process's publish reaches this process.
    crosses_processes = True
    #: Whether the backend holds a listening connection (a LISTEN, a Redis subscription).
    listens = False
    services: tuple = ()

    @pytest.fixture(autouse=True)
    def _configure(self, settings, django_db_blocker):
        for address, name in self.services:
            services.require(address, name)
        if self.alias == "mysql":
            services.require_mariadb()
        settings.REALTIME = {
            "BACKEND": self.backend,
            "OPTIONS": self.options,
            "DATABASE": self.alias,
            "PRUNE_INTERVAL": None,
            "POLL_INTERVAL": 0.2,
            # The hub's tick (KEEPALIVE/2) would read the log anyway: keep it out of reach.
            "KEEPALIVE": 120,
        }
        yield
        get_hub().stop()
        for connection in connections.all(initialized_only=True):
            connection.close()

    def ready_hub(self):
        hub = get_hub()
        assert hub.ensure_ready(), hub.error
        return hub

    def publish(self, *args, **kwargs):
        return publish(*args, **kwargs)

    def in_thread(self, function):
        """Run *function* on a thread with its own connection; return a join() that re-raises."""
        errors = []

        def run():
            try:
                function()
            except BaseException as exc:  # re-raised by join()
                errors.append(exc)
            finally:
                connections[self.alias].close()

        thread = threading.Thread(target=run)
        thread.start()

        def join():
            thread.join(30)
            assert not thread.is_alive()
            if errors:
                raise errors[0]

        return join

    def env(self):
        settings_dict = connections[self.alias].settings_dict
        if settings_dict["ENGINE"].endswith("sqlite3"):
            url = f"sqlite:///{settings_dict['NAME']}"
        elif settings_dict["ENGINE"].endswith("mysql"):
            url = f"mysql://{settings_dict['USER']}@{settings_dict['HOST']}:{settings_dict['PORT']}/{settings_dict['NAME']}"
        else:
            url = f"postgres://{settings_dict['USER']}@{settings_dict['HOST']}:{settings_dict['PORT']}/{settings_dict['NAME']}"
        return {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "testproject.settings",
            "DATABASE_URL": url,
            "REALTIME_BACKEND": self.backend,
            "REDIS_URL": services.REDIS_URL,
        }

    def publish_elsewhere(self, channel, data):
        """Publish from another process, with manage.py publish_event; return the id."""
        result = subprocess.run(
            [sys.executable, "manage.py", "publish_event", channel, data],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return int(result.stdout)

    # The contract ---------------------------------------------------------

    def check_black_hole(self, proxy):
        """Black-hole the listener's connection (through *proxy*): wake-ups must go on, by polling, then listening."""
        hub = self.ready_hub()
        backend = hub.backend
        wait_until(lambda: backend.listening, message="listening")
        batches = follow(hub, frozenset({"c"}), hub.horizon, keepalive=0.2)
        proxy.blackhole()
        wait_until(lambda: not backend.listening, timeout=3, message="the silent listener dropped")
        event_id = self.publish_elsewhere("c", '"while black-holed"')
        assert [item.id for item in take(batches, 1)] == [event_id]
        proxy.forward()
        wait_until(lambda: backend.listening, timeout=20, message="listening again")
        event_id = self.publish_elsewhere("c", '"after"')
        assert [item.id for item in take(batches, 1)] == [event_id]

    def test_a_local_publish_reaches_the_hub_at_once(self):
        hub = self.ready_hub()
        batches = follow(hub, frozenset({"c"}), hub.horizon, keepalive=0.2)
        event = self.publish("c", 1)
        assert [item.id for item in take(batches, 1)] == [event.id]

    def test_a_publish_in_another_process_reaches_the_hub(self):
        hub = self.ready_hub()
        batches = follow(hub, frozenset({"c"}), hub.horizon, keepalive=0.2)
        assert next(batches) == []  # the stream follows "c" now (and has read what came before)
        event_id = self.publish_elsewhere("c", '{"from": "elsewhere"}')
        if not self.crosses_processes:
            # By design: nothing wakes this hub until something in this process does.
            assert next(batches) == [], "a one-process backend heard another process"
            self.publish("c", "local")
        (item, *_) = take(batches, 1)
        assert (item.id, item.data_json) == (event_id, '{"from":"elsewhere"}')

    def test_a_rolled_back_publish_is_never_delivered(self):
        hub = self.ready_hub()
        batches = follow(hub, frozenset({"c"}), hub.horizon, keepalive=0.2)

        def roll_back():
            with pytest.raises(RuntimeError), transaction.atomic(using=self.alias):
                self.publish("c", "rolled back")
                raise RuntimeError

        self.in_thread(roll_back)()
        kept = self.publish("c", "kept")
        assert [item.data_json for item in take(batches, 1)] == ['"kept"']
        assert hub.horizon >= kept.id

    def test_a_later_commit_is_delivered_at_once_and_an_earlier_id_once_it_commits(self):
        """The commit-order trap: id N+1 commits while id N's transaction is still open."""
        hub = self.ready_hub()
        batches = follow(hub, frozenset({"c"}), hub.cursor, keepalive=0.1)
        first_published, release, ids = threading.Event(), threading.Event(), {}
        serial = connections[self.alias].vendor == "sqlite"

        def slow():
            with transaction.atomic(using=self.alias):
                ids["slow"] = self.publish("c", "slow").id
                first_published.set()
                assert release.wait(10)

        def fast():
            ids["fast"] = self.publish("c", "fast").id

        join_slow = self.in_thread(slow)
        assert first_published.wait(10)
        join_fast = self.in_thread(fast)  # on SQLite this blocks until slow commits
        if serial:
            time.sleep(0.5)
            assert [item for item in next(batches)] == [], "nothing has committed"
            expected = ['"slow"', '"fast"']
        else:
            join_fast()
            (fast_event,) = take(batches, 1)
            assert fast_event.data_json == '"fast"', "the later commit waits for nobody"
            assert not fast_event.cursor.covers(ids["slow"]), "its cursor names the id still in flight"
            expected = ['"slow"']
        release.set()
        join_slow()
        join_fast()
        assert ids["fast"] > ids["slow"]
        got = take(batches, len(expected))
        assert [item.data_json for item in got] == expected
        assert got[-1].cursor.covers(ids["slow"]) and got[-1].cursor.covers(ids["fast"])
        assert next(batches) == [], "nothing twice"

    def test_concurrent_publishers_arrive_once_each_in_commit_order(self):
        hub = self.ready_hub()
        batches = follow(hub, frozenset({"c"}), hub.cursor, keepalive=0.2)
        committed = []
        lock = threading.Lock()

        def publisher(n):
            def run():
                for i in range(15):
                    try:
                        with transaction.atomic(using=self.alias):
                            event = self.publish("c", f"{n}-{i}")
                            if i % 5 == 4:
                                raise RuntimeError("roll back")
                            if i % 3 == 0:
                                time.sleep(0.02)  # held open while others commit
                    except RuntimeError:
                        continue
                    with lock:
                        committed.append(event.id)

            return run

        joins = [self.in_thread(publisher(n)) for n in range(4)]
        for join in joins:
            join()
        received = take(batches, len(committed))
        assert sorted(item.id for item in received) == sorted(committed), "each once, none lost"
        for n in range(4):  # each publisher committed in turn: its events arrive in that order
            mine = [int(json.loads(item.data_json).split("-")[1]) for item in received]
            mine = [i for item, i in zip(received, mine, strict=True) if item.data_json.startswith(f'"{n}-')]
            assert mine == sorted(mine), f"publisher {n}'s events out of commit order: {mine}"
        assert next(batches) == [], "nothing twice"
        assert all(received[-1].cursor.covers(event_id) for event_id in committed)

    def test_stop_ends_the_listener(self):
        others = set(listener_threads())  # other tests' listeners, which may still be ending
        hub = self.ready_hub()
        backend = hub.backend
        if not self.listens:
            assert not getattr(backend, "listening", False), f"{self.backend} listens after all"
            hub.stop()
            assert set(listener_threads()) <= others, f"{self.backend} started a listener"
            return
        wait_until(lambda: backend.listening, message="listening")
        threads = set(listener_threads()) - others
        assert threads, "listening, but no listener thread"
        hub.stop()
        wait_until(lambda: not backend.listening, message="listener stopped")
        wait_until(lambda: not any(thread.is_alive() for thread in threads), message="the listener's thread ended")


class PerChannelWakeups:
    """For backends that wake a process only for the channels its streams follow (issue 21)."""

    def settled_reads(self, hub):
        """Return the hub's count of log reads once it has stopped changing for a while."""
        reads = None
        while reads != hub.reads:
            reads = hub.reads
            time.sleep(0.8)  # longer than SETTLE_RECHECK: a gap still settling reads again within it
        return reads

    def test_a_wake_up_for_a_channel_no_stream_follows_reads_nothing_one_it_follows_reads_once(self):
        hub = self.ready_hub()
        batches = follow(hub, frozenset({"c"}), hub.horizon, keepalive=0.2)
        # A first event, so that the ids other tests used and left dead below it are settled.
        first = self.publish("c", '"first"')
        assert [item.id for item in take(batches, 1)] == [first.id]
        before = self.settled_reads(hub)
        self.publish_elsewhere("x", '"nobody here follows x"')
        time.sleep(0.5)  # the wake-up, had it come, has long been read
        assert hub.reads == before, "a process read the log for a channel none of its streams follows"
        event_id = self.publish_elsewhere("c", '"followed"')
        assert [item.id for item in take(batches, 1)] == [event_id]
        assert self.settled_reads(hub) == before + 1, "one wake-up for a followed channel, one read"


class InProcessContract(BackendContract):
    backend = "inprocess"
    crosses_processes = False


class PollingContract(BackendContract):
    backend = "polling"


@pytest.mark.django_db(transaction=True, databases=["default"])
class TestInProcessOnSQLite(InProcessContract):
    pass


@pytest.mark.django_db(transaction=True, databases=["default"])
class TestPollingOnSQLite(PollingContract):
    pass


POSTGRES_DB = pytest.mark.django_db(transaction=True, databases=["default", "postgres"])


@POSTGRES_DB
class TestPollingOnPostgres(PollingContract):
    alias = "postgres"
    services = ((services.POSTGRES, "PostgreSQL"),)


@POSTGRES_DB
class TestPostgres(PerChannelWakeups, BackendContract):
    backend = "postgres"
    listens = True
    alias = "postgres"
    services = ((services.POSTGRES, "PostgreSQL"),)

    def test_the_listener_comes_back_after_its_connection_is_terminated(self):
        hub = self.ready_hub()
        backend = hub.backend
        wait_until(lambda: backend.listening, message="listening")
        batches = follow(hub, frozenset({"c"}), hub.horizon, keepalive=0.2)
        with connections[self.alias].cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s AND datname = current_database()",
                [LISTENER_NAME],
            )
            assert cursor.fetchone() == (True,)
        event_id = self.publish_elsewhere("c", '"while reconnecting"')
        assert [item.id for item in take(batches, 1)] == [event_id]
        wait_until(lambda: backend.listening, message="listening again")
        event_id = self.publish_elsewhere("c", '"after"')
        assert [item.id for item in take(batches, 1)] == [event_id]

    def test_a_black_holed_listener_is_dropped_the_hub_polls_and_it_listens_again(self, settings):
        name = connections[self.alias].settings_dict["NAME"]
        with TCPProxy(services.POSTGRES) as proxy:
            dsn = f"postgresql://postgres@127.0.0.1:{proxy.port}/{name}"
            settings.REALTIME = {**settings.REALTIME, "OPTIONS": {"dsn": dsn, "heartbeat": 0.5}}
            self.check_black_hole(proxy)

    def test_a_listener_on_another_database_is_refused_and_the_hub_polls(self, settings, caplog):
        settings.REALTIME = {**settings.REALTIME, "OPTIONS": {"dsn": "postgresql://postgres@127.0.0.1:5432/test"}}
        hub = self.ready_hub()
        batches = follow(hub, frozenset({"c"}), hub.horizon, keepalive=0.2)
        event_id = self.publish_elsewhere("c", '"polled"')
        assert [item.id for item in take(batches, 1)] == [event_id]
        assert not hub.backend.listening
        assert "but the event log is in" in caplog.text


@pytest.fixture
def private_redis(tmp_path):
    """A redis-server of the test's own, which it may stop or kill the clients of; ended afterwards."""
    with RedisServer(tmp_path) as server:
        yield server


class RedisContract(PerChannelWakeups, BackendContract):
    backend = "redis"
    listens = True
    #: Pub/sub names of this test process's own: test runs that share a Redis (CI runs two at once)
    #: must not wake each other's hubs.
    options = {"url": services.REDIS_URL, "channel": f"django_realtime_test_{os.getpid()}"}

    def env(self):
        # publish_elsewhere()'s processes must reach the Redis this process listens on, with its names.
        return {
            **super().env(),
            "REDIS_URL": self.options["url"],
            "REALTIME_JSON": json.dumps({"OPTIONS": self.options}),
        }

    @pytest.fixture
    def own_redis(self, settings, private_redis):
        """Point the backend, and the processes publish_elsewhere() starts, at a private Redis."""
        self.options = {**self.options, "url": private_redis.url}
        settings.REALTIME = {**settings.REALTIME, "OPTIONS": self.options}
        return private_redis


@POSTGRES_DB
class TestRedisOnPostgres(RedisContract):
    alias = "postgres"
    services = ((services.POSTGRES, "PostgreSQL"), (services.REDIS, "Redis"))

    def test_the_listener_comes_back_after_redis_drops_it(self, own_redis):
        hub = self.ready_hub()
        backend = hub.backend
        wait_until(lambda: backend.listening, message="listening")
        batches = follow(hub, frozenset({"c"}), hub.horizon, keepalive=0.2)
        # CLIENT KILL on the shared Redis would drop every pub/sub client on the machine.
        with own_redis.client() as client:
            killed = client.client_kill_filter(_type="pubsub")
        assert killed == 1, f"{killed} pub/sub clients on the test's Redis, not just the hub's listener"
        event_id = self.publish_elsewhere("c", '"while reconnecting"')
        assert [item.id for item in take(batches, 1)] == [event_id]
        wait_until(lambda: backend.listening, message="listening again")
        event_id = self.publish_elsewhere("c", '"after"')
        assert [item.id for item in take(batches, 1)] == [event_id]

    def test_a_black_holed_listener_is_dropped_the_hub_polls_and_it_listens_again(self, settings, own_redis):
        with TCPProxy(("127.0.0.1", own_redis.port)) as proxy:
            # publish_elsewhere()'s processes reach Redis directly, as other servers would.
            settings.REALTIME = {
                **settings.REALTIME,
                "OPTIONS": {**self.options, "url": f"redis://127.0.0.1:{proxy.port}/0", "heartbeat": 0.5},
            }
            self.check_black_hole(proxy)


@pytest.mark.django_db(transaction=True, databases=["default"])
class TestRedisOnSQLite(RedisContract):
    services = ((services.REDIS, "Redis"),)


MARIADB_DB = pytest.mark.django_db(transaction=True, databases=["default", "mysql"])


@MARIADB_DB
class TestPollingOnMariaDB(PollingContract):
    alias = "mysql"


@MARIADB_DB
class TestRedisOnMariaDB(RedisContract):
    alias = "mysql"
    services = ((services.REDIS, "Redis"),)
