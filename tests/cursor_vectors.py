"""Vectors of django_realtime.cursor for the browser client's Cursor (tests/js/cursor.test.mjs).

realtime.js mirrors cursor.py; these are the answers of cursor.py, in JSON,
ids as decimal strings (JavaScript numbers hold no 64-bit id).  Write them
with ``python -m tests.cursor_vectors``; tests/test_js.py fails when the
checked-in file is not what cursor.py computes now.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from django_realtime.cursor import ID_MAX, MAX_RUNS, Cursor, CursorError, runs_of

PATH = Path(__file__).resolve().parent / "js" / "cursor_vectors.json"
SEED = 20261207

#: Texts cursor.py refuses (or not: the vectors say), beyond the ones written out by the generator.
TEXTS = [
    "0",
    "4180",
    "4180~4171,4175-4177",
    "4171@4180~4175-4177",
    "11@12",
    "12@11",  # the event's part is not checked against the top
    "9999999999999999999@5",  # nor against ID_MAX
    "9223372036854775807",
    "9223372036854775807~1-9223372036854775806",
    "9223372036854775808",
    "99999999999999999999",
    "",
    "-1",
    "01",
    "00@5",
    "+1",
    "1e3",
    "0x10",
    "1.5",
    " 1",
    "1 ",
    "12 ~11",
    "12~11 ",
    "\u0661\u0662",  # Arabic-Indic digits: not [0-9]
    "10~",
    "10~10",
    "10~0",
    "10~5,3",
    "10~3-5,5",
    "10~3,4",
    "10~5-3",
    "10~1-",
    "10~-1",
    "10~1,,3",
    "10~1,3,",
    "10~1-3-5",
    "1@",
    "@10",
    "x@10",
    "1@2@3",
    "1@2~",
    "10\n",
    "10\r",
    "10\u2028",
    "10~" + ",".join(str(n) for n in range(1, 2 * MAX_RUNS, 2)),  # MAX_RUNS runs: the most
    "40~" + ",".join(str(n) for n in range(1, 2 * MAX_RUNS + 2, 2)),  # one more
    12,  # not a string
    None,
]


def covered(cursor: Cursor, last: int) -> set[int]:
    return {n for n in range(last + 1) if cursor.covers(n)}


def random_cursor(rng: random.Random, base: int = 0, span: int = 60, most: int = 12) -> Cursor:
    """Return a cursor with top in base..base+span and up to *most* pending ids (as test_cursor.py draws them)."""
    top = base + rng.randrange(span + 1)
    first = max(1, base)
    ids = {rng.randrange(first, top) for _ in range(rng.randrange(most + 1))} if top > first else set()
    return Cursor(top, runs_of(ids)[:MAX_RUNS])


def interleaved(offset: int, step: int = 4, top: int = 100) -> Cursor:
    """Return a cursor with MAX_RUNS single pending ids, offset+1, offset+1+step, ..."""
    return Cursor(top, tuple((n, n) for n in range(offset + 1, offset + 1 + step * MAX_RUNS, step)))


def crafted_pairs() -> list[tuple[Cursor, Cursor]]:
    """Return pairs whose meet or merge would need more than MAX_RUNS runs: cursor.py fits them."""
    meet_past = (interleaved(0), interleaved(2))  # 32 pending runs together
    # Each of high's 16 pending runs is split in two by an id low covers: about 31 runs pending in both.
    high = Cursor(200, tuple((n, n + 2) for n in range(1, 1 + 6 * MAX_RUNS, 6)))
    low = Cursor(120, ((1, 1), *((first + 2, first + 6) for first, _ in high.pending[: MAX_RUNS - 1])))
    merge_past = (high, low)
    # Sanity: both really overflow, so the vectors check _fitted.
    met = meet_past[0].meet(meet_past[1])
    assert covered(met, 101) < covered(meet_past[0], 101) & covered(meet_past[1], 101)
    merged = high.merge(low)
    assert covered(merged, 201) < covered(high, 201) | covered(low, 201)
    return [meet_past, merge_past, (low, high)]


def text_case(text: Any) -> dict[str, Any]:
    try:
        cursor = Cursor.parse(text)
    except CursorError:
        return {"text": text, "cursor": None}
    return {"text": text, "cursor": str(cursor), "event_id": str(Cursor.event_id(text))}


def vectors() -> dict[str, Any]:
    rng = random.Random(SEED)
    singles = [random_cursor(rng) for _ in range(60)]
    singles += [random_cursor(rng, most=40) for _ in range(20)]  # often MAX_RUNS runs
    singles += [random_cursor(rng, base=ID_MAX - 80, span=80) for _ in range(10)]
    singles += [Cursor(0), Cursor(1), Cursor(ID_MAX), interleaved(0), interleaved(2)]
    texts = list(TEXTS)
    for cursor in singles:
        texts.append(str(cursor))
        for first, last in cursor.pending[:2]:  # the text a late event carries
            texts.append(cursor.without(first).text_for(first))
            texts.append(cursor.without(last).text_for(last))
    pairs = [(rng.choice(singles[:80]), rng.choice(singles[:80])) for _ in range(150)]
    pairs += [(rng.choice(singles[80:90]), rng.choice(singles[80:90])) for _ in range(20)]
    pairs += [(a, a) for a in singles[:5]] + crafted_pairs()
    covers = []
    for cursor in singles:
        ids = {0, 1, 2, cursor.top - 1, cursor.top, cursor.top + 1, rng.randrange(cursor.top + 3)}
        for first, last in cursor.pending:
            ids |= {first - 1, first, last, last + 1}
        ids = sorted(n for n in ids if 0 <= n <= ID_MAX)
        covers.append({"cursor": str(cursor), "ids": [str(n) for n in ids], "covered": [cursor.covers(n) for n in ids]})
    return {
        "about": "answers of django_realtime/cursor.py; written by python -m tests.cursor_vectors",
        "max_runs": MAX_RUNS,
        "id_max": str(ID_MAX),
        "texts": [text_case(text) for text in dict.fromkeys(texts)],
        "covers": covers,
        "pairs": [
            {
                "a": str(a),
                "b": str(b),
                "merge": str(a.merge(b)),
                "meet": str(a.meet(b)),
                "a_dominates_b": a.dominates(b),
            }
            for a, b in pairs
        ],
    }


def render() -> str:
    """Return the vectors as JSON, one case a line."""
    parts = []
    for key, value in vectors().items():
        if isinstance(value, list):
            cases = ",\n".join(f"  {json.dumps(case)}" for case in value)
            parts.append(f" {json.dumps(key)}: [\n{cases}\n ]")
        else:
            parts.append(f" {json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


if __name__ == "__main__":
    PATH.write_text(render())
    print(f"wrote {PATH}")
