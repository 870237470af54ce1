"""The 100,000-stream bench's own checks: its cheap client counts each event once, and a tiny run finds no loss.

``bench.many_clients`` parses as little as it can (issue 26): these tests
make sure that what it skips never hides a lost or repeated event, and that
``python -m bench.many_streams`` runs end to end (two workers, a publisher
in another process, the streams opened from a cursor) at a size CI affords.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench.many_clients import BODY, Stream, Tally
from tests.support.servers import ROOT

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


def event(seq: int, id_: int) -> bytes:
    """Return one event as the package's gevent worker writes it: one HTTP chunk."""
    body = b'id: %d\nevent: message\ndata: {"t":1.5,"seq":%d}\n\n' % (id_, seq)
    return b"%X\r\n%s\r\n" % (len(body), body)


def feed(pieces: list[bytes], expect: int) -> tuple[Stream, Tally]:
    """Feed *pieces* to one stream expecting seqs ``range(expect)``, as its client process reads them."""
    stream, tally = Stream(None, expect), Tally(expect)
    for piece in pieces:
        if stream.state != BODY:
            piece = stream.take_head(piece)
            if piece is None:
                continue
        stream.feed(piece, 2.0, tally)
    return stream, tally


def test_events_cut_anywhere_between_reads_are_each_counted_once():
    wire = HEAD + b"9\r\nretry: 3000\n\n\r\n" + b"".join(event(seq, seq + 10) for seq in (-1, 0, 1, 2))
    for size in (1, 2, 3, 7, 13, 64):
        stream, tally = feed([wire[i : i + size] for i in range(0, len(wire), size)], 3)
        assert (tally.received, tally.duplicates, tally.unexpected) == (3, 0, 0), size
        assert list(tally.latencies) == [0.5] * 3
        assert stream.seen.count(0) == 0


def test_a_repeated_event_is_a_duplicate_and_a_missing_one_a_loss():
    stream, tally = feed([HEAD + event(0, 1) + event(2, 3) + event(0, 1) + event(9, 10)], 3)
    assert (tally.received, tally.duplicates, tally.unexpected) == (2, 1, 1)
    assert stream.seen.count(0) == 1


def test_a_stream_refused_by_a_full_worker_fails_to_open():
    with pytest.raises(ConnectionError, match="503"):
        feed([b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"], 3)


@pytest.mark.server
def test_a_tiny_run_delivers_every_event_to_every_stream_once(tmp_path):
    completed = subprocess.run(
        [
            *(sys.executable, "-m", "bench.many_streams", "--streams", "200", "--per-worker", "100"),
            *("--duration", "2", "--rate", "2", "--idle", "0.5", "--drain", "20", "--out", str(tmp_path)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    (results,) = tmp_path.glob("*.json")
    (run,) = json.loads(results.read_text())["runs"]
    assert run["workers"] == 2
    # Descriptors each worker gained: its streams, and a few of its own (database files, say).
    assert all(held >= 50 for held in run["memory"]["streams_per_worker"]), run["memory"]["streams_per_worker"]
    assert (run["delivered"], run["lost"], run["duplicated"], run["unexpected"]) == (800, 0, 0, 0)
    assert run["dropped_connections"] == 0
