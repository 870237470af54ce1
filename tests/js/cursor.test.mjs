// The client's Cursor against django_realtime/cursor.py: the answers in cursor_vectors.json are Python's
// (python -m tests.cursor_vectors writes them; tests/test_js.py checks that they are current).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import * as module from "../../django_realtime/static/django_realtime/realtime.mjs";

const { Cursor, RealtimeError } = module;
const vectors = JSON.parse(readFileSync(new URL("./cursor_vectors.json", import.meta.url), "utf8"));

test("Cursor is exported beside compareIds, by the module and the API object alike", () => {
  assert.equal(typeof Cursor, "function");
  assert.equal(typeof module.compareIds, "function");
  assert.equal(globalThis[Symbol.for("django-realtime")].Cursor, Cursor);
  assert.equal(Cursor.MAX_RUNS, vectors.max_runs);
});

test("parse reads every text cursor.py reads, to the same cursor, and refuses every one it refuses", () => {
  const refused = vectors.texts.filter((v) => v.cursor === null);
  assert.ok(refused.length > 30 && vectors.texts.length - refused.length > 200, "the vectors hold both kinds");
  for (const { text, cursor } of vectors.texts) {
    const shown = JSON.stringify(text);
    if (cursor === null) {
      assert.throws(() => Cursor.parse(text), (e) => e instanceof RealtimeError && e.code === "bad_cursor", shown);
    } else {
      assert.equal(String(Cursor.parse(text)), cursor, shown);
    }
  }
});

test("eventId is the part before @, else the top, as a decimal string", () => {
  for (const { text, cursor, event_id: eventId } of vectors.texts) {
    if (cursor === null) assert.throws(() => Cursor.eventId(text), { code: "bad_cursor" }, JSON.stringify(text));
    else assert.equal(Cursor.eventId(text), eventId, text);
  }
  assert.equal(Cursor.eventId("4171@4180~4175-4177"), "4171");
});

test("covers: the ids up to the top but the pending ones, up to 2^63-1", () => {
  let checked = 0;
  for (const { cursor, ids, covered } of vectors.covers) {
    const parsed = Cursor.parse(cursor);
    ids.forEach((id, index) => {
      assert.equal(parsed.covers(id), covered[index], `${cursor} covers ${id}`);
      assert.equal(parsed.covers(BigInt(id)), covered[index]);
      checked += 1;
    });
  }
  assert.ok(checked > 500, `${checked} ids`);
  const top = Cursor.parse(vectors.id_max);
  assert.equal(top.covers(vectors.id_max), true);
  assert.equal(top.covers("9223372036854775806"), true, "a Number would round these two to one");
  assert.equal(Cursor.parse("9223372036854775806").covers(vectors.id_max), false);
});

test("merge, meet and dominates answer as cursor.py does, fitted to MAX_RUNS runs", () => {
  for (const { a, b, merge, meet, a_dominates_b: dominates } of vectors.pairs) {
    const [x, y] = [Cursor.parse(a), Cursor.parse(b)];
    assert.equal(String(x.merge(y)), merge, `merge(${a}, ${b})`);
    assert.equal(String(x.meet(y)), meet, `meet(${a}, ${b})`);
    assert.equal(x.dominates(y), dominates, `${a} dominates ${b}`);
  }
  // The last pairs need more than MAX_RUNS runs: the answer covers less, and fits.
  const past = vectors.pairs.slice(-3);
  assert.ok(past.every((p) => Cursor.parse(p.merge).pending.length <= vectors.max_runs));
  assert.equal(String(Cursor.parse(past[0].a).meet(Cursor.parse(past[0].b))), past[0].meet);
});

test("a cursor is immutable and reads back from its text", () => {
  const cursor = Cursor.parse("4171@4180~4175-4177");
  assert.equal(String(cursor), "4180~4175-4177");
  assert.equal(cursor.top, 4180n);
  assert.deepEqual(cursor.pending, [[4175n, 4177n]]);
  assert.ok(cursor.equals(Cursor.parse(String(cursor))));
  assert.ok(!cursor.equals(Cursor.parse("4180")));
  assert.throws(() => {
    cursor.top = 1n;
  }, TypeError);
});
