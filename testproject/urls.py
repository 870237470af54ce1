from django.contrib import admin
from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import include, path

from testproject.board import views as board
from testproject.chat import calls, reports, views

urlpatterns = [
    path("events/", include("django_realtime.urls")),
    path("admin/", admin.site.urls),
    path("", views.index, name="index"),
    path("room/", views.join, name="join"),
    path("room/<slug:room>/", views.room, name="room"),
    path("room/<slug:room>/send/", views.send, name="send"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("dashboard/click/", views.click, name="click"),
    path("clock/", views.clock, name="clock"),
    path("clock/stream/", views.clock_stream, name="clock-stream"),
    path("ticker/", views.ticker, name="ticker"),
    path("ticker/post/", views.ticker_post, name="ticker-post"),
    path("report/", reports.reports, name="reports"),
    path("report/start/", reports.start_report, name="report-start"),
    path("report/<slug:task>/", reports.report, name="report"),
    path("board/", board.board, name="board"),
    path("board/plain/", board.board_plain, name="board-plain"),
    path("board/items/", board.create, name="board-create"),
    path("board/items/<int:pk>/", board.edit, name="board-edit"),
    path("board/items/<int:pk>/delete/", board.delete, name="board-delete"),
    path("call/<int:peer>/", calls.call, name="call"),
    path("sign-in/", calls.sign_in, name="sign-in"),
    path("sign-out/", calls.sign_out, name="sign-out"),
]
# runserver serves static files itself; this serves them under gunicorn too, with DEBUG on only.
urlpatterns += staticfiles_urlpatterns()
