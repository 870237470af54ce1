// The SSE parser (js/src/parser.mjs, imported as a module: it is pure) against WHATWG HTML, "Event stream interpretation".
import assert from "node:assert/strict";
import { test } from "node:test";

import { SSEParser } from "../../js/src/parser.mjs";

function parse(...chunks) {
  const events = [];
  const retries = [];
  const parser = new SSEParser((e) => events.push(e), (ms) => retries.push(ms));
  for (const chunk of chunks) parser.feed(chunk);
  return { events, retries, parser };
}

test("every line break the spec knows ends a line, also split across chunks", () => {
  for (const chunks of [["data: a\n\n"], ["data: a\r\n\r\n"], ["data: a\r\r"], ["data: a\r", "\n\r", "\n"], ["da", "ta: a\n", "\n"]]) {
    const { events } = parse(...chunks);
    assert.deepEqual(events.map((e) => e.data), ["a"], JSON.stringify(chunks));
  }
});

test("a CR at the end of a chunk and a LF starting the next are one line break, not two", () => {
  const { events } = parse("data: a\r", "\ndata: b\r", "\n\r\n");
  assert.deepEqual(events.map((e) => e.data), ["a\nb"]);
});

test("unicode line separators stay inside the data", () => {
  const { events } = parse("data: a\u2028b\u0085c\x0bd\n\n");
  assert.equal(events[0].data, "a\u2028b\u0085c\x0bd");
});

test("several data lines join with LF, and only one space after the colon is dropped", () => {
  const { events } = parse("data:  x\ndata:y\ndata\n\n");
  assert.equal(events[0].data, " x\ny\n");
});

test("the event type defaults to message and resets after each event; the id persists", () => {
  const { events } = parse("id: 7\nevent: click\ndata: 1\n\ndata: 2\n\n");
  assert.deepEqual(events.map((e) => [e.type, e.id, e.data]), [["click", "7", "1"], ["message", "7", "2"]]);
});

test("an event without data is not dispatched, but its id still counts", () => {
  const { events, parser } = parse("id: 9\nevent: x\n\ndata: after\n\n");
  assert.deepEqual(events.map((e) => [e.type, e.id]), [["message", "9"]]);
  assert.equal(parser.lastEventId, "9");
});

test("an id holding NUL is ignored, as browsers do", () => {
  const { events } = parse("id: 3\n\nid: 4\0\ndata: x\n\n");
  assert.equal(events[0].id, "3");
});

test("retry counts only when it is all ASCII digits", () => {
  const { retries } = parse("retry: 3000\n\nretry: 3e3\nretry: -1\nretry:  5\nretry: 12a\nretry: 250\n\n");
  assert.deepEqual(retries, [3000, 250]);
});

test("comments and unknown fields are ignored", () => {
  const { events } = parse(": keepalive\n\nfoo: bar\ndata: x\n\n");
  assert.deepEqual(events.map((e) => e.data), ["x"]);
});

test("the channel field of ?include=channel is kept per event and reset after it", () => {
  const { events } = parse("channel: chat:a\nid: 1\ndata: 1\n\nid: 2\ndata: 2\n\n");
  assert.deepEqual(events.map((e) => e.channel), ["chat:a", ""]);
});

test("an unterminated last event is never dispatched", () => {
  const { events } = parse("data: complete\n\ndata: cut off\n");
  assert.deepEqual(events.map((e) => e.data), ["complete"]);
});

test("a leading byte order mark is dropped", () => {
  const { events } = parse("\ufeffdata: x\n\n");
  assert.equal(events[0].data, "x");
});
