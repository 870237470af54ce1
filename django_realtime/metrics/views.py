"""The metrics view: Prometheus' text format, for staff users and for the holder of ``METRICS_TOKEN``."""

from __future__ import annotations

import hmac

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from ..conf import realtime_settings
from . import active, flush, registry

#: What a refused scraper is told: no more (which setting, which user) than that it may not.
FORBIDDEN = "Metrics are for staff users, or a scraper with the METRICS_TOKEN bearer token.\n"


def allowed(request: HttpRequest) -> bool:
    """Return whether *request* may read the metrics: an active staff user, or ``Authorization: Bearer <token>``."""
    token = realtime_settings.METRICS_TOKEN
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if token and header.startswith("Bearer "):
        # Compared in constant time: the token is a password.
        return hmac.compare_digest(header[len("Bearer ") :].encode(), token.encode())
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_active and user.is_staff)


@require_GET
def metrics(request: HttpRequest, **url_kwargs: object) -> HttpResponse:
    """Serve this deployment's metrics in Prometheus' text format (every worker's, in multiprocess mode).

    403 unless :func:`allowed`; 404 while metrics are off.  *url_kwargs* are
    an ``include()``'s extra arguments, as for the health check.
    """
    if not allowed(request):
        return HttpResponse(FORBIDDEN, status=403, content_type="text/plain; charset=utf-8")
    if active() is None:
        return HttpResponse("Metrics are off (REALTIME['METRICS']).\n", status=404, content_type="text/plain")
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    flush()  # this process's last batches; the other workers' tickers flush theirs
    response = HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)
    response["Cache-Control"] = "no-store"
    return response
