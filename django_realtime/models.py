"""The event log: one row per event, the row id being the resume cursor."""

from __future__ import annotations

import json
from typing import Any

from django.db import models
from django.utils import timezone

from .exceptions import InvalidEventData
from .names import CHANNEL_MAX_LENGTH, EVENT_MAX_LENGTH, validate_channel, validate_event_name
from .signals import events_stored


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class EventQuerySet(models.QuerySet):
    def bulk_create(self, objs, *args, **kwargs):
        """Store the events as QuerySet.bulk_create() does, and send ``events_stored`` for them."""
        objs = list(objs)
        for obj in objs:
            obj.check_fields()
        created = super().bulk_create(objs, *args, **kwargs)
        events_stored.send(sender=self.model, events=created, using=self.db)
        return created


class Event(models.Model):
    """One published event.

    ``data_json`` keeps the JSON text exactly as published: it is what the SSE
    ``data:`` field carries, so streams never decode and re-encode it.
    """

    id = models.BigAutoField(primary_key=True)
    #: Compared byte for byte on every database (MySQL and MariaDB: utf8mb4_bin, migration 0006).
    channel = models.CharField(max_length=CHANNEL_MAX_LENGTH)
    event = models.CharField(max_length=EVENT_MAX_LENGTH, default="message")
    data_json = models.TextField(db_column="data")
    created = models.DateTimeField(default=timezone.now, db_index=True)

    objects = EventQuerySet.as_manager()

    #: Set on a row whose writer wakes the hubs itself (publish()): the ORM's receivers leave it alone.
    _announced: bool = False

    class Meta:
        indexes = [models.Index(fields=["channel", "id"], name="django_realtime_channel_id")]

    def __str__(self) -> str:
        return f"{self.id} {self.channel} {self.event}"

    def check_fields(self) -> None:
        """Raise a ValueError subclass unless this row, written without publish(), holds what publish() would store.

        A row with a line break in its event name, or data that is not one
        JSON value, would break every stream that reaches it (a WebSocket
        message carries the data as it is): ``save()``, ``loaddata`` (through
        ``pre_save``) and ``bulk_create()`` refuse it before it is written.
        """
        validate_channel(self.channel)
        validate_event_name(self.event)
        text = self.data_json
        if not isinstance(text, str):
            raise InvalidEventData(f"data_json must be JSON text, not {type(text).__name__}")
        try:
            value = json.loads(text, parse_constant=_no_constant)
            # An escaped lone surrogate ("\\ud800") is valid JSON but no text.
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except RecursionError:
            raise InvalidEventData("data_json is nested too deeply") from None
        except UnicodeEncodeError:
            raise InvalidEventData("data_json holds a lone surrogate (U+D800 to U+DFFF), which is not text") from None
        except ValueError as exc:
            raise InvalidEventData(f"data_json is not one JSON value: {exc}") from None

    @property
    def data(self) -> Any:
        """Return the event's data, decoded from its JSON text."""
        return json.loads(self.data_json)


class PruneMark(models.Model):
    """The highest event id of a channel that retention has deleted.

    A cursor below it means the client missed events it can no longer get:
    the stream then sends a ``reset`` event instead of a silent gap.
    """

    #: Compared byte for byte on every database (MySQL and MariaDB: utf8mb4_bin, migration 0006).
    channel = models.CharField(max_length=CHANNEL_MAX_LENGTH, primary_key=True)
    pruned_through = models.BigIntegerField()

    def __str__(self) -> str:
        return f"{self.channel} pruned through {self.pruned_through}"


class SkippedIds(models.Model):
    """A run of event ids, first to last, that a hub stepped over after GAP_TIMEOUT without seeing them.

    Only on databases with no commit-order rule (see ``django_realtime.skips``):
    every process and every replay then leave out a row that commits there
    late, and its channel gets a ``reset`` (reason ``late``) instead.
    """

    first = models.BigIntegerField()
    last = models.BigIntegerField(db_index=True)
    recorded = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "skipped ids"
        verbose_name_plural = "skipped ids"

    def __str__(self) -> str:
        return f"ids {self.first}..{self.last} skipped"


class InnoDBTransactions(models.Model):
    """MySQL and MariaDB only: the newest list of InnoDB's open transactions, shared by every process's hub.

    InnoDB refreshes its cache of ``information_schema.INNODB_TRX`` only when
    nobody has read it for 0.1 s, so hubs that each listed it would keep it
    stale for one another.  One hub lists it and keeps the list here; the
    others read this row (see ``eventlog.innodb.InnoDBTailer``).  One row, id 1.
    """

    #: The database time the list is surely newer than (eventlog.innodb._NOW's format).
    taken = models.CharField(max_length=20)
    #: JSON: the keys of the open transactions, and every key each answers to.
    listed = models.TextField()
    answers = models.TextField()
    written = models.DateTimeField()

    class Meta:
        verbose_name_plural = "InnoDB transactions"

    def __str__(self) -> str:
        return f"InnoDB transactions listed after {self.taken}"


class PresenceProcess(models.Model):
    """A process that holds presence members, and when it last said it is alive (django_realtime.presence).

    Each such process updates ``seen`` once per ``PRESENCE_HEARTBEAT``, by
    the database's clock; one not seen for ``PRESENCE_TIMEOUT`` is taken to
    have died, and its members leave.
    """

    key = models.CharField(max_length=32, primary_key=True)
    seen = models.DateTimeField(db_index=True)

    class Meta:
        verbose_name_plural = "presence processes"

    def __str__(self) -> str:
        return f"process {self.key} seen {self.seen}"


class PresenceMember(models.Model):
    """One connection (a WebSocket, an SSE stream) present on a channel."""

    connection = models.CharField(max_length=32, primary_key=True)
    #: The PresenceProcess that serves it (no foreign key: a member outlives nothing, see presence.reap).
    process = models.CharField(max_length=32, db_index=True)
    #: Compared byte for byte on every database (MySQL and MariaDB: utf8mb4_bin, migration 0006).
    channel = models.CharField(max_length=CHANNEL_MAX_LENGTH)
    user = models.CharField(max_length=150)
    #: The public info the connection joined with, as JSON text (an object).
    info_json = models.TextField(db_column="info", default="{}")
    joined = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["channel", "joined"], name="django_realtime_presence_ch")]

    def __str__(self) -> str:
        return f"{self.user} on {self.channel}"
