// Realtime: routes events to Subscriptions and Presences, and decides when and how to reconnect.

import { RealtimeError, callSafely, fire } from "./errors.mjs";
import { absoluteUrl } from "./http.mjs";
import { cursorOption, cursorOrNull, merged } from "./ids.mjs";
import { CHANNEL_PATTERN } from "./options.mjs";
import { Peer } from "./peer.mjs";
import { PRESENCE_EVENTS, Presence } from "./presence.mjs";
import { backoffDelay } from "./retry.mjs";
import { SSETransport } from "./sse.mjs";
import { Subscription } from "./subscription.mjs";
import { WebSocketTransport } from "./websocket.mjs";

/**
 * Several channels over one connection: a WebSocket, or one SSE stream. Resumes from
 * the last ids after any disconnect, drops repeated events, reports resets and states.
 * An EventTarget: "state", "event", "reset", "error", "transport" and "retry" events
 * carry their detail in `event.detail`; on(type, listener) calls listener(detail).
 */
export class Realtime extends EventTarget {
  constructor(options) {
    super();
    this.options = { ...DEFAULTS, ...SCRIPT_DEFAULTS, ...(options || {}) };
    const { transport, transports, WebSocket } = this.options;
    if (!["auto", "websocket", "sse"].includes(transport)) {
      throw new RealtimeError("bad_option", `transport must be "auto", "websocket" or "sse", not ${transport}`);
    }
    this._subs = new Map(); // channel -> Subscription
    this._presences = new Map(); // channel -> Presence
    this._wrapped = new Map(); // listener given to on() -> its event listener, per type
    this._attempt = 0; // failed connections in a row, for the backoff
    this._wsFailures = 0; // WebSocket attempts in a row that never opened
    this._serverRetry = null; // the server's retry:, in ms
    this._state = "connecting";
    this._everLive = false;
    this._timer = null; // pending reconnection
    this._syncQueued = false;
    this._closed = false;
    this._paused = false;
    this._badIdSeen = false;
    this._websocket = new WebSocketTransport(this._host(() => this._websocket));
    this._sse = new SSETransport(this._host(() => this._sse));
    this._link = {
      unsubscribe: (sub) => this._unsubscribe(sub),
      join: (presence, again) => this._transport.presenceJoin(presence, again),
      who: (presence, asking) => this._transport.presenceWho(presence, asking),
      end: (presence) => this._endPresence(presence),
      report: (error) => this._report(error),
    };
    let skipReason = null;
    if (transport === "auto") {
      if (!WebSocket) skipReason = "this browser has no WebSocket";
      else if (!transports.includes("websocket")) skipReason = "the site serves no WebSockets";
      else if (this._rememberedNoWebSocket()) skipReason = "WebSockets could not connect earlier in this session";
    }
    this._transport = transport === "sse" || skipReason ? this._sse : this._websocket;
    this._onOnline = () => {
      if (this._timer !== null) this._reconnectNow();
    };
    this._onVisibility = () => this._visibilityChanged();
    if (globalThis.addEventListener) globalThis.addEventListener("online", this._onOnline);
    if (this.options.pauseWhenHidden && globalThis.document) {
      globalThis.document.addEventListener("visibilitychange", this._onVisibility);
    }
    // Connect once the caller's synchronous subscribe() calls are done: one SSE URL for all.
    queueMicrotask(() => {
      if (skipReason && !this._closed) fire(this, "transport", { transport: "sse", reason: skipReason });
    });
    this._queueSync();
  }

  /** "connecting", "live", "reconnecting", "paused", "failed" or "closed". */
  get state() {
    return this._state;
  }

  /** "websocket" or "sse": the transport in use now. */
  get transport() {
    return this._transport.name;
  }

  /** Call `listener(detail)` on events of `type`; return a function that stops it. */
  on(type, listener) {
    if (!this._wrapped.has(type)) this._wrapped.set(type, new Map());
    const wrapped = this._wrapped.get(type);
    if (!wrapped.has(listener)) {
      const handler = (e) => listener(e.detail);
      wrapped.set(listener, handler);
      this.addEventListener(type, handler);
    }
    return () => this.off(type, listener);
  }

  off(type, listener) {
    const wrapped = this._wrapped.get(type);
    const handler = wrapped && wrapped.get(listener);
    if (!handler) return;
    wrapped.delete(listener);
    this.removeEventListener(type, handler);
  }

  /**
   * Receive the events of `channel`. `options` is a function (onEvent) or an object:
   * { onEvent, onReset, onError, events: ["message"] or "*", data: "json" or "text", lastId: null }.
   */
  subscribe(channel, options) {
    if (typeof options === "function") options = { onEvent: options };
    options = options || {};
    if (typeof channel !== "string" || !CHANNEL_PATTERN.test(channel)) {
      throw new RealtimeError("invalid_channel", `invalid channel name: ${JSON.stringify(channel)}`);
    }
    if (this._closed) throw new RealtimeError("closed", "this Realtime is closed");
    const existing = this._subs.get(channel);
    if (existing && !existing._page) return this._adopt(existing, options);
    if (existing) {
      throw new RealtimeError("already_subscribed", `already subscribed to ${channel}; unsubscribe first`);
    }
    const sub = new Subscription(this, channel, options, this._link);
    this._subs.set(channel, sub);
    if (this._state === "failed") this._setState(this._everLive ? "reconnecting" : "connecting");
    if (!this._paused && this._timer === null) this._transport.subscribed(sub);
    return sub;
  }

  /**
   * Who is present on `channel`, kept exact: a Presence (docs/client.md#presence).
   * `options`: { join: true, name, info, onJoin, onLeave, onChange, onError }. It uses the
   * channel's subscription if there is one, else makes one of its own.
   */
  presence(channel, options) {
    options = options || {};
    if (typeof channel !== "string" || !CHANNEL_PATTERN.test(channel)) {
      throw new RealtimeError("invalid_channel", `invalid channel name: ${JSON.stringify(channel)}`);
    }
    if (this._closed) throw new RealtimeError("closed", "this Realtime is closed");
    if (this._presences.has(channel)) {
      throw new RealtimeError("already_present", `already a presence on ${channel}; leave() it first`);
    }
    const presence = new Presence(this, channel, options, this._link);
    let sub = this._subs.get(channel);
    if (!sub) {
      sub = this.subscribe(channel, { events: [] });
      sub._page = false;
    }
    sub._presence = presence;
    presence.subscription = sub;
    this._presences.set(channel, presence);
    if (!this._paused && this._timer === null) this._transport.presenceAdded(presence);
    return presence;
  }

  /**
   * Start a WebRTC connection to the one other page on `channel` (a pair channel); return a Peer.
   * options: { iceServers, configuration, polite, stream, dataChannel, publishUrl, onOpen, onMessage,
   * onTrack, onState, onClose, onError } (docs/webrtc.md).
   */
  peer(channel, options) {
    if (this._closed) throw new RealtimeError("closed", "this Realtime is closed");
    return new Peer(this, channel, options);
  }

  /** The cursor of `channel`'s subscription (the text a reconnect sends), or null. */
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
    if (this._closed) return Promise.reject(new RealtimeError("closed", "this Realtime is closed"));
    if (this._transport !== this._websocket) {
      return Promise.reject(
        new RealtimeError("transport", "publish() needs the WebSocket transport; over SSE, POST to a view of yours")
      );
    }
    if (!CHANNEL_PATTERN.test(String(channel))) {
      return Promise.reject(new RealtimeError("invalid_channel", `invalid channel name: ${JSON.stringify(channel)}`));
    }
    return this._websocket.publish(channel, event, data, timeout);
  }

  /** Close the connection for good. */
  close() {
    if (this._closed) return;
    this._closed = true;
    clearTimeout(this._timer);
    this._timer = null;
    if (globalThis.removeEventListener) globalThis.removeEventListener("online", this._onOnline);
    if (globalThis.document) globalThis.document.removeEventListener("visibilitychange", this._onVisibility);
    this._websocket.close("closed", "this Realtime is closed");
    this._sse.close();
    for (const sub of this._subs.values()) sub.active = false;
    this._subs.clear();
    for (const presence of this._presences.values()) presence.active = false;
    this._presences.clear();
    this._setState("closed");
  }

  // Internals ---------------------------------------------------------

  /**
   * All a transport sees of this Realtime: its options, and callbacks (as centrifuge-js hands
   * its transports theirs). `transport()` is the transport this host serves: what it reports
   * while it is not the one in use (a fallback happened) is ignored.
   *
   *   subscriptions(), subscription(channel)   the active Subscriptions (sub.channel, sub.cursor)
   *   presences(), presence(channel)           the Presences (presence.channel, .subscription)
   *   joins(presence)        {name, info} if the connection should be present for it, else null
   *   queueSync()            call sync() once the page's synchronous calls are done
   *   opened()               the connection is open (the backoff starts afresh)
   *   lost({opened, atOnce, retryAfter, error, after})   it failed or ended: reconnect (after ms,
   *                          when the server gave its own delay), or fall back
   *   stopped(error)         refused for good (SSE 4xx): no retry until the next subscribe()
   *   serverRetry(ms)        the server's retry: field
   *   live(sub)              a subscription is live (its Presence asks who is here now)
   *   deliver(sub, {id, event, data, text}), reset(sub, reason, lastId, resumeId)
   *   refuse(sub, error, quiet), report(error)
   *   joined(presence, connection, user), gone(presence), joinRefused(presence, error)
   *   answered(presence, asking, members), unanswered(presence, asking, error, {retry, retryAfter})
   *
   * A transport in turn offers the Realtime: connect(), sync(), drop(), close(code, message),
   * connected, subscribed(sub), unsubscribed(sub), resubscribe(sub, cursor),
   * presenceAdded(presence), presenceJoin(presence, again), presenceWho(presence, asking).
   */
  _host(transport) {
    return {
      options: this.options,
      subscriptions: () => Array.from(this._subs.values()),
      subscription: (channel) => this._subs.get(channel),
      presences: () => Array.from(this._presences.values()),
      presence: (channel) => this._presences.get(channel),
      joins: (presence) => (presence._wanted ? { name: presence._name, info: presence._info } : null),
      queueSync: () => this._queueSync(),
      opened: () => this._opened(transport()),
      lost: (info) => this._lost(transport(), info),
      stopped: (error) => this._stopped(transport(), error),
      serverRetry: (delay) => {
        this._serverRetry = delay;
      },
      live: (sub) => this._live(transport(), sub),
      deliver: (sub, message) => this._deliver(sub, message),
      reset: (sub, reason, lastId, resumeId) => this._reset(sub, reason, lastId, resumeId),
      refuse: (sub, error, quiet) => this._refuse(sub, error, quiet),
      report: (error) => this._report(error),
      joined: (presence, connection, user) => presence._joined(connection, user),
      gone: (presence) => presence._gone(),
      joinRefused: (presence, error) => presence._joinRefused(error),
      answered: (presence, asking, members) => presence._answered(asking, members),
      unanswered: (presence, asking, error, info) => presence._unanswered(asking, error, info),
    };
  }

  _setState(state, extra) {
    if (state === this._state) return;
    const previous = this._state;
    this._state = state;
    fire(this, "state", { state, previous, transport: this.transport, ...(extra || {}) });
  }

  _queueSync() {
    if (this._syncQueued) return;
    this._syncQueued = true;
    queueMicrotask(() => {
      this._syncQueued = false;
      if (this._closed || this._paused || this._timer !== null) return;
      this._transport.sync();
    });
  }

  /** A transport's connection failed or ended: reconnect after a backoff, or fall back to SSE. */
  _lost(transport, info) {
    if (transport !== this._transport || this._closed || this._paused) return;
    if (transport === this._websocket && !info.opened) {
      this._wsFailures += 1;
      const { transport: mode, fallbackAfter } = this.options;
      if (mode === "auto" && !this._websocket.everOpened && this._wsFailures >= fallbackAfter) {
        this._fallBack("WebSockets cannot connect");
        return;
      }
    }
    this._scheduleReconnect(info);
  }

  /** Try again after a backoff: from the server's retry: (else minDelay), at least Retry-After. */
  _scheduleReconnect({ atOnce, retryAfter, error, after = null }) {
    if (this._closed || this._timer !== null) return;
    if (this._subs.size === 0) return; // nothing to carry: the next subscribe() connects
    this._setState(this._everLive ? "reconnecting" : "connecting");
    const { random, maxDelay, minDelay } = this.options;
    let delay;
    if (after !== null) delay = after; // the server's own spread, at shutdown
    else if (atOnce) delay = Math.round(random() * 250);
    else {
      const base = this._transport === this._sse && this._serverRetry !== null ? this._serverRetry : minDelay;
      delay = backoffDelay(this._attempt, { minDelay: base, maxDelay, random });
      this._attempt += 1;
    }
    // Retry-After is a floor, with a little jitter so that refused clients do not return together.
    if (retryAfter !== null && retryAfter !== undefined) delay = Math.max(delay, Math.round(retryAfter * (1 + random() * 0.2)));
    fire(this, "retry", { attempt: this._attempt, delay, transport: this.transport, error: error || null });
    this._timer = setTimeout(() => this._reconnectNow(), delay);
  }

  _reconnectNow() {
    clearTimeout(this._timer);
    this._timer = null;
    if (this._closed || this._paused) return;
    this._transport.sync();
  }

  _opened(transport) {
    if (transport !== this._transport) return;
    this._attempt = 0;
    if (transport === this._websocket) this._wsFailures = 0;
    this._everLive = true;
    this._setState("live");
  }

  /** The transport was refused for good (SSE 4xx): no retry until the next subscribe(). */
  _stopped(transport, error) {
    if (transport !== this._transport || this._closed) return;
    if (this._subs.size === 0) this._setState("failed", { error });
    else this._queueSync(); // subscriptions made since the refused request get a stream of their own
  }

  _fallBack(reason) {
    this._websocket.close("transport", "WebSockets cannot connect; fell back to SSE, where publish() is not available");
    this._transport = this._sse;
    this._attempt = 0;
    if (this.options.rememberFallback) this._rememberNoWebSocket();
    fire(this, "transport", { transport: "sse", reason });
    this._transport.sync();
  }

  _storageKey() {
    return "django-realtime:no-websocket:" + absoluteUrl(this.options.wsUrl, true);
  }

  _storage() {
    if (this.options.storage !== undefined) return this.options.storage;
    try {
      return globalThis.sessionStorage || null; // throws where storage is blocked
    } catch (error) {
      return null;
    }
  }

  _rememberedNoWebSocket() {
    if (!this.options.rememberFallback) return false;
    try {
      const storage = this._storage();
      return Boolean(storage && storage.getItem(this._storageKey()) === "1");
    } catch (error) {
      return false;
    }
  }

  _rememberNoWebSocket() {
    try {
      const storage = this._storage();
      if (storage) storage.setItem(this._storageKey(), "1");
    } catch (error) {
      // storage full or blocked: the next page tries WebSockets again
    }
  }

  _visibilityChanged() {
    if (this._closed) return;
    if (globalThis.document.visibilityState === "hidden") {
      if (this._paused) return;
      this._paused = true;
      clearTimeout(this._timer);
      this._timer = null;
      this._transport.drop(); // every subscription keeps its last id: nothing is lost
      this._setState("paused");
    } else if (this._paused) {
      this._paused = false;
      this._attempt = 0;
      this._setState(this._everLive ? "reconnecting" : "connecting");
      this._transport.sync();
    }
  }

  _report(error) {
    fire(this, "error", error);
  }

  /** A subscription is live on `transport` (WebSocket: subscribed; SSE: the stream opened). */
  _live(transport, sub) {
    if (transport !== this._transport || !sub.active) return;
    if (sub._presence) sub._presence._live();
  }

  /** The page subscribes to a channel whose Presence made the subscription: the page's it is now. */
  _adopt(sub, options) {
    const cursor = cursorOption(options.lastId);
    sub._take(options);
    sub._page = true;
    // An explicit start elsewhere (history from "0", say) subscribes again from there.
    const moved = cursor !== null && !(sub.cursor !== null && cursor.equals(sub.cursor));
    if (moved && !this._paused && this._timer === null) this._transport.resubscribe(sub, cursor);
    else if (cursor !== null) sub.cursor = cursor;
    return sub;
  }

  /** presence.leave(): leave (over the transport), and end the subscription if the presence made it. */
  _endPresence(presence) {
    if (this._presences.get(presence.channel) !== presence) return;
    this._presences.delete(presence.channel);
    const sub = presence.subscription;
    if (!this._closed) this._transport.presenceJoin(presence, false);
    if (sub && sub._presence === presence) {
      sub._presence = null;
      if (!sub._page) this._unsubscribe(sub);
    }
  }

  /** Drop a subscription the server refused and tell its owner (and, unless `quiet`, the page). */
  _refuse(sub, error, quiet) {
    error.channel = sub.channel;
    if (this._subs.get(sub.channel) === sub) {
      this._subs.delete(sub.channel);
      sub.active = false;
    }
    const presence = sub._presence;
    if (presence && this._presences.get(sub.channel) === presence) {
      this._presences.delete(sub.channel);
      presence._refused(error);
    }
    if (sub._page) {
      callSafely(sub.onError, error);
      fire(sub, "error", error);
    }
    if (!quiet) this._report(error);
  }

  // Delivery, shared by both transports ---------------------------------

  /**
   * Hand an event to its subscription, unless the subscription's cursor covers it: seen before a
   * reconnect, or from a stream that started below this channel's cursor. Events come in commit
   * order, not id order: a late one ("11@12", after "12~11") is new if its id was pending.
   */
  _deliver(sub, msg) {
    if (!sub || !sub.active) return;
    const id = msg.id === undefined || msg.id === null ? "" : String(msg.id);
    if (id !== "") {
      const read = cursorOrNull(id);
      if (read === null) this._badId(id); // delivered all the same, and the cursor stays: nothing is lost
      else {
        if (sub.cursor !== null && sub.cursor.covers(read.eventId)) return;
        sub.cursor = merged(sub.cursor, read.cursor);
      }
    }
    if (sub._presence && PRESENCE_EVENTS.has(msg.event)) {
      let data = msg.data;
      if (msg.text) {
        try {
          data = JSON.parse(data);
        } catch (error) {
          data = null; // not the server's: ignored
        }
      }
      sub._presence._event(msg.event, data);
    }
    if (sub.events !== null && !sub.events.has(msg.event)) return;
    let data = msg.data;
    if (sub.data === "text") {
      if (!msg.text) data = JSON.stringify(data);
    } else if (msg.text) {
      try {
        data = JSON.parse(data);
      } catch (error) {
        const message = `event ${id || "(no id)"} of ${sub.channel} is not JSON; subscribe with data: "text" for text`;
        const failure = new RealtimeError("bad_data", message, { channel: sub.channel, id, text: msg.data });
        callSafely(sub.onError, failure);
        fire(sub, "error", failure);
        this._report(failure);
        return;
      }
    }
    const event = { channel: sub.channel, id, event: msg.event, data };
    callSafely(sub.onEvent, event);
    fire(sub, "event", event);
    fire(this, "event", event);
  }

  /** The server's id is not a cursor (not a server of this package?): say so once. */
  _badId(id) {
    if (this._badIdSeen) return;
    this._badIdSeen = true;
    const shown = JSON.stringify(id.slice(0, 40));
    this._report(new RealtimeError("bad_id", `the server sent an event id that is not a cursor: ${shown}`));
  }

  _reset(sub, reason, lastId, resumeId) {
    if (!sub || !sub.active) return;
    // Rebuild from what follows: the events resume_id does not cover are the ones the log still holds.
    const resume = cursorOrNull(String(resumeId));
    if (resume === null) this._badId(String(resumeId));
    else sub.cursor = resume.cursor;
    if (sub._presence) sub._presence._ask(); // events may be missing: ask who is here again
    if (!sub._page) return;
    const detail = { channel: sub.channel, reason, lastId, resumeId };
    callSafely(sub.onReset, detail);
    fire(sub, "reset", detail);
    fire(this, "reset", detail);
  }

  _unsubscribe(sub) {
    if (this._subs.get(sub.channel) !== sub) return;
    if (sub._page && sub._presence) {
      // The channel's Presence goes on with it: the page only stops hearing of it.
      sub._take({ events: [] });
      sub._page = false;
      return;
    }
    this._subs.delete(sub.channel);
    sub.active = false;
    this._transport.unsubscribed(sub);
  }
}
