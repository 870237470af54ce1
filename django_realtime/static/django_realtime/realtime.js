/*! django-realtime browser client: WebSocket with a Server-Sent Events fallback, no dependencies.
 *
 *   <script src="/static/django_realtime/realtime.js"></script>   → window.DjangoRealtime
 *   import { Realtime } from "/static/django_realtime/realtime.mjs";
 *
 * API: docs/client.md.  Wire protocols: docs/websocket.md and docs/sse.md.
 */
(function (global) {
  "use strict";

  if (global.DjangoRealtime) return; // loaded twice (a script tag and the module): keep the first

  const VERSION = "0.1.0";

  /** Close codes after which the server asks to reconnect at once (docs/websocket.md, "Closing"). */
  const RECONNECT_AT_ONCE = new Set([1000, 4000, 4001]);
  /** The channel name rules of django_realtime.names. */
  const CHANNEL_PATTERN = /^[A-Za-z0-9_\-.:@/=+]{1,200}$/;
  /** A close code of our own, for a socket we drop (RFC 6455 leaves 4000-4999 to applications). */
  const CLOSE_CLIENT = 4100;

  const DEFAULTS = {
    transport: "auto", // "auto" (WebSocket, falling back to SSE), "websocket" or "sse"
    wsUrl: "/ws/",
    sseUrl: "/events/",
    csrfCookieName: "csrftoken",
    minDelay: 500, // first reconnection delay, in ms, before jitter
    maxDelay: 30000, // longest reconnection delay, in ms
    fallbackAfter: 2, // WebSocket attempts that never opened before switching to SSE ("auto" only)
    connectTimeout: 8000, // a WebSocket handshake that takes longer counts as failed
    pingInterval: 25000, // WebSocket: ping after this long...
    pongTimeout: 10000, // ...and reconnect if no pong comes within this
    publishTimeout: 10000, // publish(): reject if no ack within this
    // Injectable for tests and unusual environments:
    WebSocket: global.WebSocket,
    EventSource: global.EventSource,
    random: Math.random,
  };

  /** Defaults given by the including <script> tag ({% realtime_script %} writes them). */
  const SCRIPT_DEFAULTS = (function () {
    const script = global.document && global.document.currentScript;
    const data = (script && script.dataset) || {};
    const found = {};
    if (data.wsUrl) found.wsUrl = data.wsUrl;
    if (data.sseUrl) found.sseUrl = data.sseUrl;
    if (data.csrfCookie) found.csrfCookieName = data.csrfCookie;
    return found;
  })();

  /** An error of this library; `code` is a stable string to match on. */
  class RealtimeError extends Error {
    constructor(code, message, details) {
      super(message);
      this.name = "RealtimeError";
      this.code = code;
      Object.assign(this, details || {});
    }
  }

  /**
   * Compare two event ids: negative, zero or positive.
   *
   * Ids are decimal strings up to 2^63-1 with no leading zeros, too large for
   * a JavaScript number: a longer id is larger, and ids of one length compare
   * as strings.
   */
  function compareIds(a, b) {
    a = String(a);
    b = String(b);
    if (a.length !== b.length) return a.length - b.length;
    return a < b ? -1 : a > b ? 1 : 0;
  }

  /**
   * The delay before reconnection attempt number `attempt` (0 for the first): exponential
   * backoff with "equal jitter", between half and all of min(maxDelay, minDelay * 2^attempt).
   */
  function backoffDelay(attempt, options) {
    const { minDelay = DEFAULTS.minDelay, maxDelay = DEFAULTS.maxDelay, random = Math.random } = options || {};
    const ceiling = Math.min(maxDelay, minDelay * Math.pow(2, Math.min(attempt, 30)));
    return Math.round(ceiling / 2 + (random() * ceiling) / 2);
  }

  /** Read Django's CSRF token: from its cookie, else from a {% csrf_token %} field on the page. */
  function csrfToken(cookieName) {
    const name = (cookieName || SCRIPT_DEFAULTS.csrfCookieName || DEFAULTS.csrfCookieName) + "=";
    const doc = global.document;
    if (!doc) return "";
    for (const part of doc.cookie ? doc.cookie.split(";") : []) {
      const item = part.trim();
      if (item.startsWith(name)) return decodeURIComponent(item.slice(name.length));
    }
    const field = doc.querySelector("input[name=csrfmiddlewaretoken]");
    return field ? field.value : "";
  }

  /**
   * POST `fields` (an object, URLSearchParams or FormData) to a view of your own with
   * Django's CSRF token; resolve to the Response, reject with a RealtimeError unless 2xx.
   */
  async function post(url, fields, options) {
    const { csrfCookieName, headers } = options || {};
    const body =
      fields instanceof FormData || fields instanceof URLSearchParams ? fields : new URLSearchParams(fields || {});
    let response;
    try {
      response = await fetch(url, {
        method: "POST",
        body,
        credentials: "same-origin",
        headers: { "X-CSRFToken": csrfToken(csrfCookieName), ...(headers || {}) },
      });
    } catch (error) {
      throw new RealtimeError("network", `POST ${url} failed: ${error.message}`);
    }
    if (!response.ok) {
      const text = (await response.text().catch(() => "")).trim().slice(0, 500);
      throw new RealtimeError("http", text || `POST ${url}: HTTP ${response.status}`, { status: response.status });
    }
    return response;
  }

  function absoluteWsUrl(url) {
    const resolved = new URL(url, global.location ? global.location.href : undefined);
    if (resolved.protocol === "http:") resolved.protocol = "ws:";
    else if (resolved.protocol === "https:") resolved.protocol = "wss:";
    return resolved.href;
  }

  /** One channel of a Realtime connection; returned by Realtime.subscribe(). */
  class Subscription {
    constructor(realtime, channel, options) {
      this.realtime = realtime;
      this.channel = channel;
      /** Event names delivered to onEvent. Over SSE only named events reach a page, so list them all. */
      this.events = new Set(options.events || ["message"]);
      /** The id of the last event of the channel seen, or null: where a reconnect resumes. */
      // "" (what {% realtime_cursor %} gives when it has no safe cursor) means none, as null does.
      this.lastId = options.lastId === undefined || options.lastId === null || options.lastId === "" ? null : String(options.lastId);
      this.onEvent = options.onEvent || null;
      this.onReset = options.onReset || null;
      this.onError = options.onError || null;
      this.active = true;
    }

    unsubscribe() {
      this.realtime._unsubscribe(this);
    }
  }

  /**
   * Several channels over one connection: a WebSocket, or one EventSource. Resumes from
   * the last ids after any disconnect, drops repeated events, reports resets and states.
   */
  class Realtime {
    constructor(options) {
      this.options = { ...DEFAULTS, ...SCRIPT_DEFAULTS, ...(options || {}) };
      const { transport, WebSocket } = this.options;
      if (!["auto", "websocket", "sse"].includes(transport)) {
        throw new RealtimeError("bad_option", `transport must be "auto", "websocket" or "sse", not ${transport}`);
      }
      this._subs = new Map(); // channel -> Subscription
      this._listeners = new Map(); // event type -> Set of functions
      this._requests = new Map(); // ref -> pending request
      this._nextRef = 1;
      this._attempt = 0; // failed connections in a row, for the backoff
      this._wsFailures = 0; // WebSocket attempts in a row that never opened
      this._wsOpened = false; // once a WebSocket has opened, never fall back
      this._transport = transport === "sse" || (transport === "auto" && !WebSocket) ? "sse" : "websocket";
      this._state = "connecting";
      this._everLive = false;
      this._socket = null;
      this._source = null;
      this._sourceKey = null; // the channel set the EventSource was opened with
      this._sourceNames = null; // event names listened to on it
      this._cursor = null; // SSE: the last id the connection delivered
      this._timer = null; // pending reconnection
      this._pingTimer = null;
      this._pongTimer = null;
      this._connectTimer = null;
      this._syncQueued = false;
      this._closed = false;
      this._onOnline = () => {
        if (this._timer !== null) this._reconnectNow();
      };
      if (global.addEventListener) global.addEventListener("online", this._onOnline);
      // Connect once the caller's synchronous subscribe() calls are done: one SSE URL for all.
      this._queueSync();
    }

    /** "connecting", "live", "reconnecting" or "closed". */
    get state() {
      return this._state;
    }

    /** "websocket" or "sse": the transport in use now. */
    get transport() {
      return this._transport;
    }

    /** Call `listener(detail)` on "state", "event", "reset", "error" or "transport"; return a function that stops it. */
    on(type, listener) {
      if (!this._listeners.has(type)) this._listeners.set(type, new Set());
      this._listeners.get(type).add(listener);
      return () => this.off(type, listener);
    }

    off(type, listener) {
      const set = this._listeners.get(type);
      if (set) set.delete(listener);
    }

    /**
     * Receive the events of `channel`. `options` is a function (onEvent) or an object:
     * { onEvent, onReset, onError, events: ["message"], lastId: null }.
     */
    subscribe(channel, options) {
      if (typeof options === "function") options = { onEvent: options };
      options = options || {};
      if (typeof channel !== "string" || !CHANNEL_PATTERN.test(channel)) {
        throw new RealtimeError("invalid_channel", `invalid channel name: ${JSON.stringify(channel)}`);
      }
      if (this._closed) throw new RealtimeError("closed", "this Realtime is closed");
      if (this._subs.has(channel)) {
        throw new RealtimeError("already_subscribed", `already subscribed to ${channel}; unsubscribe first`);
      }
      const sub = new Subscription(this, channel, options);
      if (sub.lastId === null && this._transport === "sse" && this._cursor !== null) sub.lastId = this._cursor;
      this._subs.set(channel, sub);
      if (this._transport === "websocket") {
        if (this._socketOpen()) this._sendSubscribe(sub);
      } else {
        this._queueSync();
      }
      return sub;
    }

    /** The last id seen on `channel`, or null. */
    lastId(channel) {
      const sub = this._subs.get(channel);
      return sub ? sub.lastId : null;
    }

    /**
     * Publish over the WebSocket; resolve to {id, channel} once the server has stored it.
     * Waits for the socket if it is reconnecting. Over SSE, POST to a view of yours instead.
     */
    publish(channel, data, options) {
      const { event = "message", timeout = this.options.publishTimeout } = options || {};
      return new Promise((resolve, reject) => {
        if (this._closed) return reject(new RealtimeError("closed", "this Realtime is closed"));
        if (this._transport !== "websocket") {
          return reject(
            new RealtimeError("transport", "publish() needs the WebSocket transport; over SSE, POST to a view of yours")
          );
        }
        if (!CHANNEL_PATTERN.test(String(channel))) {
          return reject(new RealtimeError("invalid_channel", `invalid channel name: ${JSON.stringify(channel)}`));
        }
        const ref = this._nextRef++;
        const request = {
          kind: "publish",
          message: { type: "publish", channel, event, data: data === undefined ? null : data, ref },
          sent: false,
          resolve,
          reject,
          timer: setTimeout(() => {
            this._requests.delete(ref);
            const message = request.sent
              ? `no acknowledgement within ${timeout} ms; the event may or may not be stored`
              : `not connected within ${timeout} ms; the event was not sent`;
            reject(new RealtimeError("timeout", message));
          }, timeout),
        };
        this._requests.set(ref, request);
        if (this._socketOpen()) this._sendRequest(ref, request);
      });
    }

    /** Close the connection for good. */
    close() {
      if (this._closed) return;
      this._closed = true;
      clearTimeout(this._timer);
      this._timer = null;
      if (global.removeEventListener) global.removeEventListener("online", this._onOnline);
      this._dropSocket();
      this._dropSource();
      this._failRequests(() => true, "closed", "this Realtime is closed");
      this._subs.clear();
      this._setState("closed");
    }

    // Internals ---------------------------------------------------------

    _emit(type, detail) {
      for (const listener of Array.from(this._listeners.get(type) || [])) {
        try {
          listener(detail);
        } catch (error) {
          setTimeout(() => {
            throw error;
          }); // report it without breaking the connection
        }
      }
    }

    _call(func, detail) {
      if (!func) return;
      try {
        func(detail);
      } catch (error) {
        setTimeout(() => {
          throw error;
        });
      }
    }

    _setState(state) {
      if (state === this._state) return;
      const previous = this._state;
      this._state = state;
      this._emit("state", { state, previous, transport: this._transport });
    }

    _queueSync() {
      if (this._syncQueued) return;
      this._syncQueued = true;
      queueMicrotask(() => {
        this._syncQueued = false;
        if (this._closed || this._timer !== null) return;
        if (this._transport === "websocket") {
          if (!this._socket) this._openSocket();
        } else {
          this._syncSource();
        }
      });
    }

    /** Try again after a backoff; `atOnce` when the server asked for an immediate reconnect. */
    _scheduleReconnect(atOnce) {
      if (this._closed || this._timer !== null) return;
      this._setState(this._everLive ? "reconnecting" : "connecting");
      const delay = atOnce ? Math.round(this.options.random() * 250) : backoffDelay(this._attempt, this.options);
      if (!atOnce) this._attempt += 1;
      this._timer = setTimeout(() => this._reconnectNow(), delay);
    }

    _reconnectNow() {
      clearTimeout(this._timer);
      this._timer = null;
      if (this._closed) return;
      if (this._transport === "websocket") this._openSocket();
      else this._syncSource();
    }

    _wentLive() {
      this._everLive = true;
      this._setState("live");
    }

    _failRequests(match, code, message) {
      for (const [ref, request] of Array.from(this._requests)) {
        if (!match(request)) continue;
        this._requests.delete(ref);
        clearTimeout(request.timer);
        if (request.reject) request.reject(new RealtimeError(code, message));
      }
    }

    // WebSocket ---------------------------------------------------------

    _socketOpen() {
      return this._socket !== null && this._socket.readyState === 1;
    }

    _openSocket() {
      const WebSocket = this.options.WebSocket;
      let socket;
      try {
        socket = new WebSocket(absoluteWsUrl(this.options.wsUrl));
      } catch (error) {
        this._socketClosed(null, 1006, false);
        return;
      }
      this._socket = socket;
      let opened = false;
      let openedAt = 0;
      this._connectTimer = setTimeout(() => {
        if (!opened) this._socketClosed(socket, 1006, false);
      }, this.options.connectTimeout);
      socket.onopen = () => {
        opened = true;
        openedAt = Date.now();
        clearTimeout(this._connectTimer);
        this._wsOpened = true;
        this._wsFailures = 0;
        for (const sub of this._subs.values()) this._sendSubscribe(sub);
        for (const [ref, request] of this._requests) {
          if (request.kind === "publish" && !request.sent) this._sendRequest(ref, request);
        }
        this._startPing();
        this._wentLive();
      };
      socket.onmessage = (e) => this._onSocketMessage(e);
      // "Reconnect at once" only for a connection that lived a while: never a tight loop.
      socket.onclose = (e) => this._socketClosed(socket, e.code, opened, opened && Date.now() - openedAt >= 1000);
      socket.onerror = () => {}; // a close event follows
    }

    /** Forget the socket: no handler of it runs after this. */
    _dropSocket() {
      clearTimeout(this._connectTimer);
      clearTimeout(this._pingTimer);
      clearTimeout(this._pongTimer);
      const socket = this._socket;
      this._socket = null;
      if (!socket) return;
      socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
      try {
        socket.close(CLOSE_CLIENT);
      } catch (error) {
        // already closed
      }
    }

    _socketClosed(socket, code, opened, livedAWhile) {
      if (socket !== this._socket && socket !== null) return; // an old socket
      this._dropSocket();
      // Subscriptions are re-sent on the next socket; a publish in flight may or may not be stored.
      this._failRequests((r) => r.kind !== "publish", "disconnected", "the connection closed");
      this._failRequests(
        (r) => r.kind === "publish" && r.sent,
        "disconnected",
        "the connection closed before the acknowledgement; the event may or may not be stored"
      );
      if (this._closed) return;
      if (!opened) {
        this._wsFailures += 1;
        if (this.options.transport === "auto" && !this._wsOpened && this._wsFailures >= this.options.fallbackAfter) {
          this._fallBack();
          return;
        }
      }
      this._scheduleReconnect(Boolean(livedAWhile) && RECONNECT_AT_ONCE.has(code));
    }

    _fallBack() {
      this._transport = "sse";
      this._attempt = 0;
      this._failRequests(
        () => true,
        "transport",
        "WebSockets cannot connect; fell back to SSE, where publish() is not available"
      );
      for (const sub of this._subs.values()) {
        if (sub.lastId === null && this._cursor !== null) sub.lastId = this._cursor;
      }
      this._emit("transport", { transport: "sse", reason: "WebSockets cannot connect" });
      this._syncSource();
    }

    _sendRequest(ref, request) {
      request.sent = true;
      this._socket.send(JSON.stringify(request.message));
    }

    _sendSubscribe(sub) {
      const ref = this._nextRef++;
      const message = { type: "subscribe", channel: sub.channel, ref };
      if (sub.lastId !== null) message.last_id = sub.lastId;
      const request = { kind: "subscribe", sub, message, sent: false };
      this._requests.set(ref, request);
      this._sendRequest(ref, request);
    }

    _startPing() {
      clearTimeout(this._pingTimer);
      this._pingTimer = setTimeout(() => {
        if (!this._socketOpen()) return;
        const socket = this._socket;
        this._socket.send(JSON.stringify({ type: "ping" }));
        this._pongTimer = setTimeout(() => this._socketClosed(socket, 1006, true), this.options.pongTimeout);
      }, this.options.pingInterval);
    }

    _onSocketMessage(e) {
      let msg;
      try {
        msg = JSON.parse(e.data);
      } catch (error) {
        return;
      }
      if (!msg || typeof msg !== "object") return;
      this._attempt = 0; // the server answers: the next failure starts the backoff afresh
      this._startPing();
      clearTimeout(this._pongTimer);
      const request = msg.ref !== undefined && msg.ref !== null ? this._requests.get(msg.ref) : undefined;
      if (request && msg.type !== "event" && msg.type !== "reset") this._requests.delete(msg.ref);
      switch (msg.type) {
        case "subscribed": {
          const sub = this._subs.get(msg.channel);
          if (sub && sub.lastId === null && typeof msg.last_id === "string") sub.lastId = msg.last_id;
          break;
        }
        case "event":
          this._deliver(this._subs.get(msg.channel), msg);
          break;
        case "reset":
          this._reset(this._subs.get(msg.channel), msg.reason, msg.last_id, msg.resume_id);
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
        const sub = request.sub;
        error.channel = sub.channel;
        if (this._subs.get(sub.channel) === sub) {
          this._subs.delete(sub.channel);
          sub.active = false;
        }
        this._call(sub.onError, error);
      }
      this._emit("error", error);
    }

    // Delivery, shared by both transports ---------------------------------

    /** Hand an event to its subscription, unless its id is not above the channel's last id. */
    _deliver(sub, msg) {
      if (!sub || !sub.active) return;
      const id = msg.id === undefined || msg.id === null ? "" : String(msg.id);
      if (id !== "") {
        if (sub.lastId !== null && compareIds(id, sub.lastId) <= 0) return; // seen before a reconnect
        sub.lastId = id;
      }
      if (!sub.events.has(msg.event)) return;
      const event = { channel: sub.channel, id, event: msg.event, data: msg.data };
      this._call(sub.onEvent, event);
      this._emit("event", event);
    }

    _reset(sub, reason, lastId, resumeId) {
      if (!sub || !sub.active) return;
      // Rebuild from what follows: the events after resume_id are the ones the log still holds.
      sub.lastId = resumeId;
      const detail = { channel: sub.channel, reason, lastId, resumeId };
      this._call(sub.onReset, detail);
      this._emit("reset", detail);
    }

    // Server-Sent Events ------------------------------------------------

    /** Open, reopen or keep the EventSource so that it carries exactly the subscribed channels. */
    _syncSource() {
      if (this._closed || this._transport !== "sse") return;
      const channels = Array.from(this._subs.keys()).sort();
      const key = channels.join("\n");
      if (this._source && key === this._sourceKey) {
        this._listenSource();
        return;
      }
      this._dropSource();
      if (channels.length === 0) return;
      // Every channel on one stream shares one cursor: start at the lowest, drop what a channel has seen.
      let start = null;
      for (const sub of this._subs.values()) {
        if (sub.lastId === null && this._cursor !== null) sub.lastId = this._cursor;
        if (sub.lastId !== null && (start === null || compareIds(sub.lastId, start) < 0)) start = sub.lastId;
      }
      const params = new URLSearchParams(channels.map((c) => ["channel", c]));
      if (start !== null) params.append("lastEventId", start);
      const base = this.options.sseUrl;
      const EventSource = this.options.EventSource;
      const source = new EventSource(base + (base.includes("?") ? "&" : "?") + params);
      this._source = source;
      this._sourceKey = key;
      this._sourceNames = new Set();
      this._sourceSubs = new Set(this._subs.values());
      source.onopen = () => {
        this._attempt = 0;
        this._wentLive();
      };
      source.onerror = () => {
        // EventSource would retry on its own at a fixed interval, or give up for good after an
        // HTTP error; reconnect ourselves, with backoff and jitter, from our own cursor.
        if (this._source !== source) return;
        if (source.readyState === 2) {
          this._emit("error", new RealtimeError("refused", "the SSE endpoint refused the stream (HTTP error)"));
        }
        this._dropSource();
        this._scheduleReconnect(false);
      };
      source.addEventListener("reset", (e) => this._onSourceReset(source, e));
      this._listenSource();
    }

    _listenSource() {
      const source = this._source;
      for (const sub of this._subs.values()) {
        for (const name of sub.events) {
          if (this._sourceNames.has(name)) continue;
          this._sourceNames.add(name);
          source.addEventListener(name, (e) => this._onSourceEvent(source, name, e));
        }
      }
    }

    _dropSource() {
      const source = this._source;
      if (!source) return;
      // Every channel the stream carried has seen everything up to the connection's cursor.
      if (this._cursor !== null) {
        for (const sub of this._sourceSubs) {
          if (sub.active && (sub.lastId === null || compareIds(this._cursor, sub.lastId) > 0)) sub.lastId = this._cursor;
        }
      }
      this._source = null;
      this._sourceKey = null;
      source.onopen = source.onerror = null;
      source.close();
    }

    _advanceCursor(id) {
      if (id && (this._cursor === null || compareIds(id, this._cursor) > 0)) this._cursor = id;
    }

    _onSourceEvent(source, name, e) {
      if (source !== this._source) return;
      const id = e.lastEventId;
      this._advanceCursor(id);
      let data = e.data;
      try {
        data = JSON.parse(e.data);
      } catch (error) {
        // not JSON: hand over the text
      }
      // An SSE event does not name its channel: it goes to the subscriptions that list its name.
      for (const sub of this._subs.values()) {
        if (sub.events.has(name) && this._sourceSubs.has(sub)) this._deliver(sub, { id, event: name, data });
      }
    }

    _onSourceReset(source, e) {
      if (source !== this._source) return;
      let fields;
      try {
        fields = JSON.parse(e.data);
      } catch (error) {
        return;
      }
      // The stream goes on after resume_id, which may be below the cursor (reason "unknown").
      this._cursor = fields.resume_id;
      for (const channel of fields.channels || []) {
        this._reset(this._subs.get(channel), fields.reason, fields.last_event_id, fields.resume_id);
      }
    }

    _unsubscribe(sub) {
      if (this._subs.get(sub.channel) !== sub) return;
      this._subs.delete(sub.channel);
      sub.active = false;
      if (this._transport === "websocket") {
        if (this._socketOpen()) this._socket.send(JSON.stringify({ type: "unsubscribe", channel: sub.channel }));
      } else {
        this._queueSync();
      }
    }
  }

  global.DjangoRealtime = { Realtime, RealtimeError, Subscription, compareIds, backoffDelay, csrfToken, post, VERSION };
})(globalThis);
