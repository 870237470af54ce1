"""HTTP/1.1 chunked framing of a stream's chunk, made once for every stream a wake-up writes it to.

No Django here: the package's gunicorn worker imports it before Django is set up.
"""

from __future__ import annotations


def framed(shared: dict[object, object], chunk: bytes) -> bytes:
    """Return *chunk* as one HTTP/1.1 chunk (RFC 9112, section 7.1), made once per *shared* dict.

    *shared* is the dict of one wake-up of a group of parked streams
    (``hub.Parked.wake``): the streams at the same place write the same
    chunk, and the first that frames it frames it for all.
    """
    data = shared.get(chunk)
    if data is None:
        data = shared[chunk] = b"%X\r\n%s\r\n" % (len(chunk), chunk)
    return data  # type: ignore[return-value]
