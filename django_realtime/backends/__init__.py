"""Load the wake-up backend named by the ``BACKEND`` setting: one instance per process."""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from ..conf import realtime_settings
from ..exceptions import BackendConfigError

if TYPE_CHECKING:
    from .base import BaseBackend

#: Short names users may type instead of a dotted path.
ALIASES = {
    "inprocess": "django_realtime.backends.inprocess.InProcessBackend",
    "polling": "django_realtime.backends.polling.PollingBackend",
    "postgres": "django_realtime.backends.postgres.PostgresBackend",
    "redis": "django_realtime.backends.redis.RedisBackend",
}

_backend: BaseBackend | None = None
_backend_pid = 0
_lock = threading.Lock()


def load_backend(name: str, options: dict | None = None) -> BaseBackend:
    """Import and instantiate the backend *name* (an alias or a dotted path)."""
    path = ALIASES.get(name, name)
    try:
        cls = import_string(path)
    except ImportError as exc:
        raise BackendConfigError(
            f"REALTIME['BACKEND'] = {name!r} cannot be imported ({exc}); "
            f"use one of {sorted(ALIASES)} or a dotted path to a BaseBackend subclass"
        ) from exc
    return cls(**(options or {}))


def get_backend() -> BaseBackend:
    """Return this process's backend, loading it on first use (and again after a fork)."""
    global _backend, _backend_pid
    with _lock:
        if _backend is None or _backend_pid != os.getpid():
            _backend = load_backend(realtime_settings.BACKEND, realtime_settings.OPTIONS)
            _backend_pid = os.getpid()
        return _backend


def clear_cache() -> None:
    """Forget the loaded backend so the next call re-reads the settings."""
    global _backend
    _backend = None


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "REALTIME":
        clear_cache()


setting_changed.connect(_on_setting_changed)
