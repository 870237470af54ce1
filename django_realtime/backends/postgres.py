"""PostgreSQL LISTEN/NOTIFY: wake-ups between processes and hosts through the database.

NOTIFY is sent inside the publishing transaction, by the very statement
that inserts the event, so PostgreSQL delivers it at COMMIT and drops it on
ROLLBACK, and a publish costs one round trip.  It carries "channel id",
never the data, so payload limits never matter.  It goes to a LISTEN name of
the event's channel's own and to ``django_realtime`` (listener.py says who
hears which).  Each process LISTENs on one dedicated psycopg 3 connection
(give ``dsn`` to route it around PgBouncer in transaction mode, which does
not support LISTEN).  If that connection drops, the hub polls the log until
the listener is back, then reads it once more.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from django.db import connections, transaction

from ..conf import realtime_settings
from ..db import shut_down_socket
from .listener import ListenerBackend, Listening

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..models import Event

logger = logging.getLogger("django_realtime")

#: The LISTEN channel every wake-up also goes to (listener.py).
CHANNEL = "django_realtime"
#: The listening connection's application_name.
LISTENER_NAME = "django_realtime listener"
#: Connection parameters of Django's that are not libpq's.
_NOT_CONNINFO = {"cursor_factory", "context", "prepare_threshold", "client_encoding"}


class PostgresBackend(ListenerBackend):
    """Notify through PostgreSQL; listen on one connection per process."""

    service = "PostgreSQL"

    def __init__(
        self,
        dsn: str | None = None,
        fallback_interval: float = 1.0,
        database: str | None = None,
        heartbeat: float = 5.0,
        max_channels: int = 1000,
    ) -> None:
        super().__init__(fallback_interval, heartbeat, max_channels, CHANNEL)
        self.dsn = dsn
        self.database = database
        self._conninfo = ""
        self._log_database = ""

    def insert_notify(self, channel: str) -> tuple[str, ...]:
        return self.names(channel)

    def published(self, event: Event, using: str, *, notified: bool = False) -> None:
        channel = event.channel
        if not notified:
            # Inside the transaction: PostgreSQL delivers it at COMMIT, never on ROLLBACK.
            self._send(using, channel, event.id)
        transaction.on_commit(lambda: self.wake_local(channel), using=using)

    def notify(self, channel: str, event_id: int) -> None:
        self._send(self.database or realtime_settings.DATABASE, channel, event_id)

    def _send(self, using: str, channel: str, event_id: int) -> None:
        payload = f"{channel} {event_id}"
        with connections[using].cursor() as cursor:
            cursor.execute(
                "SELECT pg_notify(%s, %s), pg_notify(%s, %s)", [*self.names(channel)[:1], payload, CHANNEL, payload]
            )

    def conninfo(self) -> str:
        """Return the listener's connection string: ``dsn``, or the log database's settings."""
        import psycopg

        if self.dsn:
            return self.dsn
        params = connections[self.database or realtime_settings.DATABASE].get_connection_params()
        return psycopg.conninfo.make_conninfo(
            "", **{k: v for k, v in params.items() if k not in _NOT_CONNINFO and isinstance(v, (str, int))}
        )

    def start(self, wake: Callable[[], None], using: str) -> None:
        self._conninfo = self.conninfo()
        with connections[using].cursor() as cursor:
            cursor.execute("SELECT current_database()")
            self._log_database = cursor.fetchone()[0]
        super().start(wake, using)

    def interrupt(self, run: Listening) -> None:
        connection = run.connection
        if connection is not None:
            try:
                connection.cancel_safe()  # type: ignore[attr-defined]
            except Exception:  # the listener is going away either way
                logger.debug("could not cancel the LISTEN connection", exc_info=True)

    def listen(self, run: Listening) -> None:
        import psycopg

        # Named, so that pg_stat_activity tells the listeners apart from the rest.
        with psycopg.connect(
            self._conninfo, autocommit=True, connect_timeout=5, application_name=LISTENER_NAME
        ) as connection:
            run.connection = connection
            try:
                (database,) = connection.execute("SELECT current_database()").fetchone() or ("",)
                if database != self._log_database:
                    # NOTIFY reaches listeners of the same database only.
                    raise RuntimeError(
                        f"the listener's connection reaches database {database!r}, "
                        f"but the event log is in {self._log_database!r}"
                    )
                listened: set[str] = set()
                self.changed.clear()
                listened = self._listen_to(connection, listened)
                self.subscribed(run)
                heard = time.monotonic()
                while not run.stopping.is_set():
                    for notify in connection.notifies(timeout=min(self.FOLLOW_CHECK, self.heartbeat)):
                        self.heard(run, notify.payload)
                        heard = time.monotonic()
                    if self.changed.is_set():
                        self.changed.clear()
                        listened = self._listen_to(connection, listened)
                        run.wake()  # what was published on a new channel before its LISTEN took effect
                        heard = time.monotonic()
                    elif time.monotonic() - heard >= self.heartbeat:
                        self._ping(connection)
                        heard = time.monotonic()
            finally:
                run.connection = None

    def _listen_to(self, connection: Any, listened: set[str]) -> set[str]:
        """LISTEN to the names wanted now and UNLISTEN the others, in one round trip; return the names."""
        from psycopg import sql

        wanted = self.wanted()
        statements = [sql.SQL("LISTEN {}").format(sql.Identifier(name)) for name in sorted(wanted - listened)]
        statements += [sql.SQL("UNLISTEN {}").format(sql.Identifier(name)) for name in sorted(listened - wanted)]
        if statements:
            connection.execute(sql.SQL("; ").join(statements))
        return wanted

    def _ping(self, connection: object) -> None:
        """Check that *connection* answers within ``heartbeat`` seconds; make it fail if not."""
        # A query on a connection nobody answers would wait forever, and a
        # cancel request would go where the query went: shut the socket down.
        timer = threading.Timer(self.heartbeat, _shut_down, args=(connection,))
        timer.daemon = True
        timer.start()
        try:
            connection.execute("SELECT 1")  # type: ignore[attr-defined]
        finally:
            timer.cancel()


def _shut_down(connection: object) -> None:
    logger.warning("the PostgreSQL listener's connection did not answer; dropping it")
    shut_down_socket(connection.fileno())  # type: ignore[attr-defined]
