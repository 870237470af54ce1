"""RSS and OS threads per idle SSE stream, on each server of the server matrix (issue 12).

For each server: a fresh SQLite database, the demo project served as
tests/test_server_matrix.py serves it, then ``--streams`` idle SSE streams
on one channel (raw sockets that read the headers and nothing more).  The
server's processes (gunicorn's arbiter and worker, or the one process) are
measured from /proc before the streams and with them: VmRSS summed, and
threads.  Run by hand::

    python -m bench.per_server --streams 200
    python -m bench.per_server --streams 1000 --servers daphne,uvicorn
"""

from __future__ import annotations

import argparse
import json
import socket
import tempfile
import time
from pathlib import Path

from bench.clients import raise_fd_limit
from tests.support.processes import memory_kb, workers_of
from tests.support.servers import manage, project_env, running_server

SERVERS = {
    "gunicorn-gevent": ("gunicorn-gevent", {}),
    "daphne": ("daphne", {}),
    "uvicorn": ("uvicorn", {}),
    "gunicorn-uvicorn": ("gunicorn-uvicorn", {}),
    "hypercorn": ("hypercorn", {}),
    "granian": ("granian", {}),
    "runserver (daphne)": ("runserver", {}),
    "runserver (WSGI)": ("runserver", {"DEMO_WITHOUT_DAPHNE": "1"}),
}


def measure(pid: int) -> tuple[int, int]:
    """Return (RSS in KB, threads) of *pid* and its children."""
    pids = [pid, *sorted(workers_of(pid))]
    return sum(memory_kb(each) for each in pids), sum(memory_kb(each, "Threads") for each in pids)


def run(name: str, streams: int, directory: Path) -> dict:
    kind, extra = SERVERS[name]
    env = {**project_env(f"sqlite:///{directory / 'db.sqlite3'}"), **extra}
    manage(env, "migrate", "--verbosity", "0")
    extra_args = ["--worker-connections", str(streams + 100)] if kind == "gunicorn-gevent" else []
    with running_server(kind, env, directory / "server.log", extra_args) as server:
        port = int(server.url.rsplit(":", 1)[1])
        # Warm up: the hub, the first stream's imports and buffers.
        warm = [open_stream(port) for _ in range(5)]
        time.sleep(1)
        for sock in warm:
            sock.close()
        time.sleep(1)
        before = measure(server.process.pid)
        socks = [open_stream(port) for _ in range(streams)]
        time.sleep(2)
        after = measure(server.process.pid)
        for sock in socks:
            sock.close()
    return {
        "server": name,
        "streams": streams,
        "rss_kb_per_stream": round((after[0] - before[0]) / streams, 1),
        "threads_before": before[1],
        "threads_with_streams": after[1],
        "threads_per_stream": round((after[1] - before[1]) / streams, 3),
    }


def open_stream(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(b"GET /events/?channel=demo:idle HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    if not sock.recv(4096).startswith(b"HTTP/1.1 200"):
        raise RuntimeError("the stream was refused")
    return sock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated, of: " + ", ".join(SERVERS))
    args = parser.parse_args()
    raise_fd_limit(args.streams * 2 + 200)
    rows = []
    for name in args.servers.split(","):
        with tempfile.TemporaryDirectory() as directory:
            rows.append(run(name, args.streams, Path(directory)))
        print(json.dumps(rows[-1]), flush=True)
    print(f"\n| server | RSS per idle stream | threads: before / with {args.streams} streams | threads per stream |")
    print("|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['server']} | {row['rss_kb_per_stream']} KB | {row['threads_before']} / "
            f"{row['threads_with_streams']} | {row['threads_per_stream']} |"
        )


if __name__ == "__main__":
    main()
