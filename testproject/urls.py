from django.urls import include, path

from testproject.chat import views

urlpatterns = [
    path("events/", include("django_realtime.urls")),
    path("", views.index, name="index"),
    path("room/<slug:room>/", views.room, name="room"),
    path("room/<slug:room>/send/", views.send, name="send"),
    path("clock/", views.clock, name="clock"),
    path("clock/stream/", views.clock_stream, name="clock-stream"),
]
