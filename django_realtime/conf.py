"""The ``REALTIME`` settings dict, read lazily and re-read on ``setting_changed``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

from .names import channel_pattern_regex

DEFAULTS: dict[str, Any] = {
    # How processes learn of new events: "polling", "inprocess" or a dotted path.
    "BACKEND": "polling",
    # Keyword arguments for the backend class.
    "OPTIONS": {},
    # Database alias that holds the event log.
    "DATABASE": "default",
    # Seconds between two looks at the log by the polling backend.
    "POLL_INTERVAL": 0.25,
    # Seconds a gap in the ids is waited for on databases other than SQLite and PostgreSQL.
    "GAP_TIMEOUT": 5.0,
    # PostgreSQL: seconds a transaction that published may sit idle before the server ends it (None: no bound).
    "PUBLISH_IDLE_TIMEOUT": 60.0,
    # Seconds one query of the hub may take before the hub gives up on it and reads again.
    "READ_TIMEOUT": 10.0,
    # Most database connections one process opens at once for streams that read history from the log.
    "CATCH_UP_CONNECTIONS": 4,
    # Bytes of history all streams of one process that catch up may hold at once (each writes 64 KiB pieces).
    "CATCH_UP_MEMORY": 16 * 1024 * 1024,
    # Seconds {% realtime_cursor %} waits for publishing transactions in flight (then an older cursor).
    "CURSOR_TIMEOUT": 1.0,
    # Seconds of silence after which a stream sends a keepalive comment.
    "KEEPALIVE": 15.0,
    # Reconnection delay sent to EventSource clients, in milliseconds.
    "RETRY": 3000,
    # Most milliseconds of the retry: a stream ends with at server shutdown; each draws its own from 0 up.
    "SHUTDOWN_RETRY": 1000,
    # Most streams (SSE and WebSocket) one process serves at once (None: no limit); past it, 503 or 4002.
    "MAX_STREAMS": 1000,
    # Seconds a write to an SSE client may block before the connection is cut (None: never).
    "SSE_SEND_TIMEOUT": 30.0,
    # Seconds after which an SSE stream ends, for its client to reconnect and resume (None: never).
    "SSE_MAX_LIFETIME": None,
    # Most channels one SSE connection may subscribe to.
    "MAX_CHANNELS": 16,
    # Largest event data, in bytes of JSON text.
    "MAX_DATA_SIZE": 256 * 1024,
    # Events each process keeps in memory for live delivery and quick resumes.
    "BUFFER_SIZE": 2000,
    # ...and at most this many bytes of them (JSON and SSE text).
    "BUFFER_BYTES": 32 * 1024 * 1024,
    # Retention: drop events older than this (a timedelta or seconds; None keeps all).
    "MAX_AGE": timedelta(days=7),
    # Retention: keep at most this many events per channel (None keeps all).
    "MAX_EVENTS_PER_CHANNEL": 10_000,
    # Retention per channel pattern: {fnmatch pattern: {"MAX_AGE": ..., "MAX_EVENTS_PER_CHANNEL": ...}};
    # the first pattern that matches a channel rules it, a key left out is the setting's.
    "RETENTION": {},
    # Seconds between two automatic prunes by each process's hub (None: only prune_events).
    "PRUNE_INTERVAL": 600,
    # Dotted path to callable(user, channel, action) -> bool.
    "AUTHORIZE": "django_realtime.auth.authorize",
    # fnmatch patterns of channels anyone may subscribe to, for the default AUTHORIZE.
    "PUBLIC_CHANNELS": [],
    # fnmatch patterns of channels any WebSocket client may publish to, for the default AUTHORIZE.
    "PUBLISH_CHANNELS": [],
    # fnmatch patterns of channels anyone may join the presence of, for the default AUTHORIZE.
    "PRESENCE_CHANNELS": [],
    # Prefixes of pair channels "<prefix>:<pkA>-<pkB>" only users pkA and pkB may use, for the default AUTHORIZE.
    "PAIR_CHANNELS": [],
    # Dotted path to callable(user, channel, name) -> the identity a connection is present as.
    "PRESENCE_IDENTITY": "django_realtime.presence.identify",
    # Seconds between two heartbeats of a process that holds presence members (one write each).
    "PRESENCE_HEARTBEAT": 15.0,
    # Seconds without a heartbeat after which a process's members leave: it is taken to have died.
    "PRESENCE_TIMEOUT": 45.0,
    # Largest public info of a presence member, in bytes of JSON text.
    "PRESENCE_MAX_INFO": 1024,
    # WebSockets: largest client message, in bytes of UTF-8 (larger ones get a too_large error).
    "WEBSOCKET_MAX_MESSAGE_SIZE": 64 * 1024,
    # Publishes per second one client (a user, else an address) may make on average, over WebSockets
    # and the publish endpoint together (None: no limit).
    "WEBSOCKET_PUBLISH_RATE": 10.0,
    # ...and in a burst.
    "WEBSOCKET_PUBLISH_BURST": 20,
    # Presence joins, leaves and lookups per second one client may make on average (None: no limit).
    "PRESENCE_RATE": 2.0,
    # ...and in a burst.
    "PRESENCE_BURST": 30,
    # The request header your proxy puts the client's address in (its last address counts), for the
    # rate limits of anonymous clients; None: the connection's own address (REMOTE_ADDR, the ASGI client).
    "CLIENT_ADDRESS_HEADER": None,
    # WebSockets: characters of messages queued for one connection, beyond the server's own buffer.
    "WEBSOCKET_SEND_BUFFER": 256 * 1024,
    # WebSockets: seconds that queue may stay full before the connection is closed with 4000.
    "WEBSOCKET_SEND_TIMEOUT": 10.0,
    # WebSockets: seconds after which a connection is closed with 4001 to be reopened (None: never).
    "WEBSOCKET_MAX_LIFETIME": None,
    # Prometheus metrics (docs/metrics.md): True, False, or None: on when prometheus_client is installed.
    "METRICS": None,
    # A bearer token that may read the metrics view, besides staff users (None: staff only).
    "METRICS_TOKEN": None,
    # Whether pages are told the site serves WebSockets (None: inferred from ASGI_APPLICATION and the server).
    "WEBSOCKETS": None,
}


def _age(name: str, value: Any) -> timedelta | None:
    """Return a retention age as a timedelta: given as one, as seconds, or None."""
    if value is None or isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return timedelta(seconds=value)
    raise ImproperlyConfigured(f"REALTIME {name} must be a timedelta, seconds or None, not {value!r}")


def _retention(merged: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Check REALTIME["RETENTION"] and fill each rule's missing keys from MAX_AGE and MAX_EVENTS_PER_CHANNEL."""
    given = merged["RETENTION"]
    if not isinstance(given, dict):
        raise ImproperlyConfigured(f"REALTIME RETENTION must be a dict of channel patterns, not {given!r}")
    rules = {}
    for pattern, rule in given.items():
        where = f"REALTIME RETENTION[{pattern!r}]"
        if not isinstance(pattern, str) or not pattern:
            raise ImproperlyConfigured(f"REALTIME RETENTION keys must be channel patterns, not {pattern!r}")
        try:
            # Here rather than at each prune: a pattern the database cannot read made every prune fail.
            channel_pattern_regex(pattern)
        except ValueError as exc:
            raise ImproperlyConfigured(f"{where} is not a channel pattern django_realtime can match: {exc}") from None
        if not isinstance(rule, dict) or set(rule) - {"MAX_AGE", "MAX_EVENTS_PER_CHANNEL"}:
            raise ImproperlyConfigured(f"{where} must be a dict with MAX_AGE and/or MAX_EVENTS_PER_CHANNEL")
        keep = rule.get("MAX_EVENTS_PER_CHANNEL", merged["MAX_EVENTS_PER_CHANNEL"])
        if keep is not None and (not isinstance(keep, int) or isinstance(keep, bool) or keep < 0):
            raise ImproperlyConfigured(f"{where} MAX_EVENTS_PER_CHANNEL must be 0 or more, or None, not {keep!r}")
        rules[pattern] = {
            "MAX_AGE": _age(f"RETENTION[{pattern!r}] MAX_AGE", rule.get("MAX_AGE", merged["MAX_AGE"])),
            "MAX_EVENTS_PER_CHANNEL": keep,
        }
    return rules


def _check_presence(merged: dict[str, Any]) -> None:
    """Check that a live process's heartbeats always come before it would be taken for dead."""
    beat, timeout = merged["PRESENCE_HEARTBEAT"], merged["PRESENCE_TIMEOUT"]
    for name, value in (("PRESENCE_HEARTBEAT", beat), ("PRESENCE_TIMEOUT", timeout)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            raise ImproperlyConfigured(f"REALTIME {name} must be a number of seconds above 0, not {value!r}")
    if timeout < 2 * beat:
        raise ImproperlyConfigured(
            f"REALTIME PRESENCE_TIMEOUT ({timeout:g}) must be at least twice PRESENCE_HEARTBEAT ({beat:g}): "
            "else one late heartbeat makes a live process's members leave"
        )


def _check_metrics(merged: dict[str, Any]) -> None:
    """Check METRICS and METRICS_TOKEN: a token anyone could guess or mistype would open the metrics view."""
    if not any(merged["METRICS"] is value for value in (None, True, False)):
        raise ImproperlyConfigured(f"REALTIME METRICS must be True, False or None, not {merged['METRICS']!r}")
    token = merged["METRICS_TOKEN"]
    if token is not None and not (isinstance(token, str) and len(token) >= 16 and all("!" <= c <= "~" for c in token)):
        raise ImproperlyConfigured(
            "REALTIME METRICS_TOKEN must be None or a string of 16 or more printable ASCII characters, no spaces"
        )


class RealtimeSettings:
    """Attribute access to ``settings.REALTIME`` over DEFAULTS."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        user = getattr(settings, "REALTIME", {})
        unknown = set(user) - set(DEFAULTS)
        if unknown:
            raise ImproperlyConfigured(
                f"REALTIME has unknown keys {sorted(unknown)}; known keys are {sorted(DEFAULTS)}"
            )
        merged = {**DEFAULTS, **user}
        merged["MAX_AGE"] = _age("MAX_AGE", merged["MAX_AGE"])
        merged["RETENTION"] = _retention(merged)
        _check_presence(merged)
        _check_metrics(merged)
        shutdown_retry = merged["SHUTDOWN_RETRY"]
        if not isinstance(shutdown_retry, int) or isinstance(shutdown_retry, bool) or shutdown_retry < 0:
            raise ImproperlyConfigured(
                f"REALTIME SHUTDOWN_RETRY must be 0 or more milliseconds, not {shutdown_retry!r}"
            )
        return merged

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(name)
        if self._cache is None:
            self._cache = self._load()
        return self._cache[name]

    def clear(self) -> None:
        self._cache = None


realtime_settings = RealtimeSettings()


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "REALTIME":
        realtime_settings.clear()


setting_changed.connect(_on_setting_changed)
