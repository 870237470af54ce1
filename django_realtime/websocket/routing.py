"""WebSocket URLs: ``URLRouter(django_realtime.websocket.routing.websocket_urlpatterns)`` serves ``/ws/``.

To serve the endpoint elsewhere, route to the consumer yourself::

    URLRouter([path("live/", RealtimeConsumer.as_asgi())])
"""

from django.urls import path

from .consumer import RealtimeConsumer

websocket_urlpatterns = [path("ws/", RealtimeConsumer.as_asgi(), name="realtime-websocket")]
