"""The live board's items: each change is broadcast to the open board pages as it commits."""

from django.conf import settings
from django.db import models
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from django_realtime import live

#: Every board page follows this channel: the items, appended, replaced and removed.
ITEMS_CHANNEL = "board:items"
#: And this one, in the same region: the count of all items, updated in place by every change.
TOTAL_CHANNEL = "board:total"
#: Told to refresh on every change: the viewer's own items ("mine") are rendered by each page for itself.
COUNTS_CHANNEL = "board:counts"
#: The DOM id of the count of all items, the same for every viewer: updated, not refreshed.
TOTAL_ID = "board-total"


@live.broadcasts(to=ITEMS_CHANNEL, target="board-items", refreshes=COUNTS_CHANNEL)
class Item(models.Model):
    title = models.CharField(max_length=200)
    #: Who created the item: the signed-in user, or nobody (a guest, the shell, the admin leaving it blank).
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="board_items"
    )

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return self.title


@receiver(post_save, sender=Item, dispatch_uid="board-total-saved")
@receiver(post_delete, sender=Item, dispatch_uid="board-total-deleted")
def broadcast_total(sender, instance, raw=False, created=None, **kwargs):
    """Update every page's count of items, in the transaction of the change (after the item's own action).

    Counted inside the transaction: where writers are serialised (SQLite's
    IMMEDIATE transactions, the demo's default) the count is exact.  Under
    PostgreSQL's READ COMMITTED, two transactions that commit at once may each
    count without the other's row; the next change sends the right number.
    """
    if raw or created is False:
        return  # loaddata is an import, like the item's own action (docs/live.md); an edit counts the same
    live.broadcast("update", TOTAL_CHANNEL, target=TOTAL_ID, html=str(Item.objects.count()))
