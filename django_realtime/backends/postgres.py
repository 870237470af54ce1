"""PostgreSQL LISTEN/NOTIFY: wake-ups between processes and hosts through the database.

NOTIFY is sent inside the publishing transaction, so PostgreSQL delivers it
at COMMIT and drops it on ROLLBACK.  It carries "channel id", never the
data, so payload limits never matter.  Each process LISTENs on one dedicated
psycopg 3 connection (give ``dsn`` to route it around PgBouncer in
transaction mode, which does not support LISTEN).  If that connection drops,
the hub polls the log until the listener is back, then reads it once more.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from django.db import connections, transaction

from .. import hub as hub_module
from ..conf import realtime_settings
from .base import BaseBackend

if TYPE_CHECKING:
    from ..hub import Hub
    from ..models import Event

logger = logging.getLogger("django_realtime")

#: The LISTEN channel's name.
CHANNEL = "django_realtime"
#: Connection parameters of Django's that are not libpq's.
_NOT_CONNINFO = {"cursor_factory", "context", "prepare_threshold", "client_encoding"}


class PostgresBackend(BaseBackend):
    """Notify through PostgreSQL; listen on one connection per process."""

    def __init__(self, dsn: str | None = None, fallback_interval: float = 1.0, database: str | None = None) -> None:
        self.dsn = dsn
        self.fallback_interval = fallback_interval
        self.database = database
        self.listening = threading.Event()
        self._stopping = threading.Event()
        self._connection = None
        self._log_database = ""

    @property
    def poll_interval(self) -> float | None:  # type: ignore[override]
        return None if self.listening.is_set() else self.fallback_interval

    def published(self, event: Event, using: str) -> None:
        # Inside the transaction: PostgreSQL delivers it at COMMIT, never on ROLLBACK.
        self._send(using, event.channel, event.id)
        transaction.on_commit(hub_module.poke_local_hub, using=using)

    def notify(self, channel: str, event_id: int) -> None:
        self._send(self.database or realtime_settings.DATABASE, channel, event_id)

    def _send(self, using: str, channel: str, event_id: int) -> None:
        with connections[using].cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, f"{channel} {event_id}"])

    def conninfo(self) -> str:
        """Return the listener's connection string: ``dsn``, or the log database's settings."""
        import psycopg

        if self.dsn:
            return self.dsn
        params = connections[self.database or realtime_settings.DATABASE].get_connection_params()
        return psycopg.conninfo.make_conninfo(
            **{k: v for k, v in params.items() if k not in _NOT_CONNINFO and isinstance(v, (str, int))}
        )

    def start(self, hub: Hub) -> None:
        self._stopping.clear()
        conninfo = self.conninfo()
        with connections[hub.using].cursor() as cursor:
            cursor.execute("SELECT current_database()")
            self._log_database = cursor.fetchone()[0]
        thread = threading.Thread(target=self._listen, args=(hub, conninfo), name="django-realtime-listen", daemon=True)
        thread.start()

    def stop(self) -> None:
        self._stopping.set()
        connection = self._connection
        if connection is not None:
            try:
                connection.cancel_safe()
            except Exception:  # the listener is going away either way
                logger.debug("could not cancel the LISTEN connection", exc_info=True)

    def _listen(self, hub: Hub, conninfo: str) -> None:
        import psycopg
        from psycopg import sql

        backoff = 0.1
        while not self._stopping.is_set():
            try:
                with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as connection:
                    self._connection = connection
                    (database,) = connection.execute("SELECT current_database()").fetchone()
                    if database != self._log_database:
                        # NOTIFY reaches listeners of the same database only.
                        raise RuntimeError(
                            f"the listener's connection reaches database {database!r}, "
                            f"but the event log is in {self._log_database!r}"
                        )
                    connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
                    self.listening.set()
                    backoff = 0.1
                    # Whatever committed while nobody listened: read the log now.
                    hub.poke()
                    while not self._stopping.is_set():
                        for _ in connection.notifies(timeout=1.0):
                            hub.poke()
            except Exception:
                if self._stopping.is_set():
                    break
                logger.warning("PostgreSQL listener lost; polling the log until it is back", exc_info=True)
            finally:
                self._connection = None
                self.listening.clear()
                hub.poke()
            self._stopping.wait(backoff)
            backoff = min(backoff * 2, 5.0)
