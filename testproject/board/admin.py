"""The board's items in the admin: its saves and deletes go through the ORM, so open boards show them live."""

from django.contrib import admin

from .models import Item


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = ["title", "owner"]
    search_fields = ["title"]
    raw_id_fields = ["owner"]  # a site's users are many: no select of them all
