"""A GZipMiddleware that lets event streams through uncompressed."""

from django.middleware.gzip import GZipMiddleware as DjangoGZipMiddleware


class GZipMiddleware(DjangoGZipMiddleware):
    """Django's GZipMiddleware, except for ``text/event-stream`` responses.

    Django's compresses a stream into a buffer that it flushes only now and
    then, which holds events back; use this one in its place in MIDDLEWARE.
    """

    def process_response(self, request, response):
        if response.get("Content-Type", "").startswith("text/event-stream"):
            return response
        return super().process_response(request, response)
