from django.apps import AppConfig


class BoardConfig(AppConfig):
    name = "testproject.board"
    default_auto_field = "django.db.models.BigAutoField"
