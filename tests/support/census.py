"""What the package's gunicorn worker holds, seen from outside: its streams' greenlets and its parked streams.

A gunicorn config file, written for the run (``census_args``), installs the
drain hook as a deployment does (``django_realtime.gunicorn_server``) and a
greenlet of the worker's own that writes, twice a second, one line of JSON to
a file: the greenlets alive in the worker, the streams running in one
(``worker.streams``) and those parked with the hub (``worker.parked``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

CONF = """\
import gc
import json
import os
import threading
import time

from django_realtime.gunicorn_server import post_worker_init as drain_when_stopped

CENSUS = {path!r}


def post_worker_init(worker):
    drain_when_stopped(worker)

    def census():
        import greenlet

        while True:
            alive = sum(1 for o in gc.get_objects() if isinstance(o, greenlet.greenlet) and not o.dead)
            line = {{
                "greenlets": alive,
                "streams": len(worker.streams),
                "parked": len(getattr(worker, "parked", ())),
            }}
            with open(CENSUS + ".tmp", "w") as out:
                out.write(json.dumps(line))
            os.replace(CENSUS + ".tmp", CENSUS)
            time.sleep(0.5)

    threading.Thread(target=census, name="census", daemon=True).start()
"""


def census_args(directory: Path) -> list[str]:
    """Return the gunicorn options that run the census (and the drain hook) into *directory*."""
    conf = directory / "census.conf.py"
    conf.write_text(CONF.format(path=str(directory / "census.json")))
    return ["-c", str(conf)]


def read_census(directory: Path) -> dict[str, Any] | None:
    """Return the census's last line, or None before its first."""
    try:
        return json.loads((directory / "census.json").read_text())
    except (FileNotFoundError, ValueError):
        return None


def wait_for_census(
    directory: Path, check: Callable[[dict[str, Any]], bool], what: str, timeout: float = 20.0
) -> dict[str, Any]:
    """Wait until the census satisfies *check*; return it, or fail saying *what* was awaited."""
    deadline = time.monotonic() + timeout
    census = None
    while time.monotonic() < deadline:
        census = read_census(directory)
        if census is not None and check(census):
            return census
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout} s; the worker's census: {census}")
