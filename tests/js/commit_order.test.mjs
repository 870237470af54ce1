// Events in commit order: an event's id is a cursor ("12~11", "11@12"), not a number to compare.
// An event may come after one with a higher id (its transaction committed later); each subscription
// gets every event once, resumes from a cursor that names what it still lacks, and a Presence stays
// exact without comparing ids (docs/client.md#ids-resuming-and-repeated-events, docs/presence.md).
import assert from "node:assert/strict";
import { afterEach, test } from "node:test";

import { Realtime } from "../../django_realtime/static/django_realtime/realtime.mjs";
import { FakeSocket, fakeFetch, memoryStorage, until, wait } from "./fakes.mjs";

globalThis.location = new URL("http://testserver/room/");

// Every Realtime a test opens is closed after it, also when it fails: no reconnection outlives it.
const opened = [];
afterEach(() => {
  for (const realtime of opened.splice(0)) realtime.close();
});
const open = (options) => {
  const realtime = new Realtime(options);
  opened.push(realtime);
  return realtime;
};

function sseClient(options = {}) {
  const fetch = fakeFetch();
  const realtime = open({ transport: "sse", sseUrl: "/events/", fetch, random: () => 0.5, minDelay: 10, ...options });
  const errors = [];
  realtime.on("error", (e) => errors.push(e.code));
  return { realtime, fetch, errors };
}

const event = (channel, id, data) => `channel: ${channel}\nid: ${id}\nevent: message\ndata: ${JSON.stringify(data)}\n\n`;

/** Subscribe to `channel`, recording [id, data] of each event delivered. */
function record(realtime, channel, options = {}) {
  const got = [];
  realtime.subscribe(channel, { ...options, onEvent: (e) => got.push([e.id, e.data]) });
  return got;
}

test("SSE: a late event comes after the one above it; both are delivered, once each, in that order", async () => {
  const { realtime, fetch } = sseClient();
  const got = record(realtime, "chat:a", { lastId: "10" });
  const first = await fetch.next();
  assert.equal(first.query.get("lastEventId"), "10");
  const stream = first.open();
  stream.send("retry: 10\n\n" + event("chat:a", "12~11", "twelve"));
  await until(() => got.length === 1);
  assert.equal(realtime.lastId("chat:a"), "12~11");
  stream.break();
  // The cursor says that 11 is still owed: the next stream sends it when it commits.
  const second = await fetch.next();
  assert.equal(second.query.get("lastEventId"), "12~11");
  const again = second.open();
  again.send(event("chat:a", "11@12", "eleven") + event("chat:a", "11@12", "eleven, again"));
  again.send(event("chat:a", "13", "thirteen"));
  await until(() => got.length === 3);
  await wait(10);
  assert.deepEqual(got, [
    ["12~11", "twelve"],
    ["11@12", "eleven"],
    ["13", "thirteen"],
  ]);
  again.break();
  assert.equal((await fetch.next()).query.get("lastEventId"), "13");
  realtime.close();
});

test("SSE: after a late event the cursor covers it, and a reconnect resumes from there", async () => {
  const { realtime, fetch } = sseClient();
  const got = record(realtime, "chat:a", { lastId: "10" });
  const stream = (await fetch.next()).open();
  stream.send("retry: 10\n\n" + event("chat:a", "12~11", 12) + event("chat:a", "11@12", 11));
  await until(() => got.length === 2);
  assert.equal(realtime.lastId("chat:a"), "12");
  stream.end();
  assert.equal((await fetch.next()).query.get("lastEventId"), "12");
  realtime.close();
});

test("SSE: two subscriptions with different cursors on one stream each get exactly what they lack", async () => {
  const { realtime, fetch } = sseClient();
  const a = record(realtime, "a", { lastId: "10" });
  const b = record(realtime, "b", { lastId: "5~3" });
  const first = await fetch.next();
  // From what both have seen: the ids up to 5 but 3.
  assert.equal(first.query.get("lastEventId"), "5~3");
  const stream = first.open();
  stream.send("retry: 10\n\n");
  stream.send(event("b", "3@5", "b3")); // late: b lacks it
  stream.send(event("a", "7", "a7")); // a has it
  stream.send(event("b", "8", "b8"));
  stream.send(event("a", "12~11", "a12"));
  stream.send(event("b", "11@12", "b11"));
  stream.send(event("a", "13", "a13"));
  await until(() => a.length === 2 && b.length === 3);
  await wait(10);
  assert.deepEqual(a.map(([, data]) => data), ["a12", "a13"]);
  assert.deepEqual(b.map(([, data]) => data), ["b3", "b8", "b11"]);
  assert.deepEqual([realtime.lastId("a"), realtime.lastId("b")], ["13", "12"]);
  stream.break();
  // The stream delivered everything up to 13: both channels have seen it.
  assert.equal((await fetch.next()).query.get("lastEventId"), "13");
  assert.deepEqual([realtime.lastId("a"), realtime.lastId("b")], ["13", "13"]);
  realtime.close();
});

test("SSE: a channel keeps what it has seen where the stream has not got to it yet", async () => {
  const { realtime, fetch } = sseClient();
  // a has 8 (another process's stream delivered it), 7 not yet; b is further behind.
  const a = record(realtime, "a", { lastId: "10~7" });
  const b = record(realtime, "b", { lastId: "5" });
  const first = await fetch.next();
  assert.equal(first.query.get("lastEventId"), "5");
  const stream = first.open();
  // This stream's server has 7 and 8 in flight still.
  stream.send(event("b", "6", "b6") + event("a", "9~7-8", "a9") + event("a", "11~7-8", "a11"));
  stream.send(event("a", "8@11~7", "a8") + event("a", "7@11", "a7"));
  await until(() => a.length === 2 && b.length === 1);
  await wait(10);
  assert.deepEqual(a.map(([, data]) => data), ["a11", "a7"], "8 and 9 came before, and came once");
  assert.deepEqual(b.map(([, data]) => data), ["b6"]);
  assert.equal(realtime.lastId("a"), "11");
  realtime.close();
});

test("SSE: a stream opened lower for a new channel gives each channel only what it delivered", async () => {
  const { realtime, fetch } = sseClient();
  record(realtime, "a", { lastId: "0" });
  const first = (await fetch.next()).open();
  first.send("retry: 10\n\n" + event("a", "100", 1));
  await until(() => realtime.lastId("a") === "100");
  const b = record(realtime, "b", { lastId: "40" });
  const second = await fetch.next();
  assert.equal(second.query.get("lastEventId"), "40");
  const stream = second.open();
  stream.send(event("b", "45", "b45"));
  await until(() => b.length === 1);
  stream.break();
  // This stream got as far as 45: b still lacks 46 to 100, a does not.
  assert.equal((await fetch.next()).query.get("lastEventId"), "45");
  assert.deepEqual([realtime.lastId("a"), realtime.lastId("b")], ["100", "45"]);
  realtime.close();
});

test("SSE: a reset's resume_id is a cursor: the channel goes on from it", async () => {
  const { realtime, fetch } = sseClient();
  const resets = [];
  const got = record(realtime, "a", { lastId: "50", onReset: (r) => resets.push(r) });
  const stream = (await fetch.next()).open();
  const reset = { reason: "unknown", last_event_id: "50", resume_id: "7~5", channels: ["a"] };
  stream.send(`id: 7~5\nevent: reset\ndata: ${JSON.stringify(reset)}\n\n` + event("a", "5@8", "late"));
  await until(() => got.length === 1);
  assert.deepEqual(resets, [{ channel: "a", reason: "unknown", lastId: "50", resumeId: "7~5" }]);
  assert.deepEqual(got, [["5@8", "late"]]);
  assert.equal(realtime.lastId("a"), "8");
  stream.break();
  assert.equal((await fetch.next()).query.get("lastEventId"), "8", "the stream went on from resume_id");
  realtime.close();
});

test("a lastId that is no cursor is refused at once; an empty one means from now", () => {
  const { realtime } = sseClient();
  for (const bad of ["abc", "01", "12~12", "-1", "1.5"]) {
    assert.throws(() => realtime.subscribe("a", { lastId: bad }), { code: "bad_option" }, bad);
  }
  assert.equal(realtime.subscribe("a", { lastId: "" }).lastId, null);
  assert.equal(realtime.subscribe("b", { lastId: 42 }).lastId, "42");
  realtime.close();
});

// WebSocket -------------------------------------------------------------------

const wsOptions = { WebSocket: FakeSocket, random: () => 0.5, minDelay: 10, maxDelay: 40, storage: memoryStorage() };
const wsEvent = (id, data = id) => ({ type: "event", channel: "chat:a", id, event: "message", data });
const withoutRef = ({ ref, ...message }) => message;

test("WebSocket: late events are delivered once, and a new socket subscribes from the merged cursor", async () => {
  FakeSocket.all = [];
  const rt = open(wsOptions);
  const got = record(rt, "chat:a", { lastId: "9" });
  await wait(0);
  const first = FakeSocket.all[0];
  first.open();
  first.receive({ type: "subscribed", channel: "chat:a", last_id: "9", ref: first.sent[0].ref });
  for (const id of ["10", "13~11-12", "12@13~11", "12@13~11", "9"]) first.receive(wsEvent(id));
  assert.deepEqual(got.map(([id]) => id), ["10", "13~11-12", "12@13~11"]);
  assert.equal(rt.lastId("chat:a"), "13~11");
  first.drop(1006);
  await until(() => FakeSocket.all.length === 2);
  const second = FakeSocket.all[1];
  second.open();
  assert.deepEqual(second.sent.map(withoutRef), [{ type: "subscribe", channel: "chat:a", last_id: "13~11" }]);
  for (const id of ["11@13", "12@13", "14"]) second.receive(wsEvent(id));
  assert.deepEqual(got.map(([id]) => id), ["10", "13~11-12", "12@13~11", "11@13", "14"]);
  assert.equal(rt.lastId("chat:a"), "14");
  rt.close();
});

test("WebSocket: a subscription from now resumes from the cursor of the subscribed reply", async () => {
  FakeSocket.all = [];
  const rt = open(wsOptions);
  const got = record(rt, "chat:a");
  await wait(0);
  const first = FakeSocket.all[0];
  first.open();
  first.receive({ type: "subscribed", channel: "chat:a", last_id: "20~17,19", ref: first.sent[0].ref });
  first.receive(wsEvent("19@20~17"));
  assert.equal(rt.lastId("chat:a"), "20~17");
  first.drop(1006);
  await until(() => FakeSocket.all.length === 2);
  FakeSocket.all[1].open();
  assert.deepEqual(FakeSocket.all[1].sent.map(withoutRef), [{ type: "subscribe", channel: "chat:a", last_id: "20~17" }]);
  FakeSocket.all[1].receive(wsEvent("17@20"));
  assert.deepEqual(got.map(([id]) => id), ["19@20~17", "17@20"]);
  rt.close();
});

test("an event id that is no cursor is delivered and reported; the cursor stays", async () => {
  FakeSocket.all = [];
  const rt = open(wsOptions);
  const errors = [];
  rt.on("error", (e) => errors.push(e.code));
  const got = record(rt, "chat:a", { lastId: "5" });
  await wait(0);
  const socket = FakeSocket.all[0];
  socket.open();
  socket.receive(wsEvent("not-a-cursor"));
  socket.receive(wsEvent("6"));
  assert.deepEqual(got.map(([id]) => id), ["not-a-cursor", "6"]);
  assert.deepEqual(errors, ["bad_id"]);
  assert.equal(rt.lastId("chat:a"), "6");
  rt.close();
});

// Presence ---------------------------------------------------------------------

const join = (id, connection, user) => ({
  type: "event",
  channel: "chat:a",
  id,
  event: "presence.join",
  data: { connection, user, info: {} },
});
const leave = (id, connection, user) => ({ type: "event", channel: "chat:a", id, event: "presence.leave", data: { connection, user } });
const users = (here) => here.members().map((m) => m.user);

test("presence stays exact across a join/leave pair kept before the answer and one after, whatever the ids", async () => {
  FakeSocket.all = [];
  const rt = open(wsOptions);
  const here = rt.presence("chat:a", { join: false });
  const seen = [];
  here.addEventListener("join", (e) => seen.push(["join", e.detail.user]));
  here.addEventListener("leave", (e) => seen.push(["leave", e.detail.user]));
  await wait(0);
  const socket = FakeSocket.all[0];
  socket.open();
  socket.receive({ type: "subscribed", channel: "chat:a", last_id: "10", ref: socket.sent[0].ref });
  const who = socket.sent.at(-1);
  assert.deepEqual(withoutRef(who), { type: "presence", channel: "chat:a" });
  // Kept while the list is asked for: bob joins (12, while 11 is in flight), cat's join commits
  // late (11), bob leaves (13).
  socket.receive(join("12~11", "c2", "bob"));
  socket.receive(join("11@12", "c3", "cat"));
  socket.receive(leave("13", "c2", "bob"));
  // The list was read once 12 had committed, 11 and 13 not yet: ann and bob.
  const members = [
    { connection: "c1", user: "ann", info: {} },
    { connection: "c2", user: "bob", info: {} },
  ];
  socket.receive({ type: "presence", channel: "chat:a", cursor: "12~11", members, ref: who.ref });
  assert.deepEqual(users(here), ["ann", "cat"]);
  assert.deepEqual(seen, [], "a first list says who is here, not who came");
  // After the answer: dan joins, cat leaves (committed late), dan leaves.
  socket.receive(join("15~14", "c4", "dan"));
  socket.receive(leave("14@15", "c3", "cat"));
  socket.receive(leave("16", "c4", "dan"));
  assert.deepEqual(users(here), ["ann"]);
  assert.deepEqual(seen, [
    ["join", "dan"],
    ["leave", "cat"],
    ["leave", "dan"],
  ]);
  rt.close();
});
