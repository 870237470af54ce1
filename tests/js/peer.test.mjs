// Realtime.peer(): WebRTC signalling over a channel, with a fake RTCPeerConnection and the fake
// WebSocket (and fetch, for SSE). The browser tests (tests/test_webrtc.py) connect real ones.
import assert from "node:assert/strict";
import { test } from "node:test";

import { Realtime, pairChannel } from "../../django_realtime/static/django_realtime/realtime.mjs";
import { FakeSocket, fakeFetch, memoryStorage, until, wait } from "./fakes.mjs";

globalThis.location = new URL("http://testserver/call/2/");
const CHANNEL = "call:1-2";

/** A WebSocket whose server acknowledges every publish. */
class AckingSocket extends FakeSocket {
  send(text) {
    super.send(text);
    const message = JSON.parse(text);
    if (message.type === "publish") {
      AckingSocket.id += 1;
      queueMicrotask(() => this.receive({ type: "ack", channel: message.channel, id: String(AckingSocket.id), ref: message.ref }));
    }
  }
}
AckingSocket.id = 100;

/** Just enough of RTCPeerConnection for the signalling: descriptions, candidates, a data channel. */
class FakePeerConnection {
  constructor(config) {
    this.config = config;
    this.signalingState = "stable";
    this.localDescription = null;
    this.remoteDescription = null;
    this.calls = [];
    this.closed = false;
    FakePeerConnection.all.push(this);
  }
  createDataChannel(label, options) {
    this.channel = { label, ...options, readyState: "connecting" };
    // Needed only while no description has negotiated the data (SCTP) transport.
    if (!this.remoteDescription) queueMicrotask(() => this.onnegotiationneeded());
    return this.channel;
  }
  async setLocalDescription() {
    const type = this.signalingState === "have-remote-offer" ? "answer" : "offer";
    this.calls.push(["local", type]);
    this.localDescription = { type, sdp: `${type} sdp` };
    this.signalingState = type === "offer" ? "have-local-offer" : "stable";
  }
  async setRemoteDescription(description) {
    // An offer in have-local-offer rolls the local offer back first, as browsers do.
    this.calls.push(["remote", description.type]);
    this.remoteDescription = description;
    this.signalingState = description.type === "offer" ? "have-remote-offer" : "stable";
  }
  async addIceCandidate(candidate) {
    this.calls.push(["candidate", candidate.candidate]);
  }
  addTrack(track) {
    this.calls.push(["track", track.kind]);
    queueMicrotask(() => this.onnegotiationneeded());
  }
  restartIce() {}
  close() {
    this.closed = true;
  }
}
FakePeerConnection.all = [];

async function start(id, options = {}) {
  FakeSocket.all = [];
  FakePeerConnection.all = [];
  const realtime = new Realtime({ WebSocket: AckingSocket, random: () => 0.5, storage: memoryStorage() });
  const peer = realtime.peer(CHANNEL, { id, RTCPeerConnection: FakePeerConnection, helloInterval: 60000, ...options });
  await wait(0);
  const socket = FakeSocket.all[0];
  socket.open();
  socket.receive({ type: "subscribed", channel: CHANNEL, last_id: "10" });
  await until(() => signals(socket).length === 1);
  return { realtime, peer, socket };
}

/** The signals the page published: [event, data]. */
const signals = (socket) => socket.sent.filter((m) => m.type === "publish").map((m) => [m.event, m.data]);
let nextId = 11;
const deliver = (socket, event, data) =>
  socket.receive({ type: "event", channel: CHANNEL, id: String(nextId++), event, data });

test("a page says hello once live, and ignores its own signals when they come back", async () => {
  const { realtime, peer, socket } = await start("m");
  assert.deepEqual(signals(socket), [["webrtc.hello", { from: "m" }]]);
  deliver(socket, "webrtc.hello", { from: "m" });
  deliver(socket, "webrtc.description", { from: "m", to: "z", description: { type: "offer", sdp: "x" } });
  await wait(20);
  assert.equal(FakePeerConnection.all.length, 0, "its own hello started no connection");
  assert.equal(peer.state, "waiting");
  assert.equal(signals(socket).length, 1);
  realtime.close();
});

test("a page's hellos, and its reply to one, carry its info", async () => {
  const { realtime, socket } = await start("z", { info: { user: 2 } });
  deliver(socket, "webrtc.hello", { from: "m" });
  await until(() => signals(socket).length === 3);
  assert.deepEqual(signals(socket).slice(0, 2), [
    ["webrtc.hello", { from: "z", info: { user: 2 } }],
    ["webrtc.hello", { from: "z", to: "m", info: { user: 2 } }],
  ]);
  realtime.close();
});

test("a hello from the other page starts the connection and is answered; the impolite page offers first", async () => {
  const { realtime, peer, socket } = await start("z", { iceServers: [{ urls: "stun:stun.example.com" }] });
  const states = [];
  peer.addEventListener("state", (e) => states.push(e.detail.state));
  deliver(socket, "webrtc.hello", { from: "m" });
  await until(() => signals(socket).length === 3);
  const [pc] = FakePeerConnection.all;
  assert.deepEqual(pc.config, { iceServers: [{ urls: "stun:stun.example.com" }] });
  assert.deepEqual([pc.channel.label, pc.channel.negotiated, pc.channel.id], ["data", true, 0]);
  assert.equal(peer.remoteId, "m");
  assert.equal(peer.polite, false, "the higher session id is impolite");
  assert.deepEqual(signals(socket).slice(1), [
    ["webrtc.hello", { from: "z", to: "m" }],
    ["webrtc.description", { from: "z", to: "m", description: { type: "offer", sdp: "offer sdp" } }],
  ]);
  // Signals for another session, or from an earlier session of the other user, are ignored.
  deliver(socket, "webrtc.description", { from: "m", to: "someone-else", description: { type: "answer", sdp: "a" } });
  deliver(socket, "webrtc.description", { from: "old", to: "z", description: { type: "answer", sdp: "a" } });
  await wait(20);
  assert.deepEqual(pc.calls, [["local", "offer"]]);
  deliver(socket, "webrtc.description", { from: "m", to: "z", description: { type: "answer", sdp: "a" } });
  deliver(socket, "webrtc.candidate", { from: "m", to: "z", candidate: { candidate: "candidate:1" } });
  await until(() => pc.calls.length === 3);
  assert.deepEqual(pc.calls, [["local", "offer"], ["remote", "answer"], ["candidate", "candidate:1"]]);
  assert.deepEqual(states, ["connecting"]);
  realtime.close();
});

test("the polite page adds its data channel and tracks once it has answered the first offer", async () => {
  const track = { kind: "video", stop() {} };
  const stream = { getTracks: () => [track] };
  const { realtime, peer, socket } = await start("m", { stream });
  deliver(socket, "webrtc.hello", { from: "z" });
  await until(() => signals(socket).length === 2);
  const [pc] = FakePeerConnection.all;
  await wait(20);
  assert.equal(peer.polite, true);
  assert.deepEqual(pc.calls, [], "no offer of its own, no channel, no track yet");
  assert.equal(peer.dataChannel, null);
  deliver(socket, "webrtc.description", { from: "z", to: "m", description: { type: "offer", sdp: "theirs" } });
  await until(() => signals(socket).length === 4);
  assert.deepEqual(pc.calls, [["remote", "offer"], ["local", "answer"], ["track", "video"], ["local", "offer"]]);
  assert.equal(peer.dataChannel.id, 0);
  assert.deepEqual(signals(socket).slice(2).map(([, data]) => data.description.type), ["answer", "offer"]);
  realtime.close();
});

test("perfect negotiation: on colliding offers the impolite page keeps its own, the polite one answers", async () => {
  // The impolite page, offering first, gets the polite page's colliding offer.
  let { realtime, peer, socket } = await start("z");
  deliver(socket, "webrtc.hello", { from: "k" });
  await until(() => signals(socket).length === 3); // hello, reply, our offer
  let [pc] = FakePeerConnection.all;
  assert.equal(peer.polite, false);
  assert.equal(pc.signalingState, "have-local-offer");
  deliver(socket, "webrtc.description", { from: "k", to: "z", description: { type: "offer", sdp: "theirs" } });
  deliver(socket, "webrtc.candidate", { from: "k", to: "z", candidate: { candidate: "of the ignored offer" } });
  await wait(20);
  assert.deepEqual(pc.calls.slice(0, 1), [["local", "offer"]]);
  assert.ok(!pc.calls.some(([step, type]) => step === "remote" && type === "offer"), "the colliding offer is ignored");
  assert.equal(signals(socket).length, 3);
  realtime.close();

  // The polite page, renegotiating (a camera added), gets the impolite page's colliding offer.
  ({ realtime, peer, socket } = await start("a"));
  deliver(socket, "webrtc.hello", { from: "k" });
  deliver(socket, "webrtc.description", { from: "k", to: "a", description: { type: "offer", sdp: "first" } });
  await until(() => signals(socket).length === 3); // hello, reply, answer
  [pc] = FakePeerConnection.all;
  peer.addStream({ getTracks: () => [{ kind: "audio", stop() {} }] });
  await until(() => pc.signalingState === "have-local-offer");
  deliver(socket, "webrtc.description", { from: "k", to: "a", description: { type: "offer", sdp: "second" } });
  await until(() => signals(socket).length === 5);
  assert.deepEqual(pc.calls.slice(-2), [["remote", "offer"], ["local", "answer"]]);
  assert.deepEqual(
    signals(socket).slice(3).map(([, data]) => data.description.type),
    ["offer", "answer"],
    "its own offer, then, rolled back, the answer to theirs"
  );
  assert.equal(pc.remoteDescription.sdp, "second");
  realtime.close();
});

test("a bye from the other page ends the call; hangup() publishes one and unsubscribes", async () => {
  let { realtime, peer, socket } = await start("m");
  const closes = [];
  peer.addEventListener("close", (e) => closes.push([e.detail.reason, e.detail.by]));
  deliver(socket, "webrtc.hello", { from: "z" });
  await until(() => FakePeerConnection.all.length === 1);
  deliver(socket, "webrtc.bye", { from: "z", to: "m" });
  await until(() => peer.state === "closed");
  assert.deepEqual(closes, [["hangup", "remote"]]);
  assert.ok(FakePeerConnection.all[0].closed);
  realtime.close();

  ({ realtime, peer, socket } = await start("m"));
  deliver(socket, "webrtc.hello", { from: "z" });
  await until(() => FakePeerConnection.all.length === 1);
  await peer.hangup();
  assert.deepEqual(signals(socket).at(-1), ["webrtc.bye", { from: "m", to: "z" }]);
  assert.equal(socket.sent.at(-1).type, "publish");
  assert.ok(socket.sent.some((m) => m.type === "unsubscribe" && m.channel === CHANNEL));
  assert.equal(peer.state, "closed");
  realtime.close();
});

test("over SSE a page signals by POSTing the publish message to the publish endpoint, with the CSRF token", async () => {
  FakePeerConnection.all = [];
  globalThis.document = { cookie: "csrftoken=tok123", querySelector: () => null, removeEventListener: () => {} };
  try {
    const fetch = fakeFetch();
    const realtime = new Realtime({ transport: "sse", sseUrl: "/events/", fetch, random: () => 0.5 });
    realtime.peer(CHANNEL, { id: "m", RTCPeerConnection: FakePeerConnection, fetch, helloInterval: 60000 });
    const stream = (await fetch.next()).open();
    stream.send("retry: 3000\n\nid: 10\ndata\n\n");
    const post = await fetch.next();
    assert.equal(post.url, "http://testserver/events/publish/");
    assert.equal(post.init.method, "POST");
    assert.equal(post.init.headers["X-CSRFToken"], "tok123");
    assert.equal(post.init.headers["Content-Type"], "application/json");
    assert.deepEqual(JSON.parse(post.init.body), {
      type: "publish",
      channel: CHANNEL,
      event: "webrtc.hello",
      data: { from: "m" },
    });
    post.answer(200, JSON.stringify({ type: "ack", channel: CHANNEL, id: "11" }), { "Content-Type": "application/json" });
    realtime.close();
  } finally {
    delete globalThis.document;
  }
});

test("pairChannel names a pair as django_realtime.auth.pair_channel() does", () => {
  assert.equal(pairChannel("call", 7, 3), "call:3-7");
  assert.equal(pairChannel("call", 10, 2), "call:2-10");
  assert.equal(pairChannel("call", "b0c1", "a9f2"), "call:a9f2-b0c1");
  assert.equal(pairChannel("call", "a", 5), "call:5-a");
  assert.throws(() => pairChannel("call", 3, 3), { code: "invalid_channel" });
  assert.throws(() => pairChannel("call", "1-2", 3), { code: "invalid_channel" });
});
