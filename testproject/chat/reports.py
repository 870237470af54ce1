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
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from django_realtime.progress import new_task_id

#: How many of its reports a session may open again.
KEPT_REPORTS = 10
#: Reports running at once in this server process: each is a process, and anyone may press the button.
MAX_RUNNING = 4
_running: set[subprocess.Popen] = set()
_lock = threading.Lock()


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
    with _lock:
        if len(_running) >= MAX_RUNNING:
            response = HttpResponse("Too many reports are running; try again in a few seconds.\n", status=503)
            response["Retry-After"] = "5"
            return response
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True)
        _running.add(process)
    threading.Thread(target=_reap, args=(process,), daemon=True).start()
    request.session["reports"] = [*request.session.get("reports", []), task][-KEPT_REPORTS:]
    return redirect("report", task=task)


def _reap(process):
    """Wait for a report's process to end, and count it out."""
    process.wait()
    with _lock:
        _running.discard(process)
