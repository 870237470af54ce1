"""Presence: who is connected to a channel, across every process (docs/presence.md).

A *member* is one connection, a WebSocket or an SSE stream, that joined a
channel's presence under an identity (``user``) and some public info.  The
members live in the database beside the log (``PresenceMember``), so every
process sees the same list; each join and leave is also an event on the
channel (``presence.join``, ``presence.leave``), stored in the same
transaction as the member's row, so that a client can apply them to a list
it asked for and stay exact (see :meth:`Registry.snapshot`).

A process that holds members says it is alive once per
``PRESENCE_HEARTBEAT``: one UPDATE of its ``PresenceProcess`` row, however
many members it holds.  A process killed without leaving stops doing so;
the members of a process not seen for ``PRESENCE_TIMEOUT`` are left out of
every list at once, and the next heartbeat of any other process (within
``PRESENCE_HEARTBEAT``) deletes them and sends their ``presence.leave``.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import DatabaseError, transaction
from django.db.models.functions import Now
from django.utils.module_loading import import_string

from . import metrics
from .conf import realtime_settings
from .cursor import Cursor
from .exceptions import EventTooLarge, InvalidEventData
from .protocol import BAD_MESSAGE, FORBIDDEN, TOO_LARGE

logger = logging.getLogger("django_realtime")

#: The event names of presence (reserved: publish() refuses them).
JOIN = "presence.join"
LEAVE = "presence.leave"
#: Longest name an anonymous connection may be present as.
NAME_MAX_LENGTH = 100
#: Most joins, and most leaves, written in one transaction.
JOIN_BATCH = LEAVE_BATCH = 200


class PresenceRefused(Exception):
    """A join that the identity hook or the rules refuse; *code* is one of the codes above."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def identify(user: Any, channel: str, name: str | None) -> str:
    """The default ``PRESENCE_IDENTITY``: a signed-in user is present as their username, whatever *name* says.

    An anonymous connection is present as the *name* it gives: a claim
    anyone can make, fit for a demo or a public lobby.  Refuse anonymous
    names with a hook of your own (raise PresenceRefused) where identity matters.
    """
    if getattr(user, "is_authenticated", False):
        return str(user.get_username())
    if name is None:
        raise PresenceRefused(BAD_MESSAGE, "give a name to be present as: you are not signed in")
    return name


def split_identity(returned: object) -> tuple[str | None, dict[str, Any]]:
    """Return the identity and the server's info keys in what ``PRESENCE_IDENTITY`` returned.

    A hook returns the identity (a str, or None for none), or a dict
    ``{"user": <str>, "info": {<key>: <value>}}`` whose info keys are set over
    the client's.  Anything else is logged as an error and refused
    (PresenceRefused, ``forbidden``): a bug of the hook lets nobody in under
    an identity or an info it did not mean.
    """
    if returned is None or isinstance(returned, str):
        return returned, {}
    if isinstance(returned, dict):
        problem = _identity_problem(returned)
        if problem is None:
            return returned["user"], returned.get("info", {})
    else:
        problem = "neither a str nor a dict"
    hook = realtime_settings.PRESENCE_IDENTITY
    logger.error(
        "django_realtime: the PRESENCE_IDENTITY hook %s returned %r, %s; the join is refused. "
        'Return the identity as a str, or {"user": str, "info": dict} (docs/presence.md)',
        hook if isinstance(hook, str) else getattr(hook, "__qualname__", repr(hook)),
        returned,
        problem,
    )
    raise PresenceRefused(FORBIDDEN, "the presence identity hook gave no valid identity")


def _identity_problem(returned: dict[Any, Any]) -> str | None:
    """Say what makes the dict a hook returned no identity; None if it is one."""
    from .publishing import encode_data

    if set(returned) - {"user", "info"}:  # a typo ("infos") must not pass for "no info"
        return f"a dict with keys other than 'user' and 'info': {sorted(map(str, returned))}"
    if not isinstance(returned.get("user"), str):
        return "a dict whose 'user' is not a str"
    info = returned.get("info", {})
    # String keys only: JSON would make 1 the key "1", and a client's "1" would then win over it.
    if not isinstance(info, dict) or not all(isinstance(key, str) for key in info):
        return "a dict whose 'info' is not a dict with str keys"
    try:
        encode_data(info)
    except InvalidEventData as exc:
        return f"a dict whose 'info' is not JSON ({exc})"
    return None


def check_name(name: object) -> str | None:
    """Return *name* if it is None or a name one may be present as; else raise PresenceRefused."""
    if name is None:
        return None
    if not isinstance(name, str):
        raise PresenceRefused(BAD_MESSAGE, f"name must be a string, not {type(name).__name__}")
    if not name.strip() or len(name) > NAME_MAX_LENGTH:
        raise PresenceRefused(BAD_MESSAGE, f"name must have 1 to {NAME_MAX_LENGTH} characters, not only spaces")
    if any(unicodedata.category(char).startswith("C") for char in name):
        raise PresenceRefused(BAD_MESSAGE, "name must not contain control or unassigned characters")
    return name


def encode_info(info: object) -> str:
    """Return the JSON text of a member's public *info*, an object of PRESENCE_MAX_INFO bytes at most."""
    from .publishing import encode_data

    if info is None:
        return "{}"
    if not isinstance(info, dict):
        raise PresenceRefused(BAD_MESSAGE, f"info must be a JSON object, not {type(info).__name__}")
    limit = int(realtime_settings.PRESENCE_MAX_INFO)
    try:
        return encode_data(info, limit=limit)
    except EventTooLarge:
        raise PresenceRefused(TOO_LARGE, f"info is more than PRESENCE_MAX_INFO ({limit}) bytes of JSON") from None
    except InvalidEventData as exc:
        raise PresenceRefused(BAD_MESSAGE, f"info: {exc}") from None


@dataclass(frozen=True, slots=True)
class Member:
    """One connection present on a channel."""

    connection: str
    channel: str
    user: str
    info_json: str

    def joined(self) -> dict[str, Any]:
        """Return the data of its ``presence.join`` event, and its entry in a snapshot."""
        import json

        return {"connection": self.connection, "user": self.user, "info": json.loads(self.info_json)}

    def left(self) -> dict[str, Any]:
        """Return the data of its ``presence.leave`` event."""
        return {"connection": self.connection, "user": self.user}


class Registry:
    """This process's members, its heartbeat, and the reaping of dead processes' members.

    Its thread (a greenlet under gevent) starts on first use and beats
    every PRESENCE_HEARTBEAT seconds: it retries the leaves that failed,
    updates this process's row while it holds members (joining them again
    if another process took it for dead meanwhile) and reaps the dead.
    """

    def __init__(self, using: str) -> None:
        self.using = using
        #: This process's key in PresenceProcess.
        self.key = uuid.uuid4().hex
        self.pid = os.getpid()
        self._members: dict[str, Member] = {}
        #: Members whose join is not written yet, and the joins a failed batch held.
        self._joining: dict[str, Member] = {}
        self._failed_joins: dict[str, DatabaseError] = {}
        #: Members that left and whose leave is not written yet (by a leave() or, if that failed, the heartbeat).
        self._leaving: dict[str, Member] = {}
        #: Held while leaves are written: one batch at a time.
        self._deleting = threading.Lock()
        self._lock = threading.Lock()
        #: Held while members are written as this process's: a batch of joins, or the heartbeat's joining again.
        self._writing = threading.Lock()
        #: Whether this process's PresenceProcess row may exist (it wrote one and has not deleted it).
        self._registered = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Heartbeats run so far, for tests.
        self.beats = 0

    # What connections call -------------------------------------------------

    def join(self, user: Any, channel: str, name: object = None, info: object = None) -> Member:
        """Make a connection present on *channel*; return its member (raise PresenceRefused, DatabaseError).

        The caller has validated *channel* and asked AUTHORIZE (action ``presence``).
        """
        name = check_name(name)
        info_json = encode_info(info)  # the client's own info, refused as the client's
        hook = realtime_settings.PRESENCE_IDENTITY
        identity, server_info = split_identity(
            (import_string(hook) if isinstance(hook, str) else hook)(user, channel, name)
        )
        identity = check_name(identity)
        if identity is None:
            raise PresenceRefused(FORBIDDEN, "the presence identity hook gave no identity")
        if server_info:
            # The server's keys win: a client cannot forge what the server sets (a user's pk, a role).
            info_json = encode_info({**(info if isinstance(info, dict) else {}), **server_info})
        member = Member(uuid.uuid4().hex, channel, identity, info_json)
        self._start()
        with self._lock:
            self._joining[member.connection] = member
        # Joins are written one batch at a time, as leaves are: a thousand
        # clients that come back at once (a restart) take one connection.
        with self._writing:
            with self._lock:
                queued = member.connection in self._joining
            if queued:
                self._write_joins()
            with self._lock:
                failed = self._failed_joins.pop(member.connection, None)
        if failed is not None:  # one error of a batch, raised in each of its joins' threads: a copy each
            raise DatabaseError(f"the join could not be written: {failed}") from failed
        metrics.presence_changed(1)
        return member

    def leave(self, member: Member) -> None:
        """End *member*'s presence: its row goes and its ``presence.leave`` is sent (now, or at the next heartbeat).

        Leaves are written one batch at a time (the first waiting writes
        every leave queued meanwhile), so that a thousand connections that
        close at once take one database connection, not a thousand.
        """
        with self._lock:
            if self._members.pop(member.connection, None) is None:
                return
            self._leaving[member.connection] = member
        metrics.presence_changed(-1)
        with self._deleting:
            with self._lock:
                if member.connection not in self._leaving:
                    return  # a batch written meanwhile held it
            try:
                self._write_leaves()
            except DatabaseError:
                logger.warning(
                    "django_realtime could not write that %s left %s; the next heartbeat tries again",
                    member.user,
                    member.channel,
                    exc_info=True,
                )

    def snapshot(self, channel: str) -> tuple[Cursor, list[dict[str, Any]]]:
        """Return a cursor and the members present on *channel*, oldest first.

        The cursor is this process's hub's, read before the members: every
        ``presence.*`` event it covers committed before the query and is in
        the list.  A client that asked once its stream of *channel* was live
        stays exact by applying the events it receives, joins and leaves, by
        connection (docs/presence.md).
        """
        from .hub import get_hub
        from .models import PresenceMember

        self._start()
        cursor = get_hub().cursor
        rows = (
            PresenceMember.objects.using(self.using)
            .filter(channel=channel, process__in=self._living().values("key"))
            .order_by("joined", "connection")
            .values_list("connection", "user", "info_json")
        )
        return cursor, [Member(connection, channel, user, info).joined() for connection, user, info in rows]

    def members(self) -> list[Member]:
        """Return the members this process holds."""
        with self._lock:
            return list(self._members.values())

    # The heartbeat -----------------------------------------------------------

    def beat(self) -> None:
        """Retry failed leaves, say this process is alive (one write), and reap the dead."""
        self.beats += 1
        with self._deleting:
            self._write_leaves()
        with self._writing:
            self._keep_alive()
        self.reap()

    def _keep_alive(self) -> None:
        from .models import PresenceProcess

        members = self.members()
        if not members:
            if self._registered:  # nothing to keep alive: one last write, then none while idle
                PresenceProcess.objects.using(self.using).filter(key=self.key).delete()
                self._registered = False
            return
        if not self._alive():
            with transaction.atomic(using=self.using):
                self._register(members)

    def reap(self) -> int:
        """Delete the members of the processes not seen for PRESENCE_TIMEOUT and send their leaves; return how many."""
        from .models import PresenceMember, PresenceProcess
        from .publishing import store_event

        processes = PresenceProcess.objects.using(self.using)
        reaped = 0
        for key in list(processes.filter(seen__lt=self._cutoff()).values_list("key", flat=True)):
            with transaction.atomic(using=self.using):
                # Only the process that deletes the row sends the leaves: a
                # row that another reaper took, or that its process updated
                # meanwhile, is not deleted here.
                if not processes.filter(key=key, seen__lt=self._cutoff()).delete()[0]:
                    continue
                gone = list(PresenceMember.objects.using(self.using).filter(process=key).order_by("joined"))
                PresenceMember.objects.using(self.using).filter(process=key).delete()[0]
                for row in gone:
                    store_event(row.channel, {"connection": row.connection, "user": row.user}, LEAVE, metrics.PRESENCE)
                reaped += len(gone)
        if reaped:
            logger.info("django_realtime presence: %d members of dead processes left", reaped)
        return reaped

    def stop(self) -> None:
        self._stop.set()

    # Inside ----------------------------------------------------------------

    def _cutoff(self) -> Any:
        return Now() - timedelta(seconds=float(realtime_settings.PRESENCE_TIMEOUT))

    def _living(self) -> Any:
        from .models import PresenceProcess

        return PresenceProcess.objects.using(self.using).filter(seen__gte=self._cutoff())

    def _alive(self) -> bool:
        """Update this process's row (the heartbeat's one write); return whether it was there."""
        from .models import PresenceProcess

        return bool(PresenceProcess.objects.using(self.using).filter(key=self.key).update(seen=Now()))

    def _register(self, members: list[Member]) -> None:
        """Write this process's row, and *members*, which join again if it had one (call in a transaction).

        A row gone while the process held members was reaped, with them
        (a database outage longer than PRESENCE_TIMEOUT): they left, and are back.
        """
        from .models import PresenceProcess
        from .publishing import store_event

        PresenceProcess.objects.using(self.using).create(key=self.key, seen=Now())
        self._registered = True
        if members:
            logger.warning("django_realtime presence: this process was taken for dead; its members join again")
            self._insert(members)
            for member in members:
                store_event(member.channel, member.joined(), JOIN, metrics.PRESENCE)

    def _insert(self, members: list[Member]) -> None:
        from .models import PresenceMember

        PresenceMember.objects.using(self.using).bulk_create(
            PresenceMember(
                connection=member.connection,
                process=self.key,
                channel=member.channel,
                user=member.user,
                info_json=member.info_json,
            )
            for member in members
        )

    def _write_joins(self) -> None:
        """Write the queued joins, JOIN_BATCH per transaction (hold ``_writing``); a failed batch's joins fail."""
        from .publishing import store_event

        while True:
            with self._lock:
                batch = list(self._joining.values())[:JOIN_BATCH]
            if not batch:
                return
            try:
                with transaction.atomic(using=self.using):
                    if not self._alive():
                        self._register(self.members())
                    self._insert(batch)
                    for member in batch:
                        store_event(member.channel, member.joined(), JOIN, metrics.PRESENCE)
                    # Held before the commit: a heartbeat that joins this
                    # process's members again must see these or find its row.
                    with self._lock:
                        for member in batch:
                            self._members[member.connection] = self._joining.pop(member.connection)
            except DatabaseError as exc:
                with self._lock:
                    for member in batch:
                        self._joining.pop(member.connection, None)
                        self._members.pop(member.connection, None)
                        self._failed_joins[member.connection] = exc

    def _write_leaves(self) -> None:
        """Write the queued leaves, LEAVE_BATCH per transaction (hold ``_deleting``); raise DatabaseError."""
        from .models import PresenceMember
        from .publishing import store_event

        while True:
            with self._lock:
                batch = list(self._leaving.values())[:LEAVE_BATCH]
            if not batch:
                return
            with transaction.atomic(using=self.using):
                for member in batch:
                    # Gone already if a reaper took this process for dead: it sent the leave.
                    if PresenceMember.objects.using(self.using).filter(connection=member.connection).delete()[0]:
                        store_event(member.channel, member.left(), LEAVE, metrics.PRESENCE)
            with self._lock:
                for member in batch:
                    self._leaving.pop(member.connection, None)

    def _start(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="django-realtime-presence", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        from .db import release_connections

        while True:
            # Never later than PRESENCE_HEARTBEAT, so that PRESENCE_TIMEOUT (twice it at least) holds.
            if self._stop.wait(float(realtime_settings.PRESENCE_HEARTBEAT) * random.uniform(0.8, 1.0)):
                return
            try:
                self.beat()
            except Exception:
                logger.exception("django_realtime presence heartbeat failed; trying again")
            finally:
                release_connections()


_registry: Registry | None = None
_registry_lock = threading.Lock()


def get_registry() -> Registry:
    """Return this process's registry (a forked child gets one of its own)."""
    global _registry
    registry = _registry
    if registry is None or registry.pid != os.getpid():
        with _registry_lock:
            registry = _registry
            if registry is None or registry.pid != os.getpid():
                registry = _registry = Registry(realtime_settings.DATABASE)
    return registry


def reset_registry() -> None:
    """Stop this process's registry and forget its members (their rows stay): for tests."""
    global _registry
    with _registry_lock:
        if _registry is not None:
            _registry.stop()
        _registry = None
