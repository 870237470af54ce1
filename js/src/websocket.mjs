// The WebSocket transport (docs/websocket.md). Like sse.mjs, it sees only the host its Realtime
// hands it: the options and the callbacks Realtime._host() lists (client.mjs).

import { RealtimeError } from "./errors.mjs";
import { absoluteUrl } from "./http.mjs";
import { cursorOrNull } from "./ids.mjs";

/** Close codes after which the server asks to reconnect at once (docs/websocket.md, "Closing"). */
const RECONNECT_AT_ONCE = new Set([1000, 4000, 4001]);
/** The server shuts down (4004): reconnect after the delay its close reason gives, "retry=<ms>". */
const CLOSE_SHUTDOWN = 4004;
const shutdownDelay = (code, reason) => {
  const match = code === CLOSE_SHUTDOWN ? /^retry=(\d{1,6})$/.exec(reason || "") : null;
  return match ? Number(match[1]) : null;
};

/** A close code of our own, for a socket we drop (RFC 6455 leaves 4000-4999 to applications). */
const CLOSE_CLIENT = 4100;

/** The WebSocket protocol of docs/websocket.md: per-channel subscriptions, ids and errors. */
export class WebSocketTransport {
  constructor(host) {
    this.host = host;
    this.name = "websocket";
    this.socket = null;
    this.requests = new Map(); // ref -> pending request
    this.nextRef = 1;
    this.live = new Set(); // the subscriptions the server confirmed on this socket
    this.again = new Set(); // the subscriptions sent again (resubscribe()), until confirmed
    this.joined = new Map(); // channel -> the Presence this socket joined (or asked to join) there
    this.everOpened = false;
    this._timers = {};
  }

  get connected() {
    return this.socket !== null;
  }

  get open() {
    return this.socket !== null && this.socket.readyState === 1;
  }

  connect() {
    const host = this.host;
    const WebSocket = host.options.WebSocket;
    let socket;
    try {
      socket = new WebSocket(absoluteUrl(host.options.wsUrl, true));
    } catch (error) {
      host.lost({ opened: false });
      return;
    }
    this.socket = socket;
    let opened = false;
    let openedAt = 0;
    this._timers.connect = setTimeout(() => {
      if (!opened) this._closed(socket, 1006, false, false);
    }, host.options.connectTimeout);
    socket.onopen = () => {
      opened = true;
      openedAt = Date.now();
      clearTimeout(this._timers.connect);
      this.everOpened = true;
      for (const sub of host.subscriptions()) this._sendSubscribe(sub);
      for (const [ref, request] of this.requests) {
        if (request.kind === "publish" && !request.sent) this._send(ref, request);
      }
      this._startPing();
      host.opened();
    };
    socket.onmessage = (e) => this._onMessage(e);
    // "Reconnect at once" only for a connection that lived a while: never a tight loop.
    socket.onclose = (e) =>
      this._closed(socket, e.code, opened, opened && Date.now() - openedAt >= 1000, shutdownDelay(e.code, e.reason));
    socket.onerror = () => {}; // a close event follows
  }

  sync() {
    if (!this.socket) this.connect();
  }

  subscribed(sub) {
    if (this.open) this._sendSubscribe(sub);
    else this.sync();
  }

  unsubscribed(sub) {
    this.live.delete(sub);
    if (this.open) this.socket.send(JSON.stringify({ type: "unsubscribe", channel: sub.channel }));
  }

  resubscribe(sub, cursor) {
    sub.cursor = cursor;
    if (!this.open) return; // the next socket subscribes from the cursor
    // Events of the old subscription still on the way are dropped until the new one is confirmed.
    this.live.delete(sub);
    this.again.add(sub);
    this.socket.send(JSON.stringify({ type: "unsubscribe", channel: sub.channel }));
    this._sendSubscribe(sub);
  }

  presenceAdded(presence) {
    if (this.live.has(presence.subscription)) this.host.live(presence.subscription);
  }

  presenceJoin(presence, again) {
    if (!this.open) return; // a closed socket left already; the next one joins once subscribed
    const channel = presence.channel;
    const joins = this.host.joins(presence);
    if (this.joined.get(channel) === presence && (again || joins === null)) {
      this.joined.delete(channel);
      this._request({ kind: "leave", presence, message: { type: "leave", channel } });
    }
    // Joined only once subscribed, so that the channel's presence.* events since are all seen.
    if (joins !== null && !this.joined.has(channel) && this.live.has(presence.subscription)) {
      const message = { type: "join", channel };
      if (joins.name !== null) message.name = joins.name;
      if (joins.info !== null) message.info = joins.info;
      this.joined.set(channel, presence);
      this._request({ kind: "join", presence, message });
    }
  }

  presenceWho(presence, asking) {
    if (!this.open || !this.live.has(presence.subscription)) return; // asked again once subscribed
    this._request({ kind: "who", presence, asking, message: { type: "presence", channel: presence.channel } });
  }

  /** Forget the socket: no handler of it runs after this. */
  drop() {
    for (const timer of Object.values(this._timers)) clearTimeout(timer);
    const socket = this.socket;
    this.socket = null;
    this.live.clear();
    this.again.clear();
    for (const presence of this.joined.values()) this.host.gone(presence); // the server leaves for a closed socket
    this.joined.clear();
    if (!socket) return;
    socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
    try {
      socket.close(CLOSE_CLIENT);
    } catch (error) {
      // already closed
    }
    // Subscriptions are re-sent on the next socket; a publish in flight may or may not be stored.
    this._failRequests((r) => r.kind !== "publish", "disconnected", "the connection closed");
    this._failRequests(
      (r) => r.kind === "publish" && r.sent,
      "disconnected",
      "the connection closed before the acknowledgement; the event may or may not be stored"
    );
  }

  close(code, message) {
    this.drop();
    this._failRequests(() => true, code, message);
  }

  publish(channel, event, data, timeout) {
    return new Promise((resolve, reject) => {
      const ref = this.nextRef++;
      const request = {
        kind: "publish",
        message: { type: "publish", channel, event, data: data === undefined ? null : data, ref },
        sent: false,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.requests.delete(ref);
          const message = request.sent
            ? `no acknowledgement within ${timeout} ms; the event may or may not be stored`
            : `not connected within ${timeout} ms; the event was not sent`;
          reject(new RealtimeError("timeout", message));
        }, timeout),
      };
      this.requests.set(ref, request);
      if (this.open) this._send(ref, request);
    });
  }

  _closed(socket, code, opened, livedAWhile, after = null) {
    if (socket !== this.socket) return; // an old socket
    this.drop();
    this.host.lost({ opened, atOnce: Boolean(livedAWhile) && RECONNECT_AT_ONCE.has(code), after });
  }

  _failRequests(match, code, message) {
    for (const [ref, request] of Array.from(this.requests)) {
      if (!match(request)) continue;
      this.requests.delete(ref);
      clearTimeout(request.timer);
      if (request.reject) request.reject(new RealtimeError(code, message));
    }
  }

  _send(ref, request) {
    request.sent = true;
    this.socket.send(JSON.stringify(request.message));
  }

  _sendSubscribe(sub) {
    const message = { type: "subscribe", channel: sub.channel };
    if (sub.cursor !== null) message.last_id = String(sub.cursor);
    this._request({ kind: "subscribe", sub, message });
  }

  /** Send a request whose answer (or error) comes back with its ref. */
  _request(request) {
    const ref = this.nextRef++;
    request.message.ref = ref;
    request.sent = false;
    this.requests.set(ref, request);
    this._send(ref, request);
  }

  _startPing() {
    clearTimeout(this._timers.ping);
    this._timers.ping = setTimeout(() => {
      if (!this.open) return;
      const socket = this.socket;
      socket.send(JSON.stringify({ type: "ping" }));
      this._timers.pong = setTimeout(() => this._closed(socket, 1006, true, false), this.host.options.pongTimeout);
    }, this.host.options.pingInterval);
  }

  _onMessage(e) {
    const host = this.host;
    let msg;
    try {
      msg = JSON.parse(e.data);
    } catch (error) {
      host.report(new RealtimeError("bad_message", "the server sent a WebSocket message that is not JSON"));
      return;
    }
    if (!msg || typeof msg !== "object") return;
    this._startPing();
    clearTimeout(this._timers.pong);
    const request = msg.ref !== undefined && msg.ref !== null ? this.requests.get(msg.ref) : undefined;
    if (request && msg.type !== "event" && msg.type !== "reset") this.requests.delete(msg.ref);
    switch (msg.type) {
      case "subscribed": {
        const sub = request && request.kind === "subscribe" ? request.sub : host.subscription(msg.channel);
        if (!sub || host.subscription(sub.channel) !== sub) break; // unsubscribed meanwhile
        // A subscription from now resumes from where the server started it, before any event.
        const start = sub.cursor === null ? cursorOrNull(msg.last_id) : null;
        if (start !== null) sub.cursor = start.cursor;
        this.live.add(sub);
        this.again.delete(sub);
        host.live(sub);
        break;
      }
      case "event":
      case "reset": {
        const sub = host.subscription(msg.channel);
        if (!sub || this.again.has(sub)) break; // of the subscription before resubscribe()
        if (msg.type === "event") host.deliver(sub, { id: msg.id, event: msg.event, data: msg.data, text: false });
        else host.reset(sub, msg.reason, msg.last_id, msg.resume_id);
        break;
      }
      case "joined":
        if (request && request.kind === "join" && this.joined.get(msg.channel) === request.presence) {
          host.joined(request.presence, msg.connection, msg.user);
        }
        break;
      case "presence":
        if (request && request.kind === "who") host.answered(request.presence, request.asking, msg.members);
        break;
      case "ack":
        if (request && request.kind === "publish") {
          clearTimeout(request.timer);
          request.resolve({ id: msg.id, channel: msg.channel });
        }
        break;
      case "error":
        this._onError(msg, request);
        break;
      default: // pong, unsubscribed, and types of later versions
        break;
    }
  }

  _onError(msg, request) {
    const error = new RealtimeError(msg.code, msg.message);
    if (request && request.kind === "publish") {
      clearTimeout(request.timer);
      request.reject(error);
      return;
    }
    if (request && request.kind === "subscribe") {
      // Refused (forbidden, invalid_channel, too_many_channels...): do not ask again on reconnect.
      this.host.refuse(request.sub, error);
      return;
    }
    if (request && request.kind === "join") {
      if (this.joined.get(request.presence.channel) === request.presence) this.joined.delete(request.presence.channel);
      this.host.joinRefused(request.presence, error);
      return;
    }
    if (request && request.kind === "who") {
      this.host.unanswered(request.presence, request.asking, error, { retry: msg.code === "unavailable" });
      return;
    }
    if (request && request.kind === "leave") return; // not_joined: the server had let it go already
    this.host.report(error);
  }
}
