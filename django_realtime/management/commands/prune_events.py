"""``manage.py prune_events``: apply retention now."""

import re
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from django_realtime.names import validate_channel
from django_realtime.retention import COUNT_GRACE, prune

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_DURATION = re.compile(r"(\d+)([smhdw]?)\Z")


def parse_duration(text):
    """Parse ``90``, ``45s``, ``30m``, ``12h``, ``7d`` or ``2w`` into a timedelta."""
    match = _DURATION.match(text.strip())
    if not match:
        raise CommandError(f"--older-than must look like 90, 45s, 30m, 12h, 7d or 2w, not {text!r}")
    number, unit = match.groups()
    return timedelta(**{_UNITS[unit or "s"]: int(number)})


class Command(BaseCommand):
    help = "Delete events older than a duration or beyond the newest N per channel (default: the settings)."

    def add_arguments(self, parser):
        parser.add_argument("--older-than", help="delete events older than this: 90, 45s, 30m, 12h, 7d or 2w")
        parser.add_argument("--keep", type=int, help="keep only the newest N events of each channel")
        parser.add_argument("--channel", help="prune this channel only")
        parser.add_argument(
            "--grace",
            type=float,
            default=COUNT_GRACE,
            help=f"spare events younger than this many seconds from --keep (default {COUNT_GRACE:g}: "
            "every process's hub has read them by then)",
        )

    def handle(self, *args, older_than, keep, channel, grace, **options):
        if keep is not None and keep < 0:
            raise CommandError("--keep must be 0 or more")
        if grace < 0:
            raise CommandError("--grace must be 0 or more")
        if channel is not None:
            try:
                validate_channel(channel)
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
        kwargs = {"channel": channel, "grace": grace}
        if older_than is not None or keep is not None:
            kwargs["older_than"] = parse_duration(older_than) if older_than is not None else None
            kwargs["keep"] = keep
        deleted = prune(**kwargs)
        total = deleted["by_age"] + deleted["by_count"]
        self.stdout.write(
            f"Deleted {total} events ({deleted['by_age']} by age, {deleted['by_count']} by count per channel)."
        )
