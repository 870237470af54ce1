from django.urls import include, path

from bench.site import probe, views

urlpatterns = [
    path("events/", include("django_realtime.urls")),
    path("bench/publish/", views.publish_event, name="bench-publish"),
    path("bench/ping/", views.ping, name="bench-ping"),
    path("bench/info/", views.info, name="bench-info"),
    path("bench/presence/", probe.presence_stats, name="bench-presence"),
]
