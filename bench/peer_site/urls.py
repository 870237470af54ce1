import django_eventstream
from django.urls import include, path

from bench.peer_site import views

urlpatterns = [
    # Channels from ?channel=, as the benchmark's clients ask for ours.
    path("events/", include(django_eventstream.urls)),
    path("bench/publish/", views.publish_event),
    path("bench/ping/", views.ping),
]
