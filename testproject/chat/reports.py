"""The demo's "generate report" button: a task in another process reports its progress to a live bar.

The task is ``manage.py generate_report`` (management/commands/), started
in a process of its own as a task queue's worker would run it.  A page may
show only the reports its own session started: the session lists them, and
``{% progress_bar %}`` signs the stream URL for that session (docs/progress.md).
"""

import subprocess
import sys
import threading

from django.conf import settings
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from django_realtime.progress import new_task_id

#: How many of its reports a session may open again.
KEPT_REPORTS = 10


def reports(request):
    return render(request, "chat/report.html", {"task": None})


def report(request, task):
    if task not in request.session.get("reports", []):
        raise Http404("No such report")  # another session's, or none: its progress is not this page's to show
    return render(request, "chat/report.html", {"task": task})


@require_POST
def start_report(request):
    """Start a report in a process of its own and show its progress."""
    task = new_task_id()
    command = [sys.executable, str(settings.BASE_DIR / "manage.py"), "generate_report", task]
    if request.POST.get("fail"):
        command.append("--fail")
    request.session["reports"] = [*request.session.get("reports", []), task][-KEPT_REPORTS:]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True)
    threading.Thread(target=process.wait, daemon=True).start()  # reap it when it ends
    return redirect("report", task=task)
