// Event ids and cursors: where a client is in the log (a mirror of django_realtime/cursor.py).

import { RealtimeError } from "./errors.mjs";

/**
 * Compare two integer ids (decimal strings up to 2^63-1, no leading zeros, too large for a
 * JavaScript number): negative, zero or positive. A longer id is larger, and ids of one
 * length compare as strings. Not for events: their ids are cursors, which come in commit
 * order, not id order (Cursor); pairChannel() orders user keys with it.
 */
export function compareIds(a, b) {
  a = String(a);
  b = String(b);
  if (a.length !== b.length) return a.length - b.length;
  return a < b ? -1 : a > b ? 1 : 0;
}

// Cursors ---------------------------------------------------------------
//
// An event's id is a cursor: where a client is in the log, as the set of ids it has seen or
// need not see. Transactions commit in any order, so an event may come after one with a
// higher id; a cursor names a *top*, the highest id delivered, and the ids below it still
// *pending* (drawn, not committed yet), as runs. It *covers* every id up to its top that is
// not pending. The text, opaque to a page: "4180", "4180~4171,4175-4177", and, as a late
// event carries it, "4171@4180~4175-4177" (the event's own id before "@", ignored on resume).
// A mirror of django_realtime/cursor.py, tested against its answers (tests/js/cursor.test.mjs).

/** Most runs of pending ids a cursor holds. */
const MAX_RUNS = 16;
/** The largest id: a BigAutoField, signed 64 bits. Ids are BigInts here: a Number holds 53 bits. */
const ID_MAX = (1n << 63n) - 1n;
const NUMBER = "(?:0|[1-9][0-9]{0,18})";
const RUN = `${NUMBER}(?:-${NUMBER})?`;
const CURSOR_TEXT = new RegExp(`^(?:(${NUMBER})@)?(${NUMBER})(?:~(${RUN}(?:,${RUN}){0,${MAX_RUNS - 1}}))?$`);

/** A position in the log: every id up to `top` but the `pending` runs ([first, last], sorted, disjoint). */
export class Cursor {
  constructor(top, pending) {
    this.top = BigInt(top);
    const runs = Array.from(pending || [], ([first, last]) => Object.freeze([BigInt(first), BigInt(last)]));
    this.pending = Object.freeze(runs);
    Object.freeze(this);
  }

  /** Parse a cursor's text (an integer id too); throw a RealtimeError "bad_cursor" for anything else. */
  static parse(text) {
    return readCursor(text).cursor;
  }

  /** The id of the event whose cursor `text` is (the part before "@", else the top), as a decimal string. */
  static eventId(text) {
    return readCursor(text).eventId;
  }

  toString() {
    let text = String(this.top);
    if (this.pending.length) {
      text += "~" + this.pending.map(([a, b]) => (a === b ? String(a) : `${a}-${b}`)).join(",");
    }
    return text;
  }

  equals(other) {
    return other instanceof Cursor && this.top === other.top && String(this) === String(other);
  }

  /** Whether the event of id `id` (a BigInt, or a decimal string) was delivered, or is none of the client's. */
  covers(id) {
    id = BigInt(id);
    if (id > this.top) return false;
    for (const [first, last] of this.pending) {
      if (id < first) return true;
      if (id <= last) return false;
    }
    return true;
  }

  /** Whether this cursor covers every id `other` covers. */
  dominates(other) {
    if (other.top > this.top) return false;
    // Every id this one leaves pending must be left pending (or above the top) by the other.
    return this.pending.every(([first, last]) => first > other.top || within(first, last, other));
  }

  /** The cursor that covers what either covers. */
  merge(other) {
    if (this.dominates(other)) return this;
    if (other.dominates(this)) return other;
    const [high, low] = this.top >= other.top ? [this, other] : [other, this];
    // Pending in the result: pending in the higher one, and pending in the lower one or above its top.
    return fitted(high.top, intersect(high.pending, [...low.pending, [low.top + 1n, high.top]]));
  }

  /** A cursor that covers nothing either leaves out: the ids both cover, or fewer (within MAX_RUNS runs). */
  meet(other) {
    let top = this.top < other.top ? this.top : other.top;
    const runs = union([...this.pending, ...other.pending])
      .filter(([first]) => first <= top)
      .map(([first, last]) => [first, last < top ? last : top]);
    while (runs.length && runs[runs.length - 1][1] >= top) top = runs.pop()[0] - 1n; // the top pending in the other
    return fitted(top, runs);
  }
}
Object.defineProperty(Cursor, "MAX_RUNS", { value: MAX_RUNS });

/** Parse `text`: {cursor, eventId}; throw RealtimeError("bad_cursor") unless it is a cursor's text. */
function readCursor(text) {
  const match = typeof text === "string" ? CURSOR_TEXT.exec(text) : null;
  if (match === null || BigInt(match[2]) > ID_MAX) {
    const shown = typeof text === "string" ? JSON.stringify(text.slice(0, 40)) : String(text);
    throw new RealtimeError(
      "bad_cursor",
      `event id must be a decimal number from 0 to ${ID_MAX}, or a cursor the server gave, got ${shown}`
    );
  }
  const top = BigInt(match[2]);
  const runs = [];
  for (const part of match[3] ? match[3].split(",") : []) {
    const [first, last] = part.split("-");
    runs.push([BigInt(first), BigInt(last === undefined ? first : last)]);
  }
  runs.forEach(([first, last], index) => {
    if (!(first > 0n && first <= last && last < top) || (index > 0 && runs[index - 1][1] + 1n >= first)) {
      throw new RealtimeError(
        "bad_cursor",
        `malformed cursor ${JSON.stringify(match[0].slice(0, 40))}: runs must rise, not touch, stay below the top`
      );
    }
  });
  return { cursor: new Cursor(top, runs), eventId: match[1] === undefined ? match[2] : match[1] };
}

/** The cursor of `top` and `runs`, or, past MAX_RUNS runs, one that covers less and fits (safe: nothing is lost). */
function fitted(top, runs) {
  if (runs.length <= MAX_RUNS) return new Cursor(top, runs);
  return new Cursor(runs[MAX_RUNS][0] - 1n, runs.slice(0, MAX_RUNS));
}

/** Whether ids first..last are all left out by `other`: pending there, or above its top. */
export function within(first, last, other) {
  for (const [low, high] of other.pending) {
    if (low <= first && last <= high) return true;
    if (low <= first && first <= high) {
      first = high + 1n;
      if (first > last) return true;
    }
  }
  return first > other.top;
}

function compareRuns(x, y) {
  if (x[0] !== y[0]) return x[0] < y[0] ? -1 : 1;
  return x[1] === y[1] ? 0 : x[1] < y[1] ? -1 : 1;
}

/** The runs of ids in both sets of sorted runs. */
function intersect(left, right) {
  right = right.slice().sort(compareRuns);
  const out = [];
  for (const [a, b] of left) {
    for (const [c, d] of right) {
      const first = a > c ? a : c;
      const last = b < d ? b : d;
      if (first <= last) out.push([first, last]);
    }
  }
  return union(out);
}

/** Sorted, disjoint, non-touching runs covering the given ones. */
function union(runs) {
  const out = [];
  for (const [first, last] of runs.slice().sort(compareRuns)) {
    const previous = out[out.length - 1];
    if (previous && first <= previous[1] + 1n) previous[1] = previous[1] > last ? previous[1] : last;
    else out.push([first, last]);
  }
  return out;
}

/** A cursor of the server's text, or null: an id no server of this package sends (the caller reports it). */
export function cursorOrNull(text) {
  try {
    return readCursor(text);
  } catch (error) {
    return null;
  }
}

/** The cursor that covers what either covers; null is a cursor that covers nothing. */
export function merged(a, b) {
  return a === null ? b : b === null ? a : a.merge(b);
}

/** A lastId option as a Cursor: "" (what {% realtime_cursor %} gives when it has no safe cursor) means none. */
export function cursorOption(value) {
  if (value === undefined || value === null || value === "") return null;
  try {
    return Cursor.parse(String(value));
  } catch (error) {
    const message = `lastId must be "0", an event's id or a cursor the server gave: ${error.message}`;
    throw new RealtimeError("bad_option", message);
  }
}
