"""Cursors (django_realtime/cursor.py) against a model: the set of ids each one covers."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from django_realtime.cursor import MAX_RUNS, Cursor, CursorError, runs_of

TOP = 60


@st.composite
def cursors(draw, max_runs=MAX_RUNS):
    top = draw(st.integers(0, TOP))
    pending = draw(st.sets(st.integers(1, max(1, top - 1)), max_size=12)) if top > 1 else set()
    runs = runs_of(pending)[:max_runs]
    return Cursor(top, runs)


def covered(cursor):
    return {n for n in range(TOP + 2) if cursor.covers(n)}


def model(cursor):
    pending = {n for first, last in cursor.pending for n in range(first, last + 1)}
    return set(range(cursor.top + 1)) - pending


@given(cursors())
def test_a_cursor_covers_its_top_and_below_but_its_pending_ids(cursor):
    assert covered(cursor) == model(cursor)


@given(cursors())
def test_a_cursor_reads_back_from_its_text(cursor):
    assert Cursor.parse(str(cursor)) == cursor
    assert Cursor.parse(cursor.text_for(cursor.top)) == cursor
    assert Cursor.event_id(cursor.text_for(cursor.top)) == cursor.top


@given(cursors())
def test_a_late_event_is_named_before_the_cursor_and_ignored_on_resume(cursor):
    if not cursor.pending:
        return
    late = cursor.pending[0][0]
    after = cursor.without(late)
    text = after.text_for(late)
    assert text.startswith(f"{late}@")
    assert Cursor.event_id(text) == late and Cursor.parse(text) == after
    assert covered(after) == covered(cursor) | {late}


@given(cursors(), cursors())
def test_merge_covers_what_either_covers(a, b):
    merged = a.merge(b)
    assert merged.fits()
    if len(runs_of(set(range(max(a.top, b.top) + 1)) - covered(a) - covered(b))) <= MAX_RUNS:
        assert covered(merged) == covered(a) | covered(b)
    else:  # past MAX_RUNS: it covers less, never more
        assert covered(merged) <= covered(a) | covered(b)


@given(cursors(), st.data())
def test_any_pending_id_delivered_is_covered_and_the_rest_stays_pending(cursor, data):
    if not cursor.pending:
        return
    late = data.draw(st.sampled_from(sorted(set(range(cursor.top + 1)) - covered(cursor))))
    after = cursor.without(late)
    assert covered(after) == covered(cursor) | {late}
    assert after.pending == runs_of(set(range(after.top + 1)) - covered(after)), "sorted, disjoint runs"
    assert Cursor.parse(str(after)) == after


@given(cursors(), cursors())
def test_meet_covers_nothing_either_leaves_out(a, b):
    met = a.meet(b)
    assert met.fits()
    assert Cursor.parse(str(met)) == met, "a cursor this server may issue: nothing pending at its top"
    both = covered(a) & covered(b)
    if len(runs_of(set(range(min(a.top, b.top) + 1)) - both)) <= MAX_RUNS:
        assert covered(met) == both
    else:  # past MAX_RUNS: it covers less, never more
        assert covered(met) <= both


@given(cursors(), cursors())
def test_dominates_is_inclusion_of_what_they_cover(a, b):
    assert a.dominates(b) == (covered(b) <= covered(a))


@given(cursors(), st.lists(st.integers(1, TOP + 30), max_size=8))
def test_advanced_covers_the_new_ids_and_leaves_the_gaps_pending(cursor, ids):
    new = sorted({n for n in ids if n > cursor.top})
    moved = cursor.advanced(new)
    if not new:
        assert moved == cursor
        return
    expected = covered(cursor) | set(new)
    assert {n for n in range(new[-1] + 2) if moved.covers(n)} == expected


@given(cursors(), st.lists(st.integers(1, TOP + 30), max_size=8))
def test_advanced_passes_over_ids_it_covers_already(cursor, ids):
    """The reader hands it every id it saw, those at or below the top (late ones) among them."""
    ids = sorted(set(ids))
    assert cursor.advanced(ids) == cursor.advanced([n for n in ids if n > cursor.top])


@pytest.mark.parametrize(
    "text",
    [
        "",
        "-1",
        "01",
        "1.5",
        " 1",
        "1 ",
        "10~",
        "10~10",  # pending at the top
        "10~0",  # ids start at 1
        "10~5,3",  # not rising
        "10~3-5,5",  # overlapping
        "10~3,4",  # touching: one run
        "10~5-3",
        "10~" + ",".join(str(n) for n in range(1, 2 * MAX_RUNS + 1, 2)),  # too many runs
        "99999999999999999999",
        "9223372036854775808",
        "1@",
        "@10",
        "x@10",
        "10\n",
    ],
)
def test_anything_else_is_refused(text):
    with pytest.raises(CursorError):
        Cursor.parse(text)


def test_every_integer_cursor_ever_issued_still_parses():
    assert Cursor.parse("0") == Cursor(0)
    assert Cursor.parse("4180") == Cursor(4180)
    assert Cursor.parse("9223372036854775807").top == 2**63 - 1
    assert str(Cursor.parse("4180~4171,4175-4177")) == "4180~4171,4175-4177"


@settings(max_examples=50)
@given(cursors())
def test_the_text_is_ascii_without_spaces_and_short(cursor):
    text = cursor.text_for(cursor.top)
    assert text.isascii() and " " not in text and len(text) < 800


@given(cursors(), st.integers(0, TOP + 5))
def test_clip_covers_what_the_cursor_covers_up_to_an_id(cursor, event_id):
    clipped = cursor.clip(event_id)
    assert covered(clipped) == {n for n in covered(cursor) if n <= event_id}


@given(st.integers(0, TOP), st.lists(st.tuples(st.integers(1, TOP + 5), st.integers(0, 6)), max_size=6))
def test_with_pending_leaves_exactly_the_given_ids_below_the_top_pending(top, spans):
    runs = [(first, first + length) for first, length in spans]
    cursor = Cursor(top).with_pending(runs)
    given_ids = {n for first, last in runs for n in range(first, last + 1)}
    assert covered(cursor) == {n for n in range(top + 1) if n == top or n not in given_ids}
    assert all(first <= last < top for first, last in cursor.pending), "runs clipped below the top"
    assert Cursor.parse(str(cursor)) == cursor


def test_with_pending_drops_the_runs_at_and_above_the_top():
    """The hub hands the pending runs of its new cursor, some above the old top, to a cursor at the old top."""
    assert Cursor(10).with_pending([(4, 4), (12, 13)]) == Cursor(10, ((4, 4),))
    assert Cursor(10).with_pending([(8, 12)]) == Cursor(10, ((8, 9),)), "the top is covered, not pending"
    assert Cursor(10).with_pending([(10, 12)]) == Cursor(10), "a run from the top holds nothing below it"
    assert str(Cursor(10).with_pending([(10, 12), (3, 4)])) == "10~3-4"


def test_a_cursor_of_max_runs_fits_and_one_past_it_is_cut_below_its_first_extra_run():
    from tests.cursor_vectors import interleaved

    most = interleaved(0)  # MAX_RUNS single ids pending: 1, 5, 9, ..., 61
    assert len(most.pending) == MAX_RUNS and most.fits()
    assert not Cursor(100, (*most.pending, (70, 70))).fits()
    # A meet that holds exactly MAX_RUNS runs keeps them all.
    assert most.meet(Cursor(100)) == most
    # The meet of two interleaved cursors leaves 32 ids pending: it stops below the 17th run (id 33).
    met = interleaved(0).meet(interleaved(2))
    union = runs_of(n for cursor in (interleaved(0), interleaved(2)) for n, _ in cursor.pending)
    assert met == Cursor(union[MAX_RUNS][0] - 1, union[:MAX_RUNS])
    assert Cursor.parse(str(met)) == met


def test_a_meet_past_max_runs_stops_below_the_first_id_of_its_first_extra_run():
    from tests.cursor_vectors import interleaved

    most = interleaved(0)  # MAX_RUNS single ids pending, the last 61
    met = most.meet(Cursor(100, ((70, 72),)))
    assert met == Cursor(69, most.pending), "70 to 72 are pending in one of them: none may be covered"


def test_a_cursor_whose_runs_do_not_rise_is_refused_with_its_text_quoted_to_forty_characters():
    text = "9" * 18 + "~" + ",".join(["5"] * 12)
    with pytest.raises(CursorError) as caught:
        Cursor.parse(text)
    assert str(caught.value) == f"malformed cursor {text[:40]!r}: runs must rise, not touch, stay below the top"
