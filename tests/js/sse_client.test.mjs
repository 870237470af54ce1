// The SSE transport of realtime.js, driven through a fake fetch(): routing, per-channel errors, retry.
import assert from "node:assert/strict";
import { test } from "node:test";

import { Realtime, backoffDelay, parseRetryAfter } from "../../django_realtime/static/django_realtime/realtime.mjs";
import { fakeFetch, until, wait } from "./fakes.mjs";

function client(options = {}) {
  const fetch = fakeFetch();
  const realtime = new Realtime({ transport: "sse", sseUrl: "/events/", fetch, random: () => 0.5, ...options });
  const log = { errors: [], retries: [], states: [] };
  realtime.on("error", (e) => log.errors.push(e));
  realtime.on("retry", (r) => log.retries.push(r));
  realtime.on("state", ({ state }) => log.states.push(state));
  return { realtime, fetch, log };
}

const event = (channel, id, data, name = "message") =>
  `channel: ${channel}\nid: ${id}\nevent: ${name}\ndata: ${JSON.stringify(data)}\n\n`;

test("one stream names every channel, asks for channels and starts at the lowest last id", async () => {
  const { realtime, fetch } = client();
  realtime.subscribe("chat:b", { lastId: "19" });
  realtime.subscribe("chat:a", { lastId: "5" });
  const call = await fetch.next();
  assert.equal(call.url, "/events/?channel=chat%3Aa&channel=chat%3Ab&include=channel&lastEventId=5");
  assert.equal(call.init.headers.Accept, "text/event-stream");
  realtime.close();
});

test("two channels with the same event name each get only their own events, once", async () => {
  const { realtime, fetch } = client();
  const got = { a: [], b: [] };
  realtime.subscribe("chat:a", { lastId: "0", onEvent: (e) => got.a.push([e.id, e.data.n]) });
  realtime.subscribe("chat:b", { lastId: "0", onEvent: (e) => got.b.push([e.id, e.data.n]) });
  const stream = (await fetch.next()).open();
  stream.send("retry: 3000\n\n" + event("chat:a", 1, { n: "a1" }) + event("chat:b", 2, { n: "b1" }));
  stream.send(event("chat:a", 3, { n: "a2" }) + event("chat:a", 3, { n: "again" }));
  await until(() => got.a.length === 2 && got.b.length === 1);
  await wait(10);
  assert.deepEqual(got, { a: [["1", "a1"], ["3", "a2"]], b: [["2", "b1"]] });
  assert.equal(realtime.state, "live");
  realtime.close();
});

test("an in-band error fails its subscription alone; the stream goes on without reopening", async () => {
  const { realtime, fetch, log } = client();
  const errors = [];
  const got = [];
  realtime.subscribe("secret", { onError: (e) => errors.push([e.code, e.message, e.channel]) });
  realtime.subscribe("chat:ok", { onEvent: (e) => got.push(e.data) });
  const stream = (await fetch.next()).open();
  const refusal = { channel: "secret", code: "forbidden", message: "not allowed to subscribe to secret" };
  stream.send(`retry: 3000\n\nevent: error\ndata: ${JSON.stringify(refusal)}\n\n` + event("chat:ok", 8, "hi"));
  await until(() => got.length === 1);
  assert.deepEqual(errors, [["forbidden", "not allowed to subscribe to secret", "secret"]]);
  assert.deepEqual(log.errors.map((e) => e.code), ["forbidden"]);
  assert.equal(realtime.lastId("secret"), null);
  await wait(20);
  assert.equal(fetch.calls.length, 1, "a refused channel reopens nothing");
  assert.equal(realtime.state, "live");
  realtime.close();
});

for (const status of [400, 401, 403, 404]) {
  test(`HTTP ${status} stops: every subscription's onError gets the server's reason, and nothing retries`, async () => {
    const { realtime, fetch, log } = client();
    const errors = [];
    realtime.subscribe("chat:a", { onError: (e) => errors.push([e.channel, e.status, e.message]) });
    realtime.subscribe("chat:b", { onError: (e) => errors.push([e.channel, e.status, e.message]) });
    (await fetch.next()).answer(status, "Not for you\n", { "Content-Type": "text/plain" });
    await until(() => errors.length === 2);
    assert.deepEqual(errors, [["chat:a", status, "Not for you"], ["chat:b", status, "Not for you"]]);
    assert.equal(log.errors.length, 1, "the page-wide error comes once");
    assert.equal(realtime.state, "failed");
    await wait(300);
    assert.equal(fetch.calls.length, 1);
    assert.deepEqual(log.retries, []);
    realtime.close();
  });
}

test("a 503 is retried no sooner than its Retry-After, then resumes from the last id", async () => {
  const { realtime, fetch, log } = client({ minDelay: 10 });
  const got = [];
  realtime.subscribe("chat:a", { lastId: "4", onEvent: (e) => got.push(e.id) });
  (await fetch.next()).answer(503, "busy", { "Retry-After": "1" });
  await until(() => log.retries.length === 1);
  assert.ok(log.retries[0].delay >= 1000 && log.retries[0].delay <= 1200, `delay ${log.retries[0].delay}`);
  assert.equal(log.retries[0].error.status, 503);
  assert.deepEqual(log.errors.map((e) => [e.code, e.status]), [["http", 503]]);
  const started = Date.now();
  const again = await fetch.next(3000);
  assert.ok(Date.now() - started >= 900, "waited for Retry-After");
  assert.equal(again.query.get("lastEventId"), "4");
  again.open().send(event("chat:a", 5, 1));
  await until(() => got.length === 1);
  realtime.close();
});

test("network errors back off with jitter from the server's retry:, and a broken stream resumes exactly", async () => {
  const { realtime, fetch, log } = client({ minDelay: 10_000, maxDelay: 400 });
  const got = [];
  realtime.subscribe("chat:a", { lastId: "0", onEvent: (e) => got.push(e.id) });
  const first = (await fetch.next()).open();
  first.send("retry: 40\n\n" + event("chat:a", 1, 1) + event("chat:a", 2, 2));
  await until(() => got.length === 2);
  first.break();
  const second = await fetch.next();
  assert.equal(second.query.get("lastEventId"), "2");
  second.fail();
  (await fetch.next()).fail();
  const fourth = await fetch.next();
  // Equal jitter (random 0.5) of 40 ms doubling: 30, 60, 120: the server's retry:, not minDelay.
  assert.deepEqual(log.retries.map((r) => r.delay), [30, 60, 120]);
  assert.deepEqual(log.states, ["live", "reconnecting"]);
  fourth.open().send(event("chat:a", 2, "seen") + event("chat:a", 3, 3));
  await until(() => got.length === 3);
  assert.deepEqual(got, ["1", "2", "3"]);
  realtime.close();
});

test("a clean end of stream reconnects after the server's retry delay from the cursor", async () => {
  const { realtime, fetch, log } = client();
  realtime.subscribe("chat:a", { lastId: "0" });
  const stream = (await fetch.next()).open();
  stream.send("retry: 20\n\n" + event("chat:a", 7, 1));
  await wait(10);
  stream.end();
  const next = await fetch.next();
  assert.equal(next.query.get("lastEventId"), "7");
  assert.deepEqual(log.retries.map((r) => r.delay), [15]);
  realtime.close();
});

test("a 200 that is not an event stream is reported and retried", async () => {
  const { realtime, fetch, log } = client({ minDelay: 10 });
  realtime.subscribe("chat:a");
  (await fetch.next()).answer(200, "<html>", { "Content-Type": "text/html" });
  await fetch.next();
  assert.deepEqual(log.errors.map((e) => e.code), ["bad_content_type"]);
  realtime.close();
});

test("data that is not JSON is an error of its subscription unless it asks for text", async () => {
  const { realtime, fetch } = client();
  const errors = [];
  const json = [];
  const text = [];
  realtime.subscribe("a", { onEvent: (e) => json.push(e.data), onError: (e) => errors.push([e.code, e.id]) });
  realtime.subscribe("b", { data: "text", onEvent: (e) => text.push(e.data) });
  const stream = (await fetch.next()).open();
  stream.send("channel: a\nid: 1\ndata: <li>hi</li>\n\nchannel: b\nid: 2\ndata: <li>hi</li>\n\nchannel: a\nid: 3\ndata: {\"ok\":1}\n\n");
  await until(() => json.length === 1 && text.length === 1);
  assert.deepEqual(errors, [["bad_data", "1"]]);
  assert.deepEqual(json, [{ ok: 1 }]);
  assert.deepEqual(text, ["<li>hi</li>"]);
  assert.equal(realtime.lastId("a"), "3");
  realtime.close();
});

test("a reset names its channels; the cursor moves to resume_id", async () => {
  const { realtime, fetch } = client();
  const resets = [];
  realtime.subscribe("a", { lastId: "50", onReset: (r) => resets.push(r) });
  const stream = (await fetch.next()).open();
  stream.send('id: 3\nevent: reset\ndata: {"reason":"unknown","last_event_id":"50","resume_id":"3","channels":["a"]}\n\n');
  await until(() => resets.length === 1);
  assert.deepEqual(resets, [{ channel: "a", reason: "unknown", lastId: "50", resumeId: "3" }]);
  assert.equal(realtime.lastId("a"), "3");
  realtime.close();
});

test("subscribing and unsubscribing reopen the stream for the new set of channels", async () => {
  const { realtime, fetch } = client();
  const a = realtime.subscribe("a", { lastId: "1" });
  const first = await fetch.next();
  first.open().send(event("a", 9, 1));
  await until(() => realtime.lastId("a") === "9");
  realtime.subscribe("b");
  const second = await fetch.next();
  assert.ok(first.aborted);
  assert.equal(second.url, "/events/?channel=a&channel=b&include=channel&lastEventId=9");
  a.unsubscribe();
  const third = await fetch.next();
  assert.equal(third.url, "/events/?channel=b&include=channel&lastEventId=9");
  realtime.close();
});

test("a channel unsubscribed and subscribed again in one go gets the stream's next events", async () => {
  const { realtime, fetch } = client();
  const old = [];
  const first = realtime.subscribe("a", { onEvent: (e) => old.push(e.id) });
  const stream = (await fetch.next()).open();
  stream.send("retry: 3000\n\n" + event("a", 3, 1));
  await until(() => realtime.lastId("a") === "3");
  first.unsubscribe();
  const got = [];
  realtime.subscribe("a", { onEvent: (e) => got.push(e.id) });
  await wait(10);
  stream.send(event("a", 4, 2));
  await until(() => got.length === 1);
  assert.deepEqual([old, got], [["3"], ["4"]]);
  assert.equal(fetch.calls.length, 1, "the same channels: the stream goes on");
  realtime.close();
});

test("Subscriptions and the Realtime are EventTargets as well as callbacks", async () => {
  const { realtime, fetch } = client();
  const sub = realtime.subscribe("a");
  const seen = [];
  sub.addEventListener("event", (e) => seen.push(["sub", e.detail.id]));
  realtime.addEventListener("event", (e) => seen.push(["realtime", e.detail.id]));
  (await fetch.next()).open().send(event("a", 4, 1));
  await until(() => seen.length === 2);
  assert.deepEqual(seen, [["sub", "4"], ["realtime", "4"]]);
  realtime.close();
});

test("backoffDelay: equal jitter, doubling up to maxDelay", () => {
  assert.deepEqual([0, 1, 2, 6, 12].map((n) => backoffDelay(n, { random: () => 0 })), [250, 500, 1000, 15000, 15000]);
  assert.deepEqual([0, 1, 2, 6, 12].map((n) => backoffDelay(n, { random: () => 1 })), [500, 1000, 2000, 30000, 30000]);
});

test("parseRetryAfter reads seconds and HTTP dates and refuses the rest", () => {
  const now = Date.parse("Wed, 02 Dec 2026 20:00:00 GMT");
  assert.equal(parseRetryAfter("3", now), 3000);
  assert.equal(parseRetryAfter("Wed, 02 Dec 2026 20:00:05 GMT", now), 5000);
  assert.equal(parseRetryAfter("Wed, 02 Dec 2026 19:00:00 GMT", now), 0);
  for (const bad of [null, "", "-1", "1.5", "soon", "12345678901234567890x"]) assert.equal(parseRetryAfter(bad, now), null, bad);
});

test("a stream from now says where it starts: a reconnect before any event resumes from there", async () => {
  const { realtime, fetch } = client({ minDelay: 10 });
  realtime.subscribe("chat:a");
  const first = await fetch.next();
  assert.equal(first.query.get("lastEventId"), null);
  const stream = first.open();
  stream.send("retry: 10\n\nid: 40\n\n");
  await wait(10);
  stream.break();
  const second = await fetch.next();
  assert.equal(second.query.get("lastEventId"), "40");
  realtime.close();
});

// What the server refuses fails what it names, and nothing else (docs/sse.md#per-channel-errors).
// A refused channel must never take the page's other channels down with it, nor be asked
// for again: a page that subscribes to many channels (a room and the pair channels of
// the people in it) lives on when one of them is refused.

const refusal = (channel, code) =>
  `event: error\ndata: ${JSON.stringify({ channel, code, message: `${code}: ${channel}` })}\n\n`;

/** The next request of the stream itself; questions to the presence/ endpoint are answered with no members. */
async function nextStream(fetch) {
  for (;;) {
    const call = await fetch.next();
    if (!call.url.startsWith("/events/presence/")) return call;
    call.answer(200, JSON.stringify({ channel: call.query.get("channel"), cursor: "0", members: [] }));
  }
}

// Every code the endpoint sends for a refused channel, and one it may send some day.
for (const code of ["forbidden", "invalid_channel", "too_many_channels", "a_code_of_a_later_server"]) {
  test(`an in-band ${code} fails its channel alone; the others stream on, and no later stream asks for it`, async () => {
    const { realtime, fetch, log } = client({ minDelay: 10 });
    const got = { a: [], b: [], c: [] };
    const errors = { a: [], b: [], c: [] };
    for (const name of ["a", "b", "c"]) {
      realtime.subscribe(`chat:${name}`, {
        onEvent: (e) => got[name].push(e.id),
        onError: (e) => errors[name].push([e.code, e.channel]),
      });
    }
    const stream = (await fetch.next()).open();
    stream.send("retry: 10\n\n" + refusal("chat:b", code) + event("chat:a", 5, 1) + event("chat:c", 6, 2));
    await until(() => got.a.length === 1 && got.c.length === 1);
    assert.deepEqual(errors, { a: [], b: [[code, "chat:b"]], c: [] });
    assert.deepEqual(log.errors.map((e) => [e.code, e.channel]), [[code, "chat:b"]]);
    assert.equal(realtime.state, "live");
    await wait(20);
    assert.equal(fetch.calls.length, 1, "the stream goes on: nothing reopens for a refused channel");

    // A stream that breaks comes back without it...
    stream.break();
    const again = await fetch.next();
    assert.deepEqual(again.query.getAll("channel"), ["chat:a", "chat:c"]);
    again.open().send(event("chat:a", 7, 3) + event("chat:c", 8, 4));
    await until(() => got.a.length === 2 && got.c.length === 2);
    // ...and so does a stream reopened for a new channel.
    realtime.subscribe("chat:d");
    const third = await fetch.next();
    assert.deepEqual(third.query.getAll("channel"), ["chat:a", "chat:c", "chat:d"]);
    assert.deepEqual(got.b, []);
    assert.equal(errors.b.length, 1, "refused once, told once");
    realtime.close();
  });
}

for (const code of ["presence_forbidden", "bad_presence"]) {
  test(`an in-band ${code} refuses the join alone: its channel streams on, and no later stream asks to join`, async () => {
    const { realtime, fetch } = client({ minDelay: 10 });
    const got = [];
    const subErrors = [];
    realtime.subscribe("chat:a", { onEvent: (e) => got.push(e.id), onError: (e) => subErrors.push(e.code) });
    realtime.subscribe("chat:b", { onEvent: (e) => got.push(e.id), onError: (e) => subErrors.push(e.code) });
    const here = realtime.presence("chat:a", { name: "ann" });
    const presenceErrors = [];
    here.addEventListener("error", (e) => presenceErrors.push(e.detail.code));
    const first = await nextStream(fetch);
    assert.deepEqual(first.query.getAll("presence"), ["chat:a"]);
    const stream = first.open();
    stream.send("retry: 10\n\n" + refusal("chat:a", code) + event("chat:a", 5, 1) + event("chat:b", 6, 2));
    await until(() => got.length === 2);
    assert.deepEqual(presenceErrors, [code]);
    assert.deepEqual(subErrors, []);
    assert.equal(realtime.state, "live");

    stream.break();
    const again = await nextStream(fetch);
    assert.deepEqual(again.query.getAll("channel"), ["chat:a", "chat:b"]);
    assert.deepEqual(again.query.getAll("presence"), [], "a refused join is not asked for again");
    again.open().send(event("chat:a", 7, 3));
    await until(() => got.length === 3);
    assert.deepEqual(presenceErrors, [code]);
    realtime.close();
  });
}

for (const status of [400, 403]) {
  test(`a request refused whole with ${status} fails the subscriptions it carried, not one made afterwards`, async () => {
    const { realtime, fetch } = client();
    const errors = [];
    const onError = (e) => errors.push([e.channel, e.status]);
    realtime.subscribe("chat:a", { onError });
    realtime.subscribe("chat:b", { onError });
    (await fetch.next()).answer(status, "Too many channels: at most 16 per connection, got 17\n");
    await until(() => errors.length === 2);
    assert.deepEqual(errors, [["chat:a", status], ["chat:b", status]]);
    assert.equal(realtime.state, "failed");

    // The Realtime is not dead for good: a channel subscribed now gets a stream of its own,
    // which does not ask for the refused ones again.
    const got = [];
    realtime.subscribe("chat:c", { onEvent: (e) => got.push(e.id), onError });
    const next = await fetch.next();
    assert.deepEqual(next.query.getAll("channel"), ["chat:c"]);
    next.open().send(event("chat:c", 4, 1));
    await until(() => got.length === 1);
    assert.equal(realtime.state, "live");
    assert.equal(errors.length, 2);
    realtime.close();
  });
}

test("a refusal of a request the page has already replaced fails nothing", async () => {
  const { realtime, fetch, log } = client();
  const got = [];
  const errors = [];
  realtime.subscribe("chat:a", { onEvent: (e) => got.push(e.id), onError: (e) => errors.push(e.channel) });
  const first = await fetch.next();
  realtime.subscribe("chat:b", { onEvent: (e) => got.push(e.id), onError: (e) => errors.push(e.channel) });
  const second = await fetch.next();
  assert.ok(first.aborted);
  first.answer(400, "Too many channels\n");
  second.open().send(event("chat:a", 3, 1) + event("chat:b", 4, 2));
  await until(() => got.length === 2);
  await wait(20);
  assert.deepEqual([errors, log.errors], [[], []]);
  assert.equal(realtime.state, "live");
  realtime.close();
});
