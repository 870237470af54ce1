from django.urls import path

from bench.channels_site import views

urlpatterns = [
    path("bench/publish/", views.publish_event, name="bench-publish"),
    path("bench/stats/", views.stats, name="bench-stats"),
    path("bench/ping/", views.ping, name="bench-ping"),
]
