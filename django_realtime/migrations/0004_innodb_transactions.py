"""MySQL and MariaDB: the list of InnoDB's open transactions that every process's hub shares (one row)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("django_realtime", "0003_skipped_ids"),
    ]

    operations = [
        migrations.CreateModel(
            name="InnoDBTransactions",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("taken", models.CharField(max_length=20)),
                ("listed", models.TextField()),
                ("answers", models.TextField()),
                ("written", models.DateTimeField()),
            ],
            options={
                "verbose_name_plural": "InnoDB transactions",
            },
        ),
    ]
