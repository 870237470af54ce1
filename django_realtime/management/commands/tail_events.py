"""``manage.py tail_events``: print a channel's events as they arrive."""

from django.core.management.base import BaseCommand, CommandError

from django_realtime.eventlog import Item
from django_realtime.hub import get_hub
from django_realtime.names import parse_cursor, validate_channel
from django_realtime.streams import follow


class Command(BaseCommand):
    help = "Print events of the given channels as they arrive, one per line: CURSOR CHANNEL EVENT DATA."

    def add_arguments(self, parser):
        parser.add_argument("channels", nargs="+", metavar="channel")
        parser.add_argument("--since", help="first print the stored events after this id (or cursor, as printed)")

    def handle(self, *args, channels, since, **options):
        try:
            names = frozenset(validate_channel(name) for name in channels)
            cursor = parse_cursor(since) if since is not None else None
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        hub = get_hub()
        if not hub.ensure_ready():
            raise CommandError(f"the event log cannot be read: {hub.error}")
        try:
            batch: list[Item]
            item: Item
            for batch in follow(hub, names, cursor, keepalive=60.0):
                for item in batch:
                    # The cursor: the event's id, or more while transactions are in flight (--since takes it).
                    self.stdout.write(f"{item.cursor_text} {item.channel or '-'} {item.event} {item.data_json}")
                self.stdout.flush()
        except KeyboardInterrupt:
            pass
        finally:
            hub.stop()
