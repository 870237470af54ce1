"""Include with ``path("events/", include("django_realtime.urls"))``."""

from django.urls import path

from .metrics import views as metrics
from .sse import progress, publish, status, views

app_name = "django_realtime"
urlpatterns = [
    path("", views.events, name="events"),
    path("health/", views.health, name="health"),
    path("presence/", views.presence, name="presence"),
    path("publish/", publish.publish, name="publish"),
    path("progress/<str:token>/", progress.progress_events, name="progress"),
    path("metrics/", metrics.metrics, name="metrics"),
    path("status/", status.status, name="status"),
]
