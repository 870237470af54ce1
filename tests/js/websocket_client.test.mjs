// The WebSocket transport of realtime.js with a fake WebSocket, the fallback to SSE, and pausing.
import assert from "node:assert/strict";
import { test } from "node:test";

import { Realtime } from "../../django_realtime/static/django_realtime/realtime.mjs";
import { FailingSocket, FakeSocket, fakeFetch, memoryStorage, until, wait } from "./fakes.mjs";

globalThis.location = new URL("http://testserver/room/");
const options = { WebSocket: FakeSocket, random: () => 0.5, minDelay: 10, maxDelay: 40, storage: memoryStorage() };
const event = (id) => ({ type: "event", channel: "chat:a", id, event: "message", data: { id } });

test("per-channel ids: each event once, resumed from the last id, reset honoured, publish acked", async () => {
  FakeSocket.all = [];
  const rt = new Realtime(options);
  const delivered = [];
  const resets = [];
  const states = [];
  rt.on("state", ({ state }) => states.push(state));
  rt.subscribe("chat:a", { lastId: "5", onEvent: (e) => delivered.push(e.id), onReset: (r) => resets.push(r) });
  await wait(0);
  const first = FakeSocket.all[0];
  assert.equal(first.url, "ws://testserver/ws/");
  first.open();
  first.receive({ type: "subscribed", channel: "chat:a", last_id: "5" });
  for (const id of ["6", "7", "7", "5", "10"]) first.receive(event(id));
  first.drop(1006);
  await until(() => FakeSocket.all.length === 2);
  const second = FakeSocket.all[1];
  second.open();
  const { ref, ...resubscribe } = second.sent[0];
  assert.deepEqual(resubscribe, { type: "subscribe", channel: "chat:a", last_id: "10" });
  for (const id of ["9", "10", "11"]) second.receive(event(id));
  second.receive({ type: "reset", channel: "chat:a", reason: "expired", last_id: "11", resume_id: "3" });
  second.receive(event("4"));
  assert.deepEqual(delivered, ["6", "7", "10", "11", "4"]);
  assert.deepEqual(resets, [{ channel: "chat:a", reason: "expired", lastId: "11", resumeId: "3" }]);
  const acked = rt.publish("chat:a", { text: "hi" });
  second.receive({ type: "ack", channel: "chat:a", id: "12", ref: second.sent.at(-1).ref });
  assert.deepEqual(await acked, { id: "12", channel: "chat:a" });
  const refused = rt.publish("chat:a", 1).catch((error) => error.code);
  second.receive({ type: "error", code: "forbidden", message: "no", ref: second.sent.at(-1).ref });
  assert.equal(await refused, "forbidden");
  rt.close();
  assert.deepEqual(states, ["live", "reconnecting", "live", "closed"]);
});

test("a close 4004 (the server shuts down) reconnects after the delay of its reason, from the last id", async () => {
  FakeSocket.all = [];
  const rt = new Realtime(options);
  const delays = [];
  rt.on("retry", ({ delay }) => delays.push(delay));
  try {
    await shutdownAndBack(rt);
  } finally {
    rt.close(); // even when an assertion fails: its timers would keep the test run alive
  }
  assert.deepEqual(delays, [30, 8]);
});

async function shutdownAndBack(rt) {
  rt.subscribe("chat:a", { lastId: "5" });
  await wait(0);
  const first = FakeSocket.all[0];
  first.open();
  first.receive({ type: "subscribed", channel: "chat:a", last_id: "5" });
  first.receive(event("6"));
  first.drop(4004, "retry=30");
  await until(() => FakeSocket.all.length === 2);
  const second = FakeSocket.all[1];
  second.open();
  const { ref, ...resubscribe } = second.sent[0];
  assert.deepEqual(resubscribe, { type: "subscribe", channel: "chat:a", last_id: "6" });
  // A reason that is not "retry=<ms>": the usual backoff (10 ms at first here, with its jitter).
  second.drop(4004, "retry=soon");
  await until(() => FakeSocket.all.length === 3);
}

test("a refused subscription fails alone over a WebSocket", async () => {
  FakeSocket.all = [];
  const rt = new Realtime(options);
  const errors = [];
  rt.subscribe("secret", { onError: (e) => errors.push([e.code, e.channel]) });
  rt.subscribe("chat:a");
  await wait(0);
  const socket = FakeSocket.all[0];
  socket.open();
  const ref = socket.sent.find((m) => m.channel === "secret").ref;
  socket.receive({ type: "error", code: "forbidden", message: "no", ref });
  assert.deepEqual(errors, [["forbidden", "secret"]]);
  assert.equal(rt.lastId("secret"), null);
  assert.equal(rt.state, "live");
  rt.close();
});

test("auto falls back to one SSE stream after two handshakes fail, and the session remembers it", async () => {
  const storage = memoryStorage();
  const fetch = fakeFetch();
  FailingSocket.count = 0;
  const first = new Realtime({ ...options, storage, WebSocket: FailingSocket, fetch });
  const transports = [];
  first.on("transport", (t) => transports.push(t.reason));
  first.subscribe("chat:a", { lastId: "5" });
  first.subscribe("chat:b", { lastId: "19" });
  const call = await fetch.next();
  assert.equal(call.url, "/events/?channel=chat%3Aa&channel=chat%3Ab&include=channel&lastEventId=5");
  assert.equal(FailingSocket.count, 2);
  assert.equal(first.transport, "sse");
  assert.equal(await first.publish("chat:a", 1).catch((e) => e.code), "transport");
  assert.deepEqual(transports, ["WebSockets cannot connect"]);
  first.close();

  // The next page of the tab's session goes straight to SSE: no failing handshake.
  const next = new Realtime({ ...options, storage, WebSocket: FailingSocket, fetch });
  next.on("transport", (t) => transports.push(t.reason));
  next.subscribe("chat:a");
  await fetch.next();
  assert.equal(FailingSocket.count, 2);
  assert.equal(next.transport, "sse");
  assert.deepEqual(transports.at(-1), "WebSockets could not connect earlier in this session");
  next.close();
  assert.deepEqual([...storage.items.keys()], ["django-realtime:no-websocket:ws://testserver/ws/"]);
});

test("transports without websocket (the script tag's data-transports) make no handshake at all", async () => {
  const fetch = fakeFetch();
  FailingSocket.count = 0;
  const rt = new Realtime({ ...options, storage: memoryStorage(), WebSocket: FailingSocket, fetch, transports: ["sse"] });
  rt.subscribe("chat:a");
  await fetch.next();
  assert.equal(FailingSocket.count, 0);
  assert.equal(rt.transport, "sse");
  rt.close();
});

test("an explicit transport websocket ignores what the session remembers", async () => {
  const storage = memoryStorage();
  storage.setItem("django-realtime:no-websocket:ws://testserver/ws/", "1");
  FakeSocket.all = [];
  const rt = new Realtime({ ...options, storage, transport: "websocket" });
  rt.subscribe("chat:a");
  await wait(0);
  assert.equal(FakeSocket.all.length, 1);
  rt.close();
});

test("pauseWhenHidden closes the stream while hidden and resumes from the cursor, losing nothing", async () => {
  const doc = new EventTarget();
  doc.visibilityState = "visible";
  globalThis.document = doc;
  try {
    const fetch = fakeFetch();
    const rt = new Realtime({ ...options, transport: "sse", fetch, pauseWhenHidden: true });
    const got = [];
    rt.subscribe("chat:a", { lastId: "0", onEvent: (e) => got.push(e.id) });
    const first = await fetch.next();
    first.open().send("channel: chat:a\nid: 3\ndata: 1\n\n");
    await until(() => got.length === 1);
    doc.visibilityState = "hidden";
    doc.dispatchEvent(new Event("visibilitychange"));
    assert.equal(rt.state, "paused");
    assert.ok(first.aborted);
    await wait(60);
    assert.equal(fetch.calls.length, 1, "no reconnect while hidden");
    doc.visibilityState = "visible";
    doc.dispatchEvent(new Event("visibilitychange"));
    const second = await fetch.next();
    assert.equal(second.query.get("lastEventId"), "3");
    second.open().send("channel: chat:a\nid: 4\ndata: 2\n\n");
    await until(() => got.length === 2);
    assert.equal(rt.state, "live");
    rt.close();
  } finally {
    delete globalThis.document;
  }
});

test("importing the module publishes no global binding", async () => {
  assert.equal(globalThis.DjangoRealtime, undefined);
  assert.equal(typeof globalThis[Symbol.for("django-realtime")].Realtime, "function");
});
