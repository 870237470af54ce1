"""``manage.py publish_event``: publish from a shell, a script or cron."""

import json
import sys

from django.core.management.base import BaseCommand, CommandError

from django_realtime import publish


class Command(BaseCommand):
    help = "Publish an event to a channel and print its id. With --stdin, publish one JSON document per line."

    def create_parser(self, prog_name, subcommand, **kwargs):
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        # Let options stand between the arguments: publish_event CH --event E '{"a": 1}'.
        parser.parse_args = parser.parse_intermixed_args  # type: ignore[method-assign]
        return parser

    def add_arguments(self, parser):
        parser.add_argument("channel", help="the channel to publish to, e.g. chat:lobby")
        parser.add_argument("data", nargs="?", help="the event's data as JSON (default: null)")
        parser.add_argument("--event", default="message", help="the event name (default: message)")
        parser.add_argument("--stdin", action="store_true", help="read one JSON document per line from standard input")

    def handle(self, *args, channel, data, event, stdin, **options):
        if stdin and data is not None:
            raise CommandError("give the data either as an argument or with --stdin, not both")
        if not stdin:
            self._publish(channel, self._decode(data if data is not None else "null", "the data argument"), event)
            return
        for number, line in enumerate(sys.stdin, start=1):
            if line.strip():
                self._publish(channel, self._decode(line, f"line {number}"), event, where=f"line {number}: ")

    def _decode(self, text, where):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise CommandError(f"{where} is not valid JSON: {exc}") from exc
        except RecursionError:
            raise CommandError(f"{where} is nested too deeply") from None

    def _publish(self, channel, value, event, where=""):
        try:
            stored = publish(channel, value, event=event)
        except ValueError as exc:
            raise CommandError(f"{where}{exc}") from exc
        self.stdout.write(str(stored.id))
        self.stdout.flush()
