"""The live board's items: each change is broadcast to the open board pages as it commits."""

from django.db import models

from django_realtime import live

#: Every board page follows this channel: the items, appended, replaced and removed.
ITEMS_CHANNEL = "board:items"
#: Told to refresh on every change: the per-viewer counts ("mine") are rendered by each page for itself.
COUNTS_CHANNEL = "board:counts"


@live.broadcasts(to=ITEMS_CHANNEL, target="board-items", refreshes=COUNTS_CHANNEL)
class Item(models.Model):
    title = models.CharField(max_length=200)
    owner = models.CharField(max_length=40, blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return self.title
