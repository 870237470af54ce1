"""System checks, one module per concern; importing the package registers them all (``AppConfig.ready()``).

- ``settings``: the ``REALTIME`` settings are valid and what they name loads (E001-E003, E010);
- ``backends``: the backend suits the log's database and the deployment (E004-E006, W002, W004);
- ``middleware``: compression middleware that holds streams back (W001, W005);
- ``servers``: how gunicorn serves the streams, at ``--deploy`` (W003, W006, W010);
- ``live``: live models that render later (E007).

docs/checks.md describes each id.
"""

from .backends import check_backend_fits, check_listener_behind_pooler
from .live import check_render_later
from .middleware import BUFFERING_MIDDLEWARE, check_compression_middleware
from .servers import check_metrics_multiprocess, check_stream_worker, check_worker_connections
from .settings import check_metrics, check_settings

__all__ = [
    "BUFFERING_MIDDLEWARE",
    "check_backend_fits",
    "check_compression_middleware",
    "check_listener_behind_pooler",
    "check_metrics",
    "check_metrics_multiprocess",
    "check_render_later",
    "check_settings",
    "check_stream_worker",
    "check_worker_connections",
]
