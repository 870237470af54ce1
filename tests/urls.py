"""URLs for view tests: the demo's, plus channels fixed by the URLconf and a custom view."""

from django.urls import include, path

from django_realtime import stream_channels
from django_realtime.sse.views import events
from testproject.urls import urlpatterns as demo_urlpatterns


def mine(request):
    return stream_channels(request, ["private:mine"])


urlpatterns = [
    *demo_urlpatterns,
    path("news/", events, {"channels": ["news", "alerts"]}),
    path("mine/", mine),
    path("included/", include("django_realtime.urls"), {"channels": ["news"]}),
]
