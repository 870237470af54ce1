"""Whether a GET that changes state on the server (a stream with ``?presence=``) comes from a page you trust.

A GET carries the visitor's cookies from any site that links to it or opens
an ``EventSource`` on it (``SameSite=Lax`` sends them on a top-level
navigation, ``SameSite=None`` on everything), so a stream that joins a
channel's presence would make the visitor present, under their own name,
wherever another site tells their browser to.  Browsers say where a request
comes from: ``Sec-Fetch-Site`` (Fetch Metadata, every current browser) and
``Origin`` (sent on every cross-origin ``EventSource`` and ``fetch``, never
on a navigation GET).  A request is trusted when it is same-origin, or when
its ``Origin`` is the site's own or one of ``CSRF_TRUSTED_ORIGINS`` or
django-cors-headers' ``CORS_ALLOWED_ORIGINS``; a request that carries
neither header is not a browser's cross-site request (a script, or a
browser too old to say: docs/security.md) and is trusted too.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest
from django.utils.http import is_same_domain

#: ``Sec-Fetch-Site`` values of a request that a page of this origin made, or the visitor typed.
SAME_ORIGIN = ("same-origin", "none")


def trusted_origins() -> list[str]:
    """Return the origins the project trusts with state-changing requests, besides its own."""
    return [*getattr(settings, "CSRF_TRUSTED_ORIGINS", []), *getattr(settings, "CORS_ALLOWED_ORIGINS", [])]


def origin_is_trusted(origin: str, request: HttpRequest) -> bool:
    """Return whether *origin* is this site's, or matches a trusted origin (``https://*.example.com`` too)."""
    if origin == "null":
        return False
    if origin == f"{request.scheme}://{request.get_host()}":
        return True
    parts = urlsplit(origin)
    for trusted in trusted_origins():
        allowed = urlsplit(trusted)
        if allowed.scheme != parts.scheme:
            continue
        if trusted == origin:
            return True
        # A wildcard, as Django's CSRF check reads CSRF_TRUSTED_ORIGINS: "https://*.example.com".
        if allowed.netloc.startswith("*") and is_same_domain(parts.netloc, allowed.netloc[1:]):
            return True
    return False


def from_trusted_page(request: HttpRequest) -> bool:
    """Return whether *request* comes from a page of this site, a trusted origin, or no browser page at all."""
    site = request.META.get("HTTP_SEC_FETCH_SITE")
    origin = request.META.get("HTTP_ORIGIN")
    if site in SAME_ORIGIN:
        return True
    if origin is None:
        # Cross-site or same-site with no Origin: a navigation (a link, a form, an
        # image) from another site.  Neither header: not a browser's cross-site request.
        return site is None
    return origin_is_trusted(origin, request)
