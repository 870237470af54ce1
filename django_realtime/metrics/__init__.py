"""Prometheus metrics: cheap calls for the core and the transports, which do nothing while metrics are off.

Metrics are on when ``REALTIME["METRICS"]`` says so (by default: when
``prometheus_client`` can be imported).  The metric objects are made once
per process, in prometheus_client's default registry (so django-prometheus's
``/metrics`` shows them too), or in its multiprocess files when
``PROMETHEUS_MULTIPROC_DIR`` is set (gunicorn's workers).

Every label has a few fixed values: never a channel, a user or an address.
What happens per event per stream (events delivered, bytes written) is
noted in a deque, one append per batch, and added to the counters by the
hub's ticker (at least every quarter of a second) and before each scrape:
a counter's increment takes a lock, and in multiprocess mode writes a file.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from django.core.signals import setting_changed

from ..conf import realtime_settings

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

logger = logging.getLogger("django_realtime")

PREFIX = "django_realtime_"
#: The transports, the ``transport`` label's values.
SSE, WEBSOCKET = "sse", "websocket"
TRANSPORTS = (SSE, WEBSOCKET)
#: Why a connection closed, the ``reason`` label's values.
CLIENT_GONE, SLOW_CLIENT, SERVER_SHUTDOWN, ENDED = "client_gone", "slow_client", "server_shutdown", "ended"
CLOSE_REASONS = (CLIENT_GONE, SLOW_CLIENT, SERVER_SHUTDOWN, ENDED)
#: The statuses a refused connection is counted under (a WebSocket's close codes map to them).
REFUSALS = (400, 403, 429, 503)
#: How an event was stored, the ``path`` label's values.
PUBLISH, ORM, CLIENT, PRESENCE = "publish", "orm", "client", "presence"
PATHS = (PUBLISH, ORM, CLIENT, PRESENCE)
#: Why a stream got a ``reset``, the ``reason`` label's values (the protocol's reasons).
RESET_REASONS = ("expired", "unknown", "late")
#: Bounds of the hub lag histogram, in seconds.
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class Metrics:
    """This process's metric objects, made once (prometheus_client refuses a name registered twice)."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        def name(text: str) -> str:
            return PREFIX + text

        self.open = Gauge(
            name("connections_open"), "Connections open, by transport.", ["transport"], multiprocess_mode="livesum"
        )
        self.opened = Counter(name("connections_opened"), "Connections accepted, by transport.", ["transport"])
        self.closed = Counter(
            name("connections_closed"), "Connections closed, by transport and reason.", ["transport", "reason"]
        )
        self.refused = Counter(
            name("connections_refused"), "Connections refused, by transport and HTTP status.", ["transport", "status"]
        )
        self.published = Counter(name("events_published"), "Events stored in the log, by path.", ["path"])
        self.delivered = Counter(
            name("events_delivered"), "Events handed to the server for a client, by transport.", ["transport"]
        )
        self.bytes = Counter(
            name("bytes_written"),
            "Bytes handed to the server for clients (keepalives too), by transport.",
            ["transport"],
        )
        self.lag = Histogram(
            name("hub_lag_seconds"),
            "Seconds from an event's insert (created) to its arrival in this process's hub.",
            buckets=LAG_BUCKETS,
        )
        self.reads = Counter(name("log_reads"), "Reads of the event log by the hubs' readers.")
        self.rows = Counter(name("log_rows_read"), "Rows the hubs' readers read from the event log.")
        self.read_failures = Counter(name("log_read_failures"), "Reads of the event log by a hub's reader that failed.")
        self.restarts = Counter(name("reader_restarts"), "Hub readers replaced, by reason (hung, ended).", ["reason"])
        self.resets = Counter(name("resets_sent"), "Resets sent to streams, by reason.", ["reason"])
        self.presence = Gauge(
            name("presence_members"), "Presence members held by this process.", multiprocess_mode="livesum"
        )
        self.waiting = Gauge(
            name("publishing_transaction_oldest_age_seconds"),
            "Seconds the hub has waited for the oldest publishing transaction still open (0: none).",
            multiprocess_mode="livemax",
        )
        # Children looked up once: labels() takes a lock and a dict lookup.
        self.open_by = {t: self.open.labels(t) for t in TRANSPORTS}
        self.opened_by = {t: self.opened.labels(t) for t in TRANSPORTS}
        self.delivered_by = {t: self.delivered.labels(t) for t in TRANSPORTS}
        self.bytes_by = {t: self.bytes.labels(t) for t in TRANSPORTS}
        for transport in TRANSPORTS:
            for reason in CLOSE_REASONS:
                self.closed.labels(transport, reason)
            for status in REFUSALS:
                self.refused.labels(transport, str(status))
        for path in PATHS:
            self.published.labels(path)
        for reason in RESET_REASONS:
            self.resets.labels(reason)
        for reason in ("hung", "ended"):
            self.restarts.labels(reason)
        #: (events, bytes) of each batch written, by transport, until flush() counts them.
        self.sent: dict[str, deque[tuple[int, int]]] = {t: deque() for t in TRANSPORTS}
        self._counted: dict[tuple[str, Callable[..., Any]], Callable[..., Any]] = {}

    def flush(self) -> None:
        """Add the batches noted since the last flush to the counters."""
        for transport, sent in self.sent.items():
            events = size = 0
            try:
                while True:
                    count, length = sent.popleft()
                    events += count
                    size += length
            except IndexError:
                pass
            if events:
                self.delivered_by[transport].inc(events)
            if size:
                self.bytes_by[transport].inc(size)


_UNDECIDED: Any = object()
#: This process's metrics while they are on, None while off, _UNDECIDED until the settings are read.
_active: Metrics | None = _UNDECIDED
_made: Metrics | None = None
_made_lock = threading.Lock()


def enabled() -> bool:
    """Return whether metrics are on: ``REALTIME["METRICS"]``, or by default whether prometheus_client is there."""
    setting = realtime_settings.METRICS
    if setting is None:
        return available()
    return bool(setting)


def available() -> bool:
    """Return whether prometheus_client can be imported."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return False
    return True


def active() -> Metrics | None:
    """Return this process's metrics, or None while they are off."""
    metrics = _active
    if metrics is _UNDECIDED:
        metrics = _decide()
    return metrics


def _decide() -> Metrics | None:
    global _active, _made
    if not enabled():
        _active = None
        return None
    if not available():
        # Check django_realtime.E007 says so at start-up; a stream must not fail for it.
        logger.error("django_realtime: REALTIME['METRICS'] is True but prometheus_client is not installed")
        _active = None
        return None
    with _made_lock:
        if _made is None:
            _made = Metrics()
            _warn_if_unshared()
        _active = _made
    return _made


def _warn_if_unshared() -> None:
    software = os.environ.get("SERVER_SOFTWARE", "")
    if software.startswith("gunicorn/") and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        logger.warning(
            "django_realtime metrics under gunicorn without PROMETHEUS_MULTIPROC_DIR: each scrape shows one "
            "worker's figures only (docs/metrics.md)"
        )


def _on_setting_changed(*, setting: str, **kwargs: object) -> None:
    global _active
    if setting == "REALTIME":
        _active = _UNDECIDED


setting_changed.connect(_on_setting_changed)


def registry() -> Any:
    """Return the registry a scrape reads: every process's files in multiprocess mode, else this process's."""
    from prometheus_client import REGISTRY, CollectorRegistry

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        collected = CollectorRegistry()
        multiprocess.MultiProcessCollector(collected)
        return collected
    return REGISTRY


def connections_by_process() -> dict[str, dict[str, float]]:
    """Return the connections open in each process, by transport: every worker's in multiprocess mode."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    metrics = active()
    if metrics is None:
        return {}
    if not directory:
        return {str(os.getpid()): {t: metrics.open_by[t]._value.get() for t in TRANSPORTS}}
    from glob import glob

    from prometheus_client.multiprocess import MultiProcessCollector

    found: dict[str, dict[str, float]] = {}
    # The collector's own reader of the files, which labels each gauge sample with its process.
    read = MultiProcessCollector._read_metrics(glob(os.path.join(directory, "gauge_livesum_*.db")))
    family = read.get(PREFIX + "connections_open")
    for sample in family.samples if family is not None else ():
        labels = dict(sample.labels)
        found.setdefault(labels["pid"], {})[labels["transport"]] = sample.value
    return {pid: counts for pid, counts in found.items() if any(counts.values())}


# What the core and the transports call --------------------------------------


class Connection:
    """One open connection, counted: close() it once with why it closed (the first call counts)."""

    __slots__ = ("metrics", "transport", "reason", "closed")

    def __init__(self, metrics: Metrics | None, transport: str) -> None:
        self.metrics = metrics
        self.transport = transport
        #: Why it closes, unless close() is told otherwise: whoever learns it first sets it.
        self.reason = CLIENT_GONE
        self.closed = metrics is None
        if metrics is not None:
            metrics.opened_by[transport].inc()
            metrics.open_by[transport].inc()

    def close(self, reason: str | None = None) -> None:
        if self.closed:
            return
        self.closed = True
        metrics = self.metrics
        assert metrics is not None  # closed from the start without one
        metrics.open_by[self.transport].dec()
        metrics.closed.labels(self.transport, reason or self.reason).inc()


_UNCOUNTED = Connection(None, SSE)


def opened(transport: str, kind: type[Connection] = Connection) -> Connection:
    """Count a connection accepted on *transport*; return what to close() when it ends: a *kind*, or while
    metrics are off one shared Connection that counts nothing (``closed`` is True)."""
    metrics = active()
    return _UNCOUNTED if metrics is None else kind(metrics, transport)


def refused(transport: str, status: int) -> None:
    """Count a connection refused with *status* (400, 403, 429, 503)."""
    metrics = active()
    if metrics is not None and status in REFUSALS:
        metrics.refused.labels(transport, str(status)).inc()


def counted(transport: str, encode: Callable[[list[Any]], Any]) -> Callable[[list[Any]], Any]:
    """Return *encode* (a batch's encoder), counting each batch it encodes as written on *transport*.

    While metrics are off, *encode* itself: nothing is added to a stream's path.
    """
    metrics = active()
    if metrics is None:
        return encode
    key = (transport, encode)
    wrapped = metrics._counted.get(key)
    if wrapped is None:
        wrapped = metrics._counted[key] = Counted(encode, metrics.sent[transport])
    return wrapped


class Counted:
    """A batch's encoder that counts each batch it encodes as written (``counted()``)."""

    __slots__ = ("encode", "sent")

    def __init__(self, encode: Callable[[list[Any]], Any], sent: deque[tuple[int, int]]) -> None:
        self.encode = encode
        self.sent = sent

    def __call__(self, batch: list[Any]) -> Any:
        chunk = self.encode(batch)
        self.sent.append((len(batch), len(chunk)))
        return chunk

    def again(self, events: int, size: int) -> None:
        """Count a batch of *events* written again, encoded once for several streams (*size* bytes)."""
        self.sent.append((events, size))


def sent(transport: str, events: int, size: int) -> None:
    """Count *events* (and *size* bytes) written on *transport*: for a transport that writes them one by one."""
    metrics = active()
    if metrics is not None:
        metrics.sent[transport].append((events, size))


def flush() -> None:
    """Add what streams wrote since the last flush to the counters (the hub's ticker calls this)."""
    metrics = _active
    if metrics is not None and metrics is not _UNDECIDED:
        metrics.flush()


def published(path: str, count: int = 1) -> None:
    """Count *count* events stored by *path*."""
    metrics = active()
    if metrics is not None:
        metrics.published.labels(path).inc(count)


def reset_sent(reason: str) -> None:
    """Count a reset of *reason* sent to a stream (or stored, for ``late``)."""
    metrics = active()
    if metrics is not None and reason in RESET_REASONS:
        metrics.resets.labels(reason).inc()


def presence_changed(delta: int) -> None:
    """Count *delta* presence members more (or fewer) in this process."""
    metrics = active()
    if metrics is not None:
        metrics.presence.inc(delta)


def log_read(rows: int) -> None:
    """Count a read of the log by a hub's reader that returned *rows* rows."""
    metrics = active()
    if metrics is not None:
        metrics.reads.inc()
        if rows:
            metrics.rows.inc(rows)


def log_read_failed() -> None:
    metrics = active()
    if metrics is not None:
        metrics.read_failures.inc()


def reader_restarted(reason: str) -> None:
    """Count a hub reader replaced: ``hung`` or ``ended``."""
    metrics = active()
    if metrics is not None:
        metrics.restarts.labels(reason).inc()


def waiting_for_publishers(seconds: float | None) -> None:
    """Set the age of the oldest publishing transaction the hub waits for (None: none)."""
    metrics = active()
    if metrics is not None:
        metrics.waiting.set(seconds or 0.0)


def arrived(created: Iterable[object]) -> None:
    """Observe the hub lag of events that arrived in the hub now, from their ``created`` values as read."""
    metrics = active()
    if metrics is None:
        return
    now = time.time()
    observe = metrics.lag.observe
    for value in created:
        stamp = epoch(value)
        if stamp is not None:
            observe(max(0.0, now - stamp))


def epoch(value: object) -> float | None:
    """Return a ``created`` column value as the database driver gives it (datetime, or text on SQLite) as seconds."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    if value.tzinfo is None:
        from django.conf import settings

        if settings.USE_TZ:  # Django stores UTC in a column without a time zone
            value = value.replace(tzinfo=UTC)
    return value.timestamp()


def wants_stamps() -> bool:
    """Return whether the hub's reader should read each row's ``created`` for the lag histogram."""
    return active() is not None
