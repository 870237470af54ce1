"""The ids of the package's system check messages, as a test sees them."""

from __future__ import annotations

from django.core.checks import run_checks


def realtime_check_ids(*, deploy: bool = False) -> list[str]:
    """Return the sorted ids of django_realtime's check messages (with the deployment checks if *deploy*).

    ``databases=[]``: no database is asked.  Django 6.1 runs the models'
    backend-specific field checks on every connection when none is named,
    and the MySQL backend's first check asks the server for its version: a
    test without access to that database then fails, or not, by the order
    the tests ran in.  The package's own checks look at no database.
    """
    messages = run_checks(include_deployment_checks=deploy, databases=[])
    return sorted(message.id for message in messages if message.id.startswith("django_realtime."))
