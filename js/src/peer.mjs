import { RealtimeError, callSafely, fire } from "./errors.mjs";
import { absoluteUrl, postRequest } from "./http.mjs";
import { compareIds } from "./ids.mjs";
import { CHANNEL_PATTERN } from "./options.mjs";
import { backoffDelay } from "./retry.mjs";

// WebRTC signalling -----------------------------------------------------
//
// realtime.peer(channel, options) gives a Peer: one RTCPeerConnection to ONE other page,
// whose offers, answers, ICE candidates and hang-up travel as events of `channel`, a pair
// channel only the two users may read and publish to (docs/webrtc.md). Negotiation follows
// "perfect negotiation" (MDN, "Establishing a connection: the WebRTC perfect negotiation
// pattern"): either side may offer at any time, and on a collision the polite peer yields.
// Media and data go peer to peer; the channel carries signalling only. The Peer sees the
// Realtime only through its public API: subscribe(), publish(), on(), options and transport.

/** The events a Peer publishes and reads on its channel. */
const SIGNAL_EVENTS = ["webrtc.hello", "webrtc.description", "webrtc.candidate", "webrtc.bye"];
/** Error codes after which a Peer publishes the same signal again, after a backoff. */
const SIGNAL_RETRY = new Set(["rate_limited", "unavailable"]);
const SIGNAL_ATTEMPTS = 6;

/**
 * The pair channel of two users, as django_realtime.auth.pair_channel() names it:
 * `<prefix>:<low>-<high>`, integer keys in numeric order, others as text.
 */
export function pairChannel(prefix, a, b) {
  const keys = [String(a), String(b)];
  if (keys[0] === keys[1]) throw new RealtimeError("invalid_channel", "a pair channel needs two different users");
  if (keys.some((key) => key === "" || key.includes("-"))) {
    throw new RealtimeError("invalid_channel", "a pair channel's keys must be non-empty and hold no '-'");
  }
  const integer = (key) => /^[0-9]+$/.test(key);
  keys.sort((x, y) => {
    if (integer(x) && integer(y)) return compareIds(x.replace(/^0+(?=.)/, ""), y.replace(/^0+(?=.)/, ""));
    if (integer(x) !== integer(y)) return integer(x) ? -1 : 1;
    return x < y ? -1 : x > y ? 1 : 0;
  });
  const channel = `${prefix}:${keys[0]}-${keys[1]}`;
  if (!CHANNEL_PATTERN.test(channel)) throw new RealtimeError("invalid_channel", `invalid channel name: ${channel}`);
  return channel;
}

function randomId() {
  const bytes = new Uint8Array(12);
  globalThis.crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * A WebRTC connection to one other page, signalled over a channel of a Realtime; returned by
 * Realtime.peer(). An EventTarget: "state", "open", "message", "track", "close" and "error"
 * events carry the same detail as the onState, onOpen, onMessage, onTrack, onClose and onError
 * callbacks.
 *
 * Each page has a random session `id`, the sender id of everything it publishes: a page
 * ignores its own messages, which come back to it on the channel, and messages meant for
 * another session of the pair (an earlier page of the other user). The pages find each other
 * with "webrtc.hello"; then both open the same negotiated data channel, and whichever offers
 * first, perfect negotiation settles it.
 */
export class Peer extends EventTarget {
  constructor(realtime, channel, options) {
    super();
    options = options || {};
    this.realtime = realtime;
    this.channel = channel;
    /** This page's session: the `from` of its signals. */
    this.id = options.id || randomId();
    /** The other page's session, once it said hello; null until then. */
    this.remoteId = null;
    /** Whether this side yields on an offer collision: options.polite, else the lower session id. */
    this.polite = null;
    /** The RTCPeerConnection to the other page, once it is known. */
    this.connection = null;
    /** The RTCDataChannel (negotiated, id 0): send() writes to it. */
    this.dataChannel = null;
    /** "waiting" (for the other page), "connecting", "connected", "disconnected", "failed" or "closed". */
    this.state = "waiting";
    this.options = {
      iceServers: [],
      configuration: {}, // more RTCConfiguration, e.g. { iceTransportPolicy: "relay" }
      dataChannel: "data", // the label of the data channel; null for none
      publishUrl: null, // the publish endpoint, for SSE: by default "publish/" beside the SSE endpoint
      helloInterval: 1000, // first delay before saying hello again while nobody answered (doubles, up to 15 s)
      info: null, // a JSON object sent with this page's hellos, e.g. who calls: the other side's watchers see it
      RTCPeerConnection: globalThis.RTCPeerConnection,
      fetch: globalThis.fetch ? (...args) => globalThis.fetch(...args) : undefined,
      ...options,
    };
    this._streams = [];
    this._ownStreams = []; // from addMedia(): stopped on close
    if (options.stream) this._streams.push(options.stream);
    this._outbox = Promise.resolve(); // signals go out one at a time, in order
    this._inbox = Promise.resolve(); // and are handled one at a time, in order
    this._helloTimer = null;
    this._helloDelay = this.options.helloInterval;
    this._makingOffer = false;
    this._ignoreOffer = false;
    this._settingAnswer = false;
    this._stopLive = null;
    this._attached = false;
    this._attachTimer = null;
    this._sub = realtime.subscribe(channel, {
      events: SIGNAL_EVENTS,
      onEvent: (event) => this._received(event),
      onError: (error) => {
        this._error(error);
        this._end("refused", "server");
      },
    });
    this._stopClosed = realtime.on("state", ({ state }) => state === "closed" && this._end("closed", "local"));
    // Events published once the subscription is live reach it (both transports resume from a
    // cursor taken before): say hello then, and again with backoff until the other page answers.
    if (realtime.state === "live") queueMicrotask(() => this._hello());
    else {
      this._stopLive = realtime.on("state", ({ state }) => {
        if (state !== "live") return;
        this._stopLive();
        this._stopLive = null;
        this._hello();
      });
    }
  }

  /** Send `data` (text, a Blob or an ArrayBuffer) on the data channel; throws unless it is open. */
  send(data) {
    const channel = this.dataChannel;
    if (!channel || channel.readyState !== "open") throw new RealtimeError("not_open", "the data channel is not open");
    channel.send(data);
  }

  /** Add the tracks of a MediaStream: to the connection now, and to any later one. */
  addStream(stream) {
    this._streams.push(stream);
    if (this.connection && this._attached) for (const track of stream.getTracks()) this.connection.addTrack(track, stream);
  }

  /**
   * Ask for the camera and microphone (getUserMedia constraints, default both) and add their
   * tracks; resolve to the MediaStream. Rejects (NotFoundError...) where there is no device.
   */
  async addMedia(constraints) {
    const devices = globalThis.navigator && globalThis.navigator.mediaDevices;
    if (!devices || !devices.getUserMedia) throw new RealtimeError("no_media", "this page cannot use media devices");
    const stream = await devices.getUserMedia(constraints || { audio: true, video: true });
    if (this.state === "closed") {
      for (const track of stream.getTracks()) track.stop();
      throw new RealtimeError("closed", "the call ended");
    }
    this._ownStreams.push(stream);
    this.addStream(stream);
    return stream;
  }

  /** Hang up: tell the other page, close the connection; resolve once the hang-up is published. */
  hangup() {
    if (this.state === "closed") return Promise.resolve();
    this._signal("webrtc.bye", {});
    const sent = this._outbox;
    this._end("hangup", "local");
    return sent;
  }

  // Internals ---------------------------------------------------------

  _hello() {
    if (this.state === "closed" || this.remoteId !== null) return;
    this._publish("webrtc.hello", this._helloFields({ from: this.id }));
    this._helloTimer = setTimeout(() => this._hello(), this._helloDelay);
    this._helloDelay = Math.min(this._helloDelay * 2, 15000);
  }

  _received(event) {
    const msg = event.data;
    if (!msg || typeof msg !== "object" || typeof msg.from !== "string") return;
    if (msg.from === this.id) return; // our own signal, back from the channel
    if (msg.to !== undefined && msg.to !== null && msg.to !== this.id) return; // for another session
    if (this.state === "closed") return;
    this._inbox = this._inbox
      .then(() => this._handle(event.event, msg))
      .catch((error) => this._error(error));
  }

  async _handle(type, msg) {
    if (this.state === "closed") return;
    if (type === "webrtc.hello") {
      // A new session of the other user (the first, or a page reloaded): start afresh with it.
      if (msg.from !== this.remoteId) this._meet(msg.from);
      // A hello to everyone: its sender may not know us yet. A reply names its recipient.
      if (!msg.to) this._signal("webrtc.hello", this._helloFields({}));
      return;
    }
    if (type === "webrtc.bye") {
      // From the other page, or, before it said hello, a refusal addressed to this page (declined).
      if (msg.from === this.remoteId || (this.remoteId === null && msg.to === this.id)) this._end("hangup", "remote");
      return;
    }
    if (msg.from !== this.remoteId) return; // an earlier session of the other user
    if (type === "webrtc.description") await this._description(msg.description);
    else if (type === "webrtc.candidate") await this._candidate(msg.candidate);
  }

  _meet(remoteId) {
    clearTimeout(this._helloTimer);
    this._closeConnection();
    this.remoteId = remoteId;
    this.polite = this.options.polite !== undefined ? Boolean(this.options.polite) : this.id < remoteId;
    this._makingOffer = this._ignoreOffer = this._settingAnswer = false;
    const pc = new this.options.RTCPeerConnection({ ...this.options.configuration, iceServers: this.options.iceServers });
    this.connection = pc;
    const current = () => pc === this.connection;
    pc.onnegotiationneeded = async () => {
      if (!current()) return;
      try {
        this._makingOffer = true;
        await pc.setLocalDescription();
        if (current()) this._signal("webrtc.description", { description: pc.localDescription });
      } catch (error) {
        if (current()) this._error(error);
      } finally {
        this._makingOffer = false;
      }
    };
    pc.onicecandidate = ({ candidate }) => {
      if (candidate && current()) this._signal("webrtc.candidate", { candidate });
    };
    pc.oniceconnectionstatechange = () => {
      if (current() && pc.iceConnectionState === "failed") pc.restartIce();
    };
    pc.onconnectionstatechange = () => {
      const state = pc.connectionState;
      if (current() && state !== "new" && state !== "closed") this._setState(state);
    };
    pc.ontrack = ({ track, streams }) => current() && this._emit("track", "onTrack", { track, streams, peer: this });
    // The impolite side makes the first offer; the polite one adds its data channel and tracks
    // once it has answered it. Both offering at once is what perfect negotiation settles, but
    // at the very start the polite side's rollback drops the transport its offer created, and
    // Chromium (156) then gathers no ICE candidates for its answer: the call never connects.
    this._attached = false;
    if (this.polite) this._attachTimer = setTimeout(() => this._attach(pc), 3000); // no offer came: go first
    else this._attach(pc);
    this._setState("connecting");
  }

  /** Add the data channel and the tracks to `pc`, once. */
  _attach(pc) {
    if (this._attached || pc !== this.connection) return;
    this._attached = true;
    clearTimeout(this._attachTimer);
    const current = () => pc === this.connection;
    if (this.options.dataChannel !== null) {
      // Negotiated, with the same id on both sides: each side has it at once, whoever offered.
      const channel = pc.createDataChannel(this.options.dataChannel, { negotiated: true, id: 0 });
      this.dataChannel = channel;
      channel.onopen = () => current() && this._emit("open", "onOpen", { peer: this, channel });
      channel.onmessage = (e) => current() && this._emit("message", "onMessage", { data: e.data, peer: this });
    }
    for (const stream of this._streams) for (const track of stream.getTracks()) pc.addTrack(track, stream);
  }

  /** Perfect negotiation's description step (MDN). */
  async _description(description) {
    const pc = this.connection;
    if (!description || !pc) return;
    const readyForOffer = !this._makingOffer && (pc.signalingState === "stable" || this._settingAnswer);
    const collision = description.type === "offer" && !readyForOffer;
    this._ignoreOffer = !this.polite && collision;
    if (this._ignoreOffer) return; // the impolite side keeps its own offer
    this._settingAnswer = description.type === "answer";
    try {
      await pc.setRemoteDescription(description); // on a collision, rolls the polite side's offer back
    } finally {
      this._settingAnswer = false;
    }
    if (description.type === "offer" && pc === this.connection) {
      await pc.setLocalDescription();
      this._signal("webrtc.description", { description: pc.localDescription });
      this._attach(pc); // the polite side's own channel and tracks, now that it has answered
    }
  }

  async _candidate(candidate) {
    const pc = this.connection;
    if (!candidate || !pc) return;
    try {
      await pc.addIceCandidate(candidate);
    } catch (error) {
      // A candidate of an offer this side ignored, or the other side rolled back: not an error.
      if (!this._ignoreOffer && pc.remoteDescription) this._error(error);
    }
  }

  /** Publish a signal to the other page. */
  _helloFields(fields) {
    return this.options.info ? { ...fields, info: this.options.info } : fields;
  }

      _signal(type, fields) {
    this._publish(type, { from: this.id, to: this.remoteId, ...fields });
  }

  _publish(type, data) {
    data = JSON.parse(JSON.stringify(data)); // RTCSessionDescription and RTCIceCandidate have toJSON()
    this._outbox = this._outbox.then(() => this._send(type, data)).catch((error) => this._error(error));
  }

  /** Publish over the WebSocket, or POST to the publish endpoint on SSE; retry what a wait cures. */
  async _send(type, data) {
    for (let attempt = 0; ; attempt += 1) {
      try {
        if (this.realtime.transport === "websocket") return await this.realtime.publish(this.channel, data, { event: type });
        return await this._post(type, data);
      } catch (error) {
        const again = SIGNAL_RETRY.has(error.code) && attempt + 1 < SIGNAL_ATTEMPTS && this.state !== "closed";
        if (!again) throw error;
        await new Promise((resolve) => setTimeout(resolve, backoffDelay(attempt, { minDelay: 500, maxDelay: 8000 })));
      }
    }
  }

  async _post(type, data) {
    const options = this.realtime.options;
    const url = this.options.publishUrl || new URL("publish/", absoluteUrl(options.sseUrl)).href;
    const body = JSON.stringify({ type: "publish", channel: this.channel, event: type, data });
    const response = await postRequest(url, body, {
      fetch: this.options.fetch,
      credentials: options.credentials,
      csrfCookieName: options.csrfCookieName,
      headers: { "Content-Type": "application/json" },
    });
    const reply = await response.json().catch(() => null);
    if (!response.ok || !reply || reply.type !== "ack") {
      const code = (reply && reply.code) || "http";
      throw new RealtimeError(code, (reply && reply.message) || `POST ${url}: HTTP ${response.status}`, {
        status: response.status,
      });
    }
    return { id: reply.id, channel: reply.channel };
  }

  _setState(state) {
    if (state === this.state) return;
    const previous = this.state;
    this.state = state;
    this._emit("state", "onState", { state, previous, peer: this });
  }

  _closeConnection() {
    clearTimeout(this._attachTimer);
    const pc = this.connection;
    this.connection = null;
    this.dataChannel = null;
    if (pc) pc.close();
  }

  _end(reason, by) {
    if (this.state === "closed") return;
    clearTimeout(this._helloTimer);
    if (this._stopLive) this._stopLive();
    this._stopClosed();
    this._closeConnection();
    for (const stream of this._ownStreams) for (const track of stream.getTracks()) track.stop();
    if (this._sub.active) this._sub.unsubscribe();
    this._setState("closed");
    this._emit("close", "onClose", { reason, by, peer: this });
  }

  _error(error) {
    this._emit("error", "onError", error);
  }

  _emit(type, callback, detail) {
    callSafely(this.options[callback], detail);
    fire(this, type, detail);
  }
}
