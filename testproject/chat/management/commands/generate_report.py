"""``manage.py generate_report TASK_ID [--fail]``: the demo's slow task, which reports its progress as it goes."""

import os
import time

from django.core.management.base import BaseCommand, CommandError
from django.utils.html import format_html

from django_realtime.exceptions import InvalidProgress
from django_realtime.progress import progress_reporter

#: Seconds each step takes: the tests that drive the demo set it.
STEP_SECONDS = float(os.environ.get("DEMO_REPORT_STEP_SECONDS", "0.6"))
STEPS = 10


class Command(BaseCommand):
    help = "Count some rows slowly, reporting progress to the task's bar; --fail gives up half-way."

    def add_arguments(self, parser):
        parser.add_argument("task_id")
        parser.add_argument("--fail", action="store_true", help="fail half-way, as a task whose source went away")

    def handle(self, task_id, fail, **options):
        try:
            reporter = progress_reporter(task_id, error_message="The report could not be built.")
        except InvalidProgress as exc:
            raise CommandError(str(exc)) from None
        with reporter as progress:
            rows = 0
            for step in range(STEPS):
                progress.report(step / STEPS, f"Counting rows: part {step + 1} of {STEPS}")
                time.sleep(STEP_SECONDS)
                rows += 1234
                if fail and step == STEPS // 2:
                    progress.fail("The data source went away half-way through.")
                    return
            progress.done(format_html("<strong>{}</strong> rows counted.", rows))
