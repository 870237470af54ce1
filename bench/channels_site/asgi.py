"""ASGI entry point: ``daphne bench.channels_site.asgi:application``, the WebSockets at /ws/.

The same stack in front of the consumer as the demo's: origin check, then
cookies, sessions and auth (``AuthMiddlewareStack``).
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.channels_site.settings")
http_application = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import path  # noqa: E402

from bench.channels_site.consumers import BroadcastConsumer  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": http_application,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter([path("ws/", BroadcastConsumer.as_asgi())]))
        ),
    }
)
