// Realtime.presence(): the list kept exact (docs/presence.md#staying-exact), grouped by user, over both transports.
import assert from "node:assert/strict";
import { test } from "node:test";

import { Realtime } from "../../django_realtime/static/django_realtime/realtime.mjs";
import { FakeSocket, fakeFetch, memoryStorage, until, wait } from "./fakes.mjs";

globalThis.location = new URL("http://testserver/room/");
const wsOptions = { WebSocket: FakeSocket, random: () => 0.5, minDelay: 10, maxDelay: 40, storage: memoryStorage() };

const join = (id, connection, user, info = {}) => ({
  type: "event",
  channel: "chat:a",
  id,
  event: "presence.join",
  data: { connection, user, info },
});
const leave = (id, connection, user) => ({
  type: "event",
  channel: "chat:a",
  id,
  event: "presence.leave",
  data: { connection, user },
});

/** Record a Presence's events as [type, user] pairs, and count its changes. */
function watch(here) {
  const seen = { events: [], changes: 0, errors: [] };
  here.addEventListener("join", (e) => seen.events.push(["join", e.detail.user]));
  here.addEventListener("leave", (e) => seen.events.push(["leave", e.detail.user]));
  here.addEventListener("change", () => (seen.changes += 1));
  here.addEventListener("error", (e) => seen.errors.push(e.detail.code));
  return seen;
}

const users = (here) => here.members().map((m) => [m.user, m.connections]);
const withoutRef = ({ ref, ...message }) => message;

/** Open a WebSocket Realtime with a presence on chat:a; return once the socket is open and subscribed. */
async function wsPresence(options = { name: "ada", info: { colour: "teal" } }) {
  FakeSocket.all = [];
  const rt = new Realtime(wsOptions);
  const here = rt.presence("chat:a", options);
  const seen = watch(here);
  await wait(0);
  const socket = FakeSocket.all[0];
  socket.open();
  return { rt, here, seen, socket };
}

test("over a WebSocket: join and ask once subscribed; the list takes every event kept meanwhile, in order", async () => {
  const { rt, here, seen, socket } = await wsPresence();
  assert.deepEqual(socket.sent.map(withoutRef), [{ type: "subscribe", channel: "chat:a" }], "no join before subscribed");
  assert.equal(here.ready, false);
  socket.receive({ type: "subscribed", channel: "chat:a", last_id: "10", ref: socket.sent[0].ref });
  assert.deepEqual(socket.sent.slice(1).map(withoutRef), [
    { type: "join", channel: "chat:a", name: "ada", info: { colour: "teal" } },
    { type: "presence", channel: "chat:a" },
  ]);
  const [joinRef, whoRef] = socket.sent.slice(1).map((m) => m.ref);

  // Events that come before the answer are kept, and applied to it in order...
  socket.receive(join("11", "c2", "bob")); // in the list already: the same member, in its place
  // Left out of the list: its process died (docs/presence.md). Here until its leave comes.
  socket.receive(join("12", "c9", "ghost"));
  socket.receive(join("13", "c3", "cat"));
  socket.receive(leave("14", "c1", "ann"));
  socket.receive({ type: "joined", channel: "chat:a", connection: "c5", user: "ada", ref: joinRef });
  assert.deepEqual(here.self, { connection: "c5", user: "ada" });
  assert.equal(seen.changes, 0, "nothing before the list");
  socket.receive({
    type: "presence",
    channel: "chat:a",
    cursor: "12",
    members: [
      { connection: "c1", user: "ann", info: {} },
      { connection: "c2", user: "bob", info: { n: 1 } },
    ],
    ref: whoRef,
  });
  assert.equal(here.ready, true);
  assert.deepEqual(users(here), [["bob", ["c2"]], ["ghost", ["c9"]], ["cat", ["c3"]]]);
  assert.deepEqual(here.members()[0].info, {}, "a kept join replaces the list's member");
  assert.deepEqual(seen.events, [], "a first list says who is here, not who came");
  assert.equal(seen.changes, 1);
  socket.receive(leave("15", "c9", "ghost")); // written by another process's heartbeat

  // Live: grouped by user, join and leave only when a user's first connection comes or last one goes.
  socket.receive(join("16", "c4", "bob", { n: 2 }));
  assert.deepEqual(users(here), [["bob", ["c2", "c4"]], ["cat", ["c3"]]]);
  assert.deepEqual(here.members()[0].info, { n: 2 }, "the newest connection's info");
  socket.receive(leave("17", "c2", "bob"));
  assert.deepEqual(seen.events, [["leave", "ghost"]], "bob still has a connection");
  socket.receive(leave("18", "c4", "bob"));
  socket.receive(leave("18", "c4", "bob")); // a repeat: dropped by the subscription
  socket.receive(leave("19", "c4", "bob")); // idempotent
  socket.receive(join("20", "c3", "cat")); // idempotent
  socket.receive(join("21", "c6", "dan"));
  assert.deepEqual(seen.events, [["leave", "ghost"], ["leave", "bob"], ["join", "dan"]]);
  assert.equal(seen.changes, 6, "one change per real change, none for the idempotent ones");
  assert.deepEqual(here.connections(), [
    { connection: "c3", user: "cat", info: {} },
    { connection: "c6", user: "dan", info: {} },
  ]);
  rt.close();
});

test("over a WebSocket: after a reconnect it joins again, asks again and fires the difference", async () => {
  const { rt, here, seen, socket } = await wsPresence({ name: "ada" });
  socket.receive({ type: "subscribed", channel: "chat:a", last_id: "10", ref: socket.sent[0].ref });
  socket.receive({ type: "joined", channel: "chat:a", connection: "c5", user: "ada", ref: socket.sent[1].ref });
  const members = [
    { connection: "c2", user: "bob", info: {} },
    { connection: "c5", user: "ada", info: {} },
  ];
  socket.receive({ type: "presence", channel: "chat:a", cursor: "10", members, ref: socket.sent[2].ref });
  socket.receive(join("11", "c3", "cat"));
  assert.deepEqual(seen.events, [["join", "cat"]]);

  socket.drop(1006);
  assert.equal(here.self, null, "a closed socket is no longer present");
  await until(() => FakeSocket.all.length === 2);
  const second = FakeSocket.all[1];
  second.open();
  assert.deepEqual(second.sent.map(withoutRef), [{ type: "subscribe", channel: "chat:a", last_id: "11" }]);
  second.receive({ type: "subscribed", channel: "chat:a", last_id: "11", ref: second.sent[0].ref });
  assert.deepEqual(second.sent.slice(1).map(withoutRef), [
    { type: "join", channel: "chat:a", name: "ada" },
    { type: "presence", channel: "chat:a" },
  ]);
  second.receive({ type: "joined", channel: "chat:a", connection: "c8", user: "ada", ref: second.sent[1].ref });
  second.receive(leave("12", "c5", "ada"));
  second.receive(join("13", "c8", "ada"));
  const now = [
    { connection: "c3", user: "cat", info: {} },
    { connection: "c8", user: "ada", info: {} },
    { connection: "c7", user: "dan", info: {} },
  ];
  second.receive({ type: "presence", channel: "chat:a", cursor: "13", members: now, ref: second.sent[2].ref });
  assert.deepEqual(seen.events, [["join", "cat"], ["leave", "bob"], ["join", "dan"]]);
  assert.deepEqual(users(here), [["cat", ["c3"]], ["ada", ["c8"]], ["dan", ["c7"]]]);
  assert.deepEqual(here.self, { connection: "c8", user: "ada" });

  // A reset of the channel: ask again (no new join: the socket is still present).
  const sent = second.sent.length;
  second.receive({ type: "reset", channel: "chat:a", reason: "expired", last_id: "13", resume_id: "20" });
  assert.deepEqual(second.sent.slice(sent).map(withoutRef), [{ type: "presence", channel: "chat:a" }]);
  rt.close();
});

test("update() leaves and joins again under the new name; leave() leaves and ends its own subscription", async () => {
  const { rt, here, socket } = await wsPresence({ name: "guest" });
  socket.receive({ type: "subscribed", channel: "chat:a", last_id: "1", ref: socket.sent[0].ref });
  socket.receive({ type: "joined", channel: "chat:a", connection: "c1", user: "guest", ref: socket.sent[1].ref });
  let sent = socket.sent.length;
  here.update({ name: "bob" });
  assert.deepEqual(socket.sent.slice(sent).map(withoutRef), [
    { type: "leave", channel: "chat:a" },
    { type: "join", channel: "chat:a", name: "bob" },
  ]);
  sent = socket.sent.length;
  here.leave();
  here.leave();
  assert.deepEqual(socket.sent.slice(sent).map(withoutRef), [
    { type: "leave", channel: "chat:a" },
    { type: "unsubscribe", channel: "chat:a" },
  ]);
  assert.equal(rt.lastId("chat:a"), null);
  assert.deepEqual(here.members(), []);
  rt.close();
});

test("a presence shares the page's subscription: one subscribe, the page gets only the names it asked for", async () => {
  FakeSocket.all = [];
  const rt = new Realtime(wsOptions);
  const got = [];
  const sub = rt.subscribe("chat:a", { lastId: "0", onEvent: (e) => got.push(e.event) });
  const here = rt.presence("chat:a", { join: false });
  await wait(0);
  const socket = FakeSocket.all[0];
  socket.open();
  socket.receive({ type: "subscribed", channel: "chat:a", last_id: "0", ref: socket.sent[0].ref });
  assert.deepEqual(socket.sent.map(withoutRef), [
    { type: "subscribe", channel: "chat:a", last_id: "0" },
    { type: "presence", channel: "chat:a" },
  ]);
  socket.receive({ type: "presence", channel: "chat:a", cursor: "3", members: [], ref: socket.sent[1].ref });
  socket.receive({ type: "event", channel: "chat:a", id: "4", event: "message", data: { text: "hi" } });
  socket.receive(join("5", "c1", "ann"));
  assert.deepEqual(got, ["message"]);
  assert.deepEqual(users(here), [["ann", ["c1"]]]);
  here.leave();
  assert.equal(socket.sent.at(-1).type, "presence", "leave() of a watcher sends nothing and keeps the page's subscription");
  assert.equal(sub.active, true);
  rt.close();
});

test("a presence on a subscription that is already live asks at once", async () => {
  FakeSocket.all = [];
  const rt = new Realtime(wsOptions);
  rt.subscribe("chat:a");
  await wait(0);
  const socket = FakeSocket.all[0];
  socket.open();
  socket.receive({ type: "subscribed", channel: "chat:a", last_id: "7", ref: socket.sent[0].ref });
  rt.presence("chat:a", { name: "ada" });
  assert.deepEqual(socket.sent.slice(1).map(withoutRef), [
    { type: "join", channel: "chat:a", name: "ada" },
    { type: "presence", channel: "chat:a" },
  ]);
  rt.close();
});

test("a refused join is an error of the presence, which goes on watching and does not ask again", async () => {
  const { rt, here, seen, socket } = await wsPresence({ name: "ada" });
  socket.receive({ type: "subscribed", channel: "chat:a", last_id: "1", ref: socket.sent[0].ref });
  socket.receive({ type: "error", code: "forbidden", message: "no", ref: socket.sent[1].ref });
  socket.receive({ type: "presence", channel: "chat:a", cursor: "1", members: [], ref: socket.sent[2].ref });
  assert.deepEqual(seen.errors, ["forbidden"]);
  assert.equal(here.self, null);
  assert.equal(here.ready, true);
  socket.drop(1006);
  await until(() => FakeSocket.all.length === 2);
  const second = FakeSocket.all[1];
  second.open();
  second.receive({ type: "subscribed", channel: "chat:a", last_id: "1", ref: second.sent[0].ref });
  assert.deepEqual(second.sent.slice(1).map(withoutRef), [{ type: "presence", channel: "chat:a" }]);
  rt.close();
});

// SSE ---------------------------------------------------------------------

const sseEvent = (id, type, data) => `channel: chat:a\nid: ${id}\nevent: ${type}\ndata: ${JSON.stringify(data)}\n\n`;

test("over SSE: the stream's URL joins, the presence/ endpoint answers, the kept events apply", async () => {
  const fetch = fakeFetch();
  const rt = new Realtime({ transport: "sse", sseUrl: "/events/", fetch, random: () => 0.5, minDelay: 10 });
  const here = rt.presence("chat:a", { name: "ada", info: { colour: "teal" } });
  const seen = watch(here);
  const call = await fetch.next();
  assert.equal(call.query.getAll("channel").join(), "chat:a");
  assert.equal(call.query.get("presence"), "chat:a");
  assert.equal(call.query.get("name"), "ada");
  assert.deepEqual(JSON.parse(call.query.get("info")), { colour: "teal" });
  assert.equal(call.query.get("include"), "channel");
  // The response names the stream's member on each channel it joined; its user comes with the list.
  const stream = call.open({ "Realtime-Presence": "chat:a c1" });
  const who = await fetch.next();
  assert.equal(who.url, "/events/presence/?channel=chat%3Aa");
  assert.equal(who.init.credentials, "same-origin");
  assert.deepEqual(here.self, { connection: "c1", user: null });
  // The stream's own join and another come before the answer: kept, and applied to it.
  stream.send("id: 20\n\n" + sseEvent(21, "presence.join", { connection: "c1", user: "ada", info: {} }));
  stream.send(sseEvent(22, "presence.join", { connection: "c2", user: "bob", info: {} }));
  await until(() => rt.lastId("chat:a") === "22");
  const members = [{ connection: "c1", user: "ada", info: {} }];
  who.answer(200, JSON.stringify({ channel: "chat:a", cursor: "21", members }), { "Content-Type": "application/json" });
  await until(() => here.ready);
  assert.deepEqual(users(here), [["ada", ["c1"]], ["bob", ["c2"]]]);
  assert.deepEqual(here.self, { connection: "c1", user: "ada" });
  assert.deepEqual(seen.events, []);
  stream.send(sseEvent(23, "presence.leave", { connection: "c2", user: "bob" }));
  await until(() => seen.events.length === 1);
  assert.deepEqual(seen.events, [["leave", "bob"]]);

  // A new name is a new URL: the stream reopens (leaving, joining again) and asks again.
  here.update({ name: "bob" });
  const again = await fetch.next();
  assert.ok(call.aborted);
  assert.equal(again.query.get("name"), "bob");
  assert.equal(again.query.get("lastEventId"), "23");
  again.open({ "Realtime-Presence": "chat:a c9, chat:b c10" });
  const whoAgain = await fetch.next();
  assert.deepEqual(here.self, { connection: "c9", user: null });
  assert.equal(whoAgain.url, "/events/presence/?channel=chat%3Aa");
  rt.close();
});

test("over SSE: a refused join is reported in band; the channel streams on and the stream does not reopen", async () => {
  const fetch = fakeFetch();
  const rt = new Realtime({ transport: "sse", sseUrl: "/events/", fetch, random: () => 0.5 });
  const got = [];
  rt.subscribe("chat:a", { onEvent: (e) => got.push(e.data) });
  const here = rt.presence("chat:a", { name: "" });
  const seen = watch(here);
  const stream = (await fetch.next()).open();
  const who = await fetch.next();
  const refusal = { channel: "chat:a", code: "bad_presence", message: "give a name" };
  stream.send(`event: error\ndata: ${JSON.stringify(refusal)}\n\n` + sseEvent(5, "message", "hi"));
  await until(() => got.length === 1);
  assert.deepEqual(seen.errors, ["bad_presence"]);
  assert.equal(here.self, null);
  who.answer(200, JSON.stringify({ channel: "chat:a", cursor: "4", members: [] }));
  await until(() => here.ready);
  await wait(20);
  assert.equal(fetch.calls.length, 2, "no reopen for a refused join");
  rt.close();
});

test("over SSE: a watcher adds no presence= and a failed question is asked again after a backoff", async () => {
  const fetch = fakeFetch();
  const rt = new Realtime({ transport: "sse", sseUrl: "/events/?token=x", fetch, random: () => 0.5, minDelay: 10 });
  const here = rt.presence("chat:a", { join: false });
  const seen = watch(here);
  const call = await fetch.next();
  assert.equal(call.query.get("presence"), null);
  assert.equal(call.query.get("name"), null);
  call.open();
  const first = await fetch.next();
  assert.equal(first.url, "/events/presence/?token=x&channel=chat%3Aa");
  first.answer(503, "busy", { "Retry-After": "0" });
  const second = await fetch.next();
  second.answer(200, JSON.stringify({ channel: "chat:a", cursor: "1", members: [] }));
  await until(() => here.ready);
  assert.deepEqual(seen.errors, ["http"]);
  rt.close();
});

test("a subscribe() after presence() takes the presence's subscription over, from its own lastId", async () => {
  FakeSocket.all = [];
  const rt = new Realtime(wsOptions);
  const here = rt.presence("chat:a", { join: false });
  const got = [];
  const sub = rt.subscribe("chat:a", { lastId: "0", onEvent: (e) => got.push(e.id) });
  await wait(0);
  const socket = FakeSocket.all[0];
  socket.open();
  assert.deepEqual(socket.sent.map(withoutRef), [{ type: "subscribe", channel: "chat:a", last_id: "0" }]);
  socket.receive({ type: "subscribed", channel: "chat:a", last_id: "0", ref: socket.sent[0].ref });
  socket.receive({ type: "presence", channel: "chat:a", cursor: "1", members: [], ref: socket.sent[1].ref });
  socket.receive({ type: "event", channel: "chat:a", id: "1", event: "message", data: "old" });
  // Replayed history after the answer: a connection that came and went, then one still here.
  socket.receive(join("2", "c1", "gone"));
  socket.receive(leave("3", "c1", "gone"));
  socket.receive(join("4", "c2", "ann"));
  assert.deepEqual(got, ["1"]);
  assert.deepEqual(users(here), [["ann", ["c2"]]]);

  // The page unsubscribes: it hears nothing more, and the presence keeps the subscription.
  sub.unsubscribe();
  socket.receive({ type: "event", channel: "chat:a", id: "5", event: "message", data: "new" });
  socket.receive(leave("6", "c2", "ann"));
  assert.deepEqual(got, ["1"]);
  assert.deepEqual(here.members(), []);
  assert.ok(!socket.sent.some((m) => m.type === "unsubscribe"));
  here.leave();
  assert.equal(socket.sent.at(-1).type, "unsubscribe");
  rt.close();
});
