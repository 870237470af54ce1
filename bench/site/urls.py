from django.urls import include, path

from bench.site import views

urlpatterns = [
    path("events/", include("django_realtime.urls")),
    path("bench/publish/", views.publish_event, name="bench-publish"),
    path("bench/ping/", views.ping, name="bench-ping"),
    path("bench/info/", views.info, name="bench-info"),
]
