"""What the worker's presence does, counted inside it: for ``bench.presence`` (``BENCH_PRESENCE_PROBE=1``).

:func:`install` (called by ``bench.site.wsgi`` when the variable is set)
counts every SQL statement the process runs, by verb and first
``django_realtime_*`` table named, apart for those its presence heartbeat
runs; and times each heartbeat (``Registry.beat``): wall time and the
process's CPU time, which under gevent is the beat's own while nothing else
runs (idle streams).  ``GET /bench/presence/`` answers the counts.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from typing import Any

from django.http import JsonResponse

_TABLE = re.compile(r'"(django_realtime_[a-z_]+)"')

_installed = False
_lock = threading.Lock()
#: "VERB table" -> statements, outside and inside heartbeats.
_statements: Counter[str] = Counter()
_beat_statements: Counter[str] = Counter()
#: Database connections opened, outside and inside heartbeats.
_connects = Counter()
#: One (wall seconds, CPU seconds) per heartbeat.
_beats: list[tuple[float, float]] = []
#: Set in the heartbeat's greenlet (a thread-local is greenlet-local under gevent's patching).
_local = threading.local()


def _key(sql: str) -> str:
    verb = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else "?"
    table = _TABLE.search(sql)
    return f"{verb} {table.group(1) if table else '-'}"


def _count(execute, sql, params, many, context):  # noqa: ANN001, ANN202 (Django's execute_wrapper signature)
    counter = _beat_statements if getattr(_local, "in_beat", False) else _statements
    with _lock:
        counter[_key(sql)] += 1
    return execute(sql, params, many, context)


def _connected(sender: Any, connection: Any, **kwargs: Any) -> None:
    with _lock:
        _connects["beat" if getattr(_local, "in_beat", False) else "other"] += 1
    if _count not in connection.execute_wrappers:
        connection.execute_wrappers.append(_count)


def install() -> None:
    """Count statements and time heartbeats in this process, from now on."""
    global _installed
    if _installed:
        return
    from django.db.backends.signals import connection_created

    from django_realtime.presence import Registry

    connection_created.connect(_connected, weak=False)
    beat = Registry.beat

    def timed_beat(self: Registry) -> None:
        _local.in_beat = True
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            beat(self)
        finally:
            _local.in_beat = False
            with _lock:
                _beats.append((time.perf_counter() - wall, time.process_time() - cpu))

    Registry.beat = timed_beat
    _installed = True


def presence_stats(request) -> JsonResponse:  # noqa: ANN001
    """Answer the counts so far, this process's members and open streams."""
    from django_realtime.hub import get_hub
    from django_realtime.presence import get_registry

    registry = get_registry()
    with _lock:
        body = {
            "installed": _installed,
            "statements": dict(_statements),
            "beat_statements": dict(_beat_statements),
            "connects": dict(_connects),
            "beats": list(_beats),
        }
    with registry._lock:
        body["members"] = len(registry._members)
        body["leaving"] = len(registry._leaving)
    body["streams"] = get_hub().seats.taken
    return JsonResponse(body)
