// The ES modules of js/src/ and the realtime.js that scripts/build_js.py makes of them publish one API.
import assert from "node:assert/strict";
import { test } from "node:test";

import * as built from "../../django_realtime/static/django_realtime/realtime.mjs";
import * as sources from "../../js/src/index.mjs";

test("the modules' entry exports the names the built file publishes, and no other", () => {
  const api = globalThis[Symbol.for("django-realtime")];
  assert.deepEqual(Object.keys(sources).sort(), Object.keys(api).sort());
  assert.deepEqual(Object.keys(built).filter((name) => name !== "default").sort(), Object.keys(api).sort());
});

test("the modules and the built file are two loads of one code: the same version, the same parser", () => {
  assert.equal(sources.VERSION, built.VERSION);
  assert.notEqual(sources.Realtime, built.Realtime); // two evaluations, hence the single entry of the static folder
  for (const { SSEParser } of [sources, built]) {
    const events = [];
    new SSEParser((event) => events.push(event)).feed("event: a\r\ndata: 1\r\n\r\n");
    assert.deepEqual(events, [{ type: "a", data: "1", id: "", channel: "" }]);
  }
});
