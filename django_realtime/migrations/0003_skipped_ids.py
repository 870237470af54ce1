"""The runs of event ids a hub stepped over after GAP_TIMEOUT, on databases with no commit-order rule."""

import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("django_realtime", "0002_lock_before_id"),
    ]

    operations = [
        migrations.CreateModel(
            name="SkippedIds",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("first", models.BigIntegerField()),
                ("last", models.BigIntegerField(db_index=True)),
                ("recorded", models.DateTimeField(default=django.utils.timezone.now)),
            ],
        ),
    ]
