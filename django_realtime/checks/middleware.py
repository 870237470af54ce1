"""Checks of MIDDLEWARE: compression that holds event streams back (W001, W005)."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Warning, register
from django.utils.module_loading import import_string

#: Middleware that compresses a stream into a buffer it sends only when it fills (Django's
#: compress_sequence, and django-compression-middleware's zstd and brotli streams alike): a
#: browser gets no event until then.  Under ASGI, Django's compresses each chunk as a gzip
#: member of its own instead, and Chromium decodes the first member only.
BUFFERING_MIDDLEWARE = {
    "django.middleware.gzip.GZipMiddleware": (
        "django_realtime.W001",
        "compresses event streams as Django's GZipMiddleware does",
        "Use 'django_realtime.sse.middleware.GZipMiddleware' in its place.",
    ),
    "compression_middleware.middleware.CompressionMiddleware": (
        "django_realtime.W005",
        "compresses event streams as django-compression-middleware does (zstd, brotli or gzip)",
        "Remove it, or subclass it to return text/event-stream responses unchanged, as "
        "django_realtime.sse.middleware.GZipMiddleware does for Django's.",
    ),
}


@register()
def check_compression_middleware(app_configs, **kwargs):
    """Warn about middleware that holds event streams back: it, or a subclass that compresses as it does."""
    warnings = []
    for path in settings.MIDDLEWARE:
        base = _buffering_base(path)
        if base is not None:
            check_id, what, hint = BUFFERING_MIDDLEWARE[base]
            warnings.append(
                Warning(
                    f"{path!r} in MIDDLEWARE {what}: it holds events back until its buffer fills, or for good.",
                    hint=hint,
                    id=check_id,
                )
            )
    return warnings


def _buffering_base(path: str) -> str | None:
    """Return the entry of BUFFERING_MIDDLEWARE whose compression the middleware *path* keeps, if any."""
    if path in BUFFERING_MIDDLEWARE:
        return path
    try:
        middleware = import_string(path)
    except ImportError:  # Django reports it when it loads the middleware
        return None
    for base_path in BUFFERING_MIDDLEWARE:
        try:
            base = import_string(base_path)
        except ImportError:  # not installed, so nothing subclasses it
            continue
        # A subclass that keeps the base's process_response compresses streams as it does.
        if isinstance(middleware, type) and issubclass(middleware, base):
            if getattr(middleware, "process_response", None) is base.process_response:
                return base_path
    return None
