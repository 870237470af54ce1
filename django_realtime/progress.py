"""Live task progress: report ``(fraction, message)`` from a task, show a bar that follows it (docs/progress.md).

A task's progress goes to a channel of its own, ``progress:<key>``, where
the key is an HMAC of the task's id under ``SECRET_KEY``: a task id seen in
a log or a URL does not name the channel.  Each change is one event whose
data is the bar's HTML, rendered once here: a page swaps it in as it is
(htmx's SSE extension), and a page rendered later shows the newest one.
The page follows the channel through a stream URL signed for its viewer
(:func:`stream_token`), so the URL is no use to anyone else.
"""

from __future__ import annotations

import math
import time
from base64 import urlsafe_b64encode
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from uuid import UUID, uuid4

from django.core import signing
from django.dispatch import Signal
from django.template.loader import render_to_string
from django.utils.crypto import salted_hmac

from .exceptions import InvalidProgress, ProgressEnded

#: The prefix of every progress channel.
CHANNEL_PREFIX = "progress"
#: The event of a report, and the event of the end (done or failed), after which a page stops following.
PROGRESS_EVENT = "progress"
END_EVENT = "progress.end"
#: The states a bar shows.
PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
#: Events a second a reporter publishes at most, unless told otherwise; the end is never held back.
DEFAULT_RATE = 4.0
#: The longest message shown; a longer one is cut, with an ellipsis.
MAX_MESSAGE_LENGTH = 200
#: The longest task id taken (a UUID is 36 characters).
MAX_TASK_ID_LENGTH = 200
TEMPLATE_NAME = "django_realtime/progress.html"
_SALT = "django_realtime.progress"

#: Sent after each progress event is published (``progress``: a :class:`Progress`, ``event``: the stored row).
progress_published = Signal()


def task_id_of(task: object) -> str:
    """Return the id of *task*: an id (str, UUID, int), a task result (``.id``: django.tasks, Celery), or a
    django.tasks ``TaskContext`` (``.task_result``).  Raise InvalidProgress for anything else."""
    task = getattr(task, "task_result", task)
    task = getattr(task, "id", task)
    if isinstance(task, bool) or not isinstance(task, str | int | UUID):
        raise InvalidProgress(f"a task is named by its id (str, UUID, int) or its result, not {type(task).__name__}")
    text = str(task)
    if not text or len(text) > MAX_TASK_ID_LENGTH:
        raise InvalidProgress(f"a task id must be 1 to {MAX_TASK_ID_LENGTH} characters long")
    return text


def new_task_id() -> str:
    """Return a new random task id, for a task that has none of its own (a management command, a thread)."""
    return uuid4().hex


def _key(task: object) -> str:
    digest = salted_hmac(_SALT, task_id_of(task), algorithm="sha256").digest()
    return urlsafe_b64encode(digest[:24]).decode("ascii")  # 192 bits, 32 characters, none of them '='


def progress_channel(task: object) -> str:
    """Return the channel of *task*'s progress: ``progress:`` and a key no one can derive without SECRET_KEY."""
    return f"{CHANNEL_PREFIX}:{_key(task)}"


# Who follows: a stream URL signed for its viewer ---------------------------------------------------


def viewer_of(request: Any) -> tuple[str, str]:
    """Return who *request* is, as a stream token binds it: ``("u", pk)`` for a signed-in user, ``("s", session
    key)`` for a visitor with a session, ``("a", "")`` for anyone else."""
    user = getattr(request, "user", None)
    if user is not None and getattr(user, "is_authenticated", False):
        return "u", str(user.pk)
    session = getattr(request, "session", None)
    key = getattr(session, "session_key", None)
    return ("s", key) if key else ("a", "")


def _signer() -> signing.Signer:
    return signing.Signer(salt=f"{_SALT}.stream")


def stream_token(task: object, request: Any) -> str:
    """Return the token of the stream URL of *task*'s progress, good for *request*'s viewer alone."""
    scope, viewer = viewer_of(request)
    key = _key(task)
    signature = _signer().sign(f"{key}.{scope}.{viewer}").rpartition(":")[2]
    return f"{key}.{scope}.{signature}"


def channel_of_token(token: str, request: Any) -> str:
    """Return the progress channel *token* opens to *request*'s viewer; raise signing.BadSignature otherwise."""
    key, _, rest = token.partition(".")
    scope, _, signature = rest.partition(".")
    mine, viewer = viewer_of(request)
    if scope not in ("u", "s", "a") or not signature or len(token) > 200:
        raise signing.BadSignature("not a progress stream token")
    if scope != "a" and scope != mine:
        raise signing.BadSignature("this progress stream is another viewer's")
    # The signature is over the key, the scope and the viewer, who is not in the token: only they can use it.
    _signer().unsign(f"{key}.{scope}.{viewer if scope != 'a' else ''}:{signature}")
    return f"{CHANNEL_PREFIX}:{key}"


# What a bar shows ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """One state of a task's progress, as a bar shows it."""

    state: str
    fraction: float | None = None
    message: str = ""
    #: The result (done) or the error (failed): text, escaped when shown, or a SafeString of HTML.
    outcome: str = ""

    @property
    def percent(self) -> str | None:
        """Return the fraction as a percentage with one decimal (``"42.5"``), or None where it is unknown."""
        return None if self.fraction is None else f"{self.fraction * 100:.1f}"

    @property
    def ended(self) -> bool:
        return self.state in (DONE, FAILED)

    def render(self, template_name: str = TEMPLATE_NAME) -> str:
        """Return the bar's HTML for this state, from *template_name*."""
        return render_to_string(template_name, {"progress": self})


def _fraction(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidProgress(f"a fraction is a number from 0 to 1, or None, not {value!r}")
    if not 0 <= value <= 1:
        raise InvalidProgress(f"a fraction is from 0 to 1, not {value!r}")
    return float(value)


def _message(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidProgress(f"a progress message is a str, not {type(value).__name__}")
    return value if len(value) <= MAX_MESSAGE_LENGTH else value[: MAX_MESSAGE_LENGTH - 1] + "\u2026"


# The reporter -------------------------------------------------------------------------------------


class ProgressReporter:
    """Publish a task's progress: each change once, at most *rate* events a second, the end always.

    A report that comes sooner than ``1 / rate`` seconds after the last one
    published is held back, and replaced by any later one; it is published
    by the next report that comes late enough, by :meth:`flush`, or by the
    end: :meth:`done` and :meth:`fail` publish at once and carry the
    fraction and message of the last report.  A report that would show
    exactly what the page already shows is not published at all.

    A reporter belongs to one task and one thread.  As a context manager it
    ends the task's progress on leaving: done if the
    block ended normally and nothing ended it before, failed with
    *error_message* if the block raised (the exception's text, which may
    hold what a user must not see, is not shown).
    """

    def __init__(
        self,
        task: object,
        *,
        rate: float = DEFAULT_RATE,
        error_message: str = "The task failed.",
        template_name: str = TEMPLATE_NAME,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not (0 < rate < math.inf):
            raise InvalidProgress(f"rate is a positive number of events a second, not {rate!r}")
        self.channel = progress_channel(task)
        self.interval = 1.0 / rate
        self.error_message = _message(error_message)
        self.template_name = template_name
        self._clock = clock
        self._shown = ""  # the HTML of the last event published
        self._sent_at = -math.inf
        self._latest = Progress(PENDING)
        self._held: Progress | None = None

    @property
    def ended(self) -> bool:
        """Return whether done() or fail() has run."""
        return self._latest.ended

    def report(self, fraction: float | None, message: str = "") -> bool:
        """Report that the task is *fraction* (0 to 1, None: unknown) through, doing *message*.

        Return whether an event was published now.  Raise InvalidProgress for
        a bad fraction or message, ProgressEnded after done() or fail().
        """
        self._check_open()
        self._latest = Progress(RUNNING, _fraction(fraction), _message(message))
        if self._clock() - self._sent_at < self.interval:
            self._held = self._latest
            return False
        return self._send(self._latest, PROGRESS_EVENT)

    def flush(self) -> bool:
        """Publish the report held back by the rate, if any, now: before a long step with no report."""
        held, self._held = self._held, None
        return held is not None and self._send(held, PROGRESS_EVENT)

    def done(self, result: str = "") -> None:
        """End the task's progress with its *result*: text (escaped when shown) or a SafeString of HTML."""
        self._check_open()
        self._end(Progress(DONE, 1.0, self._latest.message, _outcome(result)))

    def fail(self, message: str = "") -> None:
        """End the task's progress as failed, showing *message* (else ``error_message``) and how far it got."""
        self._check_open()
        latest = self._latest
        self._end(Progress(FAILED, latest.fraction, latest.message, _outcome(message or self.error_message)))

    def _end(self, progress: Progress) -> None:
        self._held = None
        self._latest = progress
        self._send(progress, END_EVENT)

    def _check_open(self) -> None:
        if self.ended:
            raise ProgressEnded(f"the progress of {self.channel} has ended ({self._latest.state})")

    def _send(self, progress: Progress, event: str) -> bool:
        from .publishing import publish

        self._held = None
        html = progress.render(self.template_name)
        if html == self._shown and event == PROGRESS_EVENT:
            return False
        stored = publish(self.channel, html, event=event)
        self._shown, self._sent_at = html, self._clock()
        progress_published.send(sender=ProgressReporter, channel=self.channel, progress=progress, event=stored)
        return True

    def __enter__(self) -> ProgressReporter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self.ended:
            return
        if exc_type is None:
            self.done()
        else:
            self.fail()


def _outcome(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidProgress(f"a result or an error is a str (or a SafeString of HTML), not {type(value).__name__}")
    return value


def progress_reporter(task: object, **options: Any) -> ProgressReporter:
    """Return a :class:`ProgressReporter` for *task* (its id, its result or its django.tasks context)."""
    return ProgressReporter(task, **options)


def shown_progress(task: object) -> tuple[str, bool] | None:
    """Return the HTML of *task*'s newest progress event and whether it is the end; None before any."""
    from .conf import realtime_settings
    from .models import Event

    latest = (
        Event.objects.using(realtime_settings.DATABASE)
        .filter(channel=progress_channel(task))
        .order_by("-id")
        .only("event", "data_json")
        .first()
    )
    if latest is None or latest.event not in (PROGRESS_EVENT, END_EVENT) or not isinstance(latest.data, str):
        return None
    return latest.data, latest.event == END_EVENT
