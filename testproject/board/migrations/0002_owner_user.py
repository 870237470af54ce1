from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    """The owner becomes the user who created the item (it was a name typed in); the old names are dropped."""

    dependencies = [
        ("board", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveField(model_name="item", name="owner"),
        migrations.AddField(
            model_name="item",
            name="owner",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=models.deletion.SET_NULL,
                related_name="board_items",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
    ]
