"""Channel names compare byte-exactly in the database: ``CALL:1-2`` is not ``call:1-2`` on any of them.

MySQL and MariaDB compare text through the column's collation, by default a
case-insensitive one (``utf8mb4_general_ci``, ``utf8mb4_0900_ai_ci``):
there, without migration 0006, a replay of ``CALL:1-2`` served the rows of
the pair channel ``call:1-2``, its presence list listed their members, and
their prune marks mixed.  The contract runs on every database; SQLite and
PostgreSQL pass it with no migration of their own.
"""

import json

import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import connections
from django.utils import timezone

from django_realtime import publish
from django_realtime.eventlog import high_water_mark, read_page
from django_realtime.hub import get_hub
from django_realtime.models import Event, PruneMark
from django_realtime.presence import get_registry
from django_realtime.retention import prune
from django_realtime.streams import Follower, follow
from tests.support import services

PAIR = "call:1-2"
#: The same name but for its case: public, under the settings below.
OTHER = "CALL:1-2"
ANONYMOUS = AnonymousUser()


class ChannelNamesContract:
    alias = "default"

    @pytest.fixture(autouse=True)
    def _log_here(self, settings):
        if self.alias == "mysql":
            services.require_mariadb()
        elif self.alias == "postgres":
            services.require(services.POSTGRES, "PostgreSQL")
        settings.REALTIME = {
            "BACKEND": "inprocess",
            "DATABASE": self.alias,
            "PRUNE_INTERVAL": None,
            # A permissive rule for everything but the pair channels: OTHER is anyone's.
            "PAIR_CHANNELS": ["call"],
            "PUBLIC_CHANNELS": ["*"],
            "PRESENCE_CHANNELS": ["*"],
        }
        yield
        get_hub().stop()
        get_registry().stop()
        for connection in connections.all(initialized_only=True):
            connection.close()

    def events(self):
        return Event.objects.using(self.alias)

    def test_a_replay_of_a_channel_reads_none_of_the_rows_of_a_name_that_differs_in_case(self):
        secret = publish(PAIR, {"secret": 1}).id
        mine = publish(OTHER, {"mine": 1}).id
        newest = high_water_mark(self.alias)
        assert [item.id for item in read_page(self.alias, [OTHER], 0, newest)[0]] == [mine]
        assert [item.id for item in read_page(self.alias, [PAIR], 0, newest)[0]] == [secret]

    def test_a_stream_that_resumes_from_before_the_hubs_buffer_reads_only_its_own_channel(self):
        secret = publish(PAIR, {"secret": 1}).id
        hub = get_hub()
        assert hub.ensure_ready(), hub.error
        assert hub.horizon >= secret
        # The follower's catch-up: a cursor below the buffer's floor reads the log.
        follower = Follower(hub, frozenset({OTHER}), 0, None)
        assert follower.catch_up() == []
        # The same through the driver a stream runs: its first batch is a keepalive, not the secret.
        batches = follow(hub, frozenset({OTHER}), 0, keepalive=0.2)
        try:
            assert next(batches) == []
        finally:
            batches.close()

    def test_the_presence_list_of_a_channel_lists_none_of_the_members_of_a_name_that_differs_in_case(self):
        registry = get_registry()
        ada = registry.join(ANONYMOUS, PAIR, "ada")
        assert registry.snapshot(OTHER)[1] == []
        assert [member["connection"] for member in registry.snapshot(PAIR)[1]] == [ada.connection]

    def test_a_prune_mark_of_one_channel_gives_a_name_that_differs_in_case_no_reset(self):
        publish(PAIR, {"secret": 1})
        publish(PAIR, {"secret": 2})
        prune(channel=PAIR, older_than=None, keep=0, grace=0, using=self.alias)
        assert list(PruneMark.objects.using(self.alias).values_list("channel", flat=True)) == [PAIR]
        hub = get_hub()
        assert hub.ensure_ready(), hub.error
        follower = Follower(hub, frozenset({OTHER}), 0, None)
        assert [(item.event, item.data_json) for item in follower.catch_up()] == []

    def test_each_channel_keeps_its_own_prune_mark(self):
        pair = publish(PAIR, {"secret": 1}).id
        other = publish(OTHER, {"mine": 1}).id
        prune(older_than=None, keep=0, grace=0, using=self.alias)
        assert not self.events().exists()
        marks = dict(PruneMark.objects.using(self.alias).values_list("channel", "pruned_through"))
        assert marks == {PAIR: pair, OTHER: other}


@pytest.mark.django_db(transaction=True)
class TestOnSQLite(ChannelNamesContract):
    alias = "default"


@pytest.mark.django_db(transaction=True, databases=["default", "postgres"])
class TestOnPostgreSQL(ChannelNamesContract):
    alias = "postgres"


@pytest.mark.django_db(transaction=True, databases=["default", "mysql"])
class TestOnMariaDB(ChannelNamesContract):
    alias = "mysql"

    def test_every_channel_column_compares_bytes_after_migrate(self):
        with connections["mysql"].cursor() as cursor:
            cursor.execute(
                "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, CHARACTER_SET_NAME, COLLATION_NAME "
                "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME LIKE %s "
                "AND COLUMN_NAME = 'channel' ORDER BY TABLE_NAME",
                ["django_realtime%"],
            )
            columns = cursor.fetchall()
        assert columns == (
            ("django_realtime_event", "channel", "varchar(200)", "NO", "utf8mb4", "utf8mb4_bin"),
            ("django_realtime_presencemember", "channel", "varchar(200)", "NO", "utf8mb4", "utf8mb4_bin"),
            ("django_realtime_prunemark", "channel", "varchar(200)", "NO", "utf8mb4", "utf8mb4_bin"),
        )

    def test_the_channel_indexes_survive_the_migration(self):
        with connections["mysql"].cursor() as cursor:
            cursor.execute(
                "SELECT TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX, COLUMN_NAME FROM information_schema.STATISTICS "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN (%s, %s, %s)",
                ["django_realtime_event", "django_realtime_presencemember", "django_realtime_prunemark"],
            )
            named = ("PRIMARY", "django_realtime_channel_id", "django_realtime_presence_ch")
            indexes = {row for row in cursor.fetchall() if row[1] in named}
        assert indexes == {
            ("django_realtime_event", "PRIMARY", 1, "id"),
            ("django_realtime_event", "django_realtime_channel_id", 1, "channel"),
            ("django_realtime_event", "django_realtime_channel_id", 2, "id"),
            ("django_realtime_presencemember", "PRIMARY", 1, "connection"),
            ("django_realtime_presencemember", "django_realtime_presence_ch", 1, "channel"),
            ("django_realtime_presencemember", "django_realtime_presence_ch", 2, "joined"),
            ("django_realtime_prunemark", "PRIMARY", 1, "channel"),
        }

    def test_the_migration_keeps_every_row_stored_before_it(self):
        """A log that grew under the case-insensitive collation: migrating it loses nothing, and parts the names."""
        from django.db.migrations.executor import MigrationExecutor

        from django_realtime.models import PresenceMember, PresenceProcess

        def migrate(target):
            executor = MigrationExecutor(connections["mysql"])
            executor.migrate([("django_realtime", target)])

        migrate("0005_presence")
        try:
            (default,) = self.collations()  # the database's, as 0001 and 0005 left it
            assert default.endswith("_ci"), default
            stored = [publish(PAIR, {"secret": n}).id for n in range(3)] + [publish(OTHER, {"mine": 1}).id]
            PruneMark.objects.using("mysql").create(channel=PAIR, pruned_through=stored[0])
            PresenceProcess.objects.using("mysql").create(key="p" * 32, seen=timezone.now())
            member = PresenceMember(connection="c" * 32, process="p" * 32, channel=PAIR, user="ada")
            member.save(using="mysql")
            # What the finding is about, on the old collation: OTHER reads PAIR's rows.
            assert len(read_page("mysql", [OTHER], 0, stored[-1])[0]) == 4
        finally:
            migrate("0006_channel_collation")
        assert self.collations() == {"utf8mb4_bin"}
        assert list(self.events().order_by("id").values_list("id", "channel")) == [
            *((id, PAIR) for id in stored[:3]),
            (stored[3], OTHER),
        ]
        assert list(PruneMark.objects.using("mysql").values_list("channel", "pruned_through")) == [(PAIR, stored[0])]
        assert list(PresenceMember.objects.using("mysql").values_list("channel", "user")) == [(PAIR, "ada")]
        assert [item.id for item in read_page("mysql", [OTHER], 0, stored[-1])[0]] == [stored[3]]

    @staticmethod
    def collations():
        with connections["mysql"].cursor() as cursor:
            cursor.execute(
                "SELECT DISTINCT COLLATION_NAME FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME LIKE %s AND COLUMN_NAME = 'channel'",
                ["django_realtime%"],
            )
            return {name for (name,) in cursor.fetchall()}


@pytest.mark.server
@pytest.mark.django_db(transaction=True, databases=["default", "mysql"])
def test_a_server_on_mariadb_serves_a_channel_none_of_the_rows_or_members_of_a_name_that_differs_in_case(
    settings, tmp_path
):
    """daphne on the test's MariaDB database: a replay over SSE and over a WebSocket, and the presence endpoint."""
    import httpx
    from websockets.sync.client import connect

    from tests.support.servers import EventStream, project_env, running_server

    services.require_mariadb()
    settings.REALTIME = {"BACKEND": "inprocess", "DATABASE": "mysql", "PRUNE_INTERVAL": None}
    publish(PAIR, {"secret": 1})
    mine = publish(OTHER, {"mine": 1}).id
    registry = get_registry()
    registry.join(ANONYMOUS, PAIR, "ada")
    db = connections["mysql"].settings_dict
    # The demo's own database settings (no OPTIONS: Django's default connection charset, utf8).
    env = project_env(f"mysql://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}")
    # The demo's PAIR_CHANNELS is ["call"]; everything else is anyone's.
    env["REALTIME_JSON"] = json.dumps({"PUBLIC_CHANNELS": ["*"], "PRESENCE_CHANNELS": ["*"]})
    try:
        with running_server("daphne", env, tmp_path / "daphne.log") as server:
            with EventStream(server.events_url(), params=[("channel", OTHER), ("lastEventId", "0")]) as stream:
                replayed = stream.until_id(str(mine), timeout=10)
            assert [(sse.id, sse.data) for sse in replayed] == [(str(mine), '{"mine":1}')], server.log()

            with connect(server.url.replace("http", "ws") + "/ws/", origin=server.url, open_timeout=10) as ws:
                ws.send(json.dumps({"type": "subscribe", "channel": OTHER, "last_id": "0"}))
                messages = [json.loads(ws.recv(timeout=10))]
                while messages[-1].get("id") != str(mine):
                    messages.append(json.loads(ws.recv(timeout=10)))
            assert [message["type"] for message in messages] == ["subscribed", "event"], messages
            assert (messages[1]["channel"], messages[1]["data"]) == (OTHER, {"mine": 1})

            presence = f"{server.events_url()}presence/"
            reply = httpx.get(presence, params={"channel": OTHER}, timeout=10)
            assert reply.status_code == 200, reply.text
            assert reply.json()["members"] == []
            # The pair channel itself stays its two users' alone.
            assert httpx.get(presence, params={"channel": PAIR}, timeout=10).status_code == 403
            assert httpx.get(server.events_url(), params={"channel": PAIR}, timeout=10).status_code == 403
    finally:
        registry.stop()
        connections["mysql"].close()
