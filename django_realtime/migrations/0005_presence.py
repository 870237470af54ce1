"""Presence: the processes that hold members, and the members (django_realtime.presence)."""

import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('django_realtime', '0004_innodb_transactions'),
    ]

    operations = [
        migrations.CreateModel(
            name='PresenceProcess',
            fields=[
                ('key', models.CharField(max_length=32, primary_key=True, serialize=False)),
                ('seen', models.DateTimeField(db_index=True)),
            ],
        ),
        migrations.CreateModel(
            name='PresenceMember',
            fields=[
                ('connection', models.CharField(max_length=32, primary_key=True, serialize=False)),
                ('process', models.CharField(db_index=True, max_length=32)),
                ('channel', models.CharField(max_length=200)),
                ('user', models.CharField(max_length=150)),
                ('info_json', models.TextField(db_column='info', default='{}')),
                ('joined', models.DateTimeField(default=django.utils.timezone.now)),
            ],
            options={
                'indexes': [models.Index(fields=['channel', 'joined'], name='django_realtime_presence_ch')],
            },
        ),
    ]
