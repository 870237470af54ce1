// Each transport module on its own, driven through a host that has exactly the members
// Realtime._host() documents and throws on any other: a transport that reached into its
// Realtime (host._subs, host._attempt = 0...) would fail here.
import assert from "node:assert/strict";
import { test } from "node:test";

import { DEFAULTS } from "../../js/src/options.mjs";
import { SSETransport } from "../../js/src/sse.mjs";
import { Subscription } from "../../js/src/subscription.mjs";
import { WebSocketTransport } from "../../js/src/websocket.mjs";
import { FakeSocket, fakeFetch, until } from "./fakes.mjs";

globalThis.location = new URL("http://testserver/page/");

const CALLBACKS = [
  "queueSync", "opened", "lost", "stopped", "serverRetry", "live", "deliver", "reset", "refuse", "report",
  "joined", "gone", "joinRefused", "answered", "unanswered",
];

/** A host of `subs` (Subscriptions) recording each callback, strict about what is read of it. */
function strictHost(subs, options) {
  const calls = [];
  const members = {
    options: { ...DEFAULTS, ...options },
    subscriptions: () => subs.filter((sub) => sub.active),
    subscription: (channel) => subs.find((sub) => sub.active && sub.channel === channel),
    presences: () => [],
    presence: () => undefined,
    joins: () => null,
  };
  for (const name of CALLBACKS) members[name] = (...args) => calls.push([name, ...args]);
  const host = new Proxy(Object.freeze(members), {
    get(target, name) {
      if (!Object.hasOwn(target, name)) throw new Error(`a transport read host.${String(name)}, not in the host interface`);
      return target[name];
    },
  });
  return { host, calls, of: (name) => calls.filter(([called]) => called === name).map(([, ...args]) => args) };
}

const subscription = (channel, lastId) => new Subscription(null, channel, { lastId, events: "*" }, { unsubscribe() {} });

test("the WebSocket transport subscribes, delivers and reports a loss through its host alone", async () => {
  FakeSocket.all = [];
  const chat = subscription("chat", "5");
  const { host, of } = strictHost([chat], { WebSocket: FakeSocket });
  const transport = new WebSocketTransport(host);
  transport.connect();
  const socket = FakeSocket.all[0];
  assert.equal(socket.url, "ws://testserver/ws/");
  socket.open();
  assert.equal(of("opened").length, 1);
  const { ref, ...subscribe } = socket.sent[0];
  assert.deepEqual(subscribe, { type: "subscribe", channel: "chat", last_id: "5" });
  socket.receive({ type: "subscribed", channel: "chat", last_id: "5", ref });
  assert.deepEqual(of("live"), [[chat]]);
  socket.receive({ type: "event", channel: "chat", id: "6", event: "message", data: { n: 6 } });
  assert.deepEqual(of("deliver"), [[chat, { id: "6", event: "message", data: { n: 6 }, text: false }]]);
  socket.receive({ type: "error", code: "forbidden", message: "no", ref: 999 });
  assert.deepEqual(of("report").map(([error]) => error.code), ["forbidden"]);
  socket.drop(1006);
  assert.deepEqual(of("lost"), [[{ opened: true, atOnce: false, after: null }]]);
  assert.equal(transport.connected, false);
});

test("the SSE transport streams its host's subscriptions from their cursors and delivers through the host", async () => {
  const fetch = fakeFetch();
  const a = subscription("a", "7");
  const b = subscription("b", "9");
  const { host, of } = strictHost([a, b], { fetch });
  const transport = new SSETransport(host);
  transport.connect();
  const call = await fetch.next();
  assert.deepEqual(call.query.getAll("channel"), ["a", "b"]);
  assert.equal(call.query.get("lastEventId"), "7");
  const stream = call.open();
  await until(() => of("opened").length === 1);
  assert.deepEqual(of("live"), [[a], [b]]);
  stream.send("retry: 2500\nchannel: b\nid: 10\nevent: note\ndata: {\"n\":10}\n\n");
  await until(() => of("deliver").length === 1);
  assert.deepEqual(of("serverRetry"), [[2500]]);
  assert.deepEqual(of("deliver"), [[b, { id: "10", event: "note", data: '{"n":10}', text: true }]]);
  stream.end();
  await until(() => of("lost").length === 1);
  assert.deepEqual(of("lost"), [[{ opened: true, retryAfter: undefined, error: null }]]);
  assert.equal(String(a.cursor), "10", "a dropped stream moves each subscription to what the stream covered");
});

test("a transport that reads outside the host interface fails", () => {
  const { host } = strictHost([], {});
  assert.throws(() => host._subs, /host\._subs, not in the host interface/);
});
