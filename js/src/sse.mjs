// The Server-Sent Events transport over fetch() (docs/sse.md), with the pure parser of parser.mjs.
// Like websocket.mjs, it sees only the host its Realtime hands it (Realtime._host() in client.mjs).

import { RealtimeError } from "./errors.mjs";
import { responseText } from "./http.mjs";
import { cursorOrNull, merged } from "./ids.mjs";
import { SSEParser } from "./parser.mjs";
import { PRESENCE_REFUSALS } from "./presence.mjs";
import { STOP_STATUSES, parseRetryAfter } from "./retry.mjs";

/** GET *url* for an SSE transport: with the Realtime's credentials, never from a cache. */
function fetchFresh(host, url, accept, signal) {
  const { credentials } = host.options;
  return host.options.fetch(url, { headers: { Accept: accept }, credentials, cache: "no-store", signal });
}

/** Map each channel of a Realtime-Presence header ("<channel> <connection>, ...") to its connection. */
function parsePresenceHeader(value) {
  const own = new Map();
  for (const part of (value || "").split(",")) {
    const [channel, connection, ...rest] = part.trim().split(" ");
    if (channel && connection && rest.length === 0) own.set(channel, connection);
  }
  return own;
}

/** The presence/ endpoint of an SSE endpoint URL (docs/sse.md#presence), asking about `channel`. */
function presenceUrl(sseUrl, channel) {
  const at = sseUrl.indexOf("?");
  const path = at === -1 ? sseUrl : sseUrl.slice(0, at);
  const params = new URLSearchParams(at === -1 ? "" : sseUrl.slice(at + 1));
  params.set("channel", channel);
  return (path.endsWith("/") ? path : path + "/") + "presence/?" + params;
}

/**
 * Server-Sent Events over fetch(): one stream for every channel, each event naming its
 * channel (?include=channel), a refused channel reported in-band (docs/sse.md).
 */
export class SSETransport {
  constructor(host) {
    this.host = host;
    this.name = "sse";
    this.controller = null; // aborts the stream in flight
    this.channels = null; // the channels the server streams now (a refused one leaves it)
    this.subs = null; // the subscriptions the stream was opened for
    this.cursor = null; // what the stream covers: where it started, and every event since (a Cursor)
    this.opened = false; // the stream in flight answered 200
    this.present = []; // the Presences the stream joins for (?presence=)
    this.joinKey = null; // what the stream asked to join, to tell when that changes
    this._unroutable = false;
  }

  get connected() {
    return this.controller !== null;
  }

  connect() {
    const host = this.host;
    const subs = host.subscriptions();
    if (subs.length === 0) return;
    // Every channel on one stream shares one cursor: start from what they have all seen (the
    // meet of their cursors); each subscription drops the events it has seen (Realtime._deliver).
    // A channel from now starts where the last stream got to.
    const previous = this.cursor;
    let start = null;
    for (const sub of subs) {
      if (sub.cursor === null && previous !== null) sub.cursor = previous;
      if (sub.cursor !== null) start = start === null ? sub.cursor : start.meet(sub.cursor);
    }
    this.cursor = start;
    const channels = subs.map((sub) => sub.channel).sort();
    const params = new URLSearchParams(channels.map((c) => ["channel", c]));
    const joins = this._joins();
    for (const presence of joins.present) params.append("presence", presence.channel);
    if (joins.name !== null) params.append("name", joins.name);
    if (joins.info !== null) params.append("info", JSON.stringify(joins.info));
    params.append("include", "channel");
    // A query parameter, not the Last-Event-ID header: exact all the same, and a simple
    // request, which a cross-origin endpoint serves without a CORS preflight.
    if (start !== null) params.append("lastEventId", String(start));
    const base = host.options.sseUrl;
    const controller = new AbortController();
    this.controller = controller;
    this.channels = new Set(channels);
    this.subs = new Set(subs);
    this.present = joins.present;
    this.joinKey = joins.key;
    this._stream(base + (base.includes("?") ? "&" : "?") + params, controller).catch((error) => {
      // A bug of ours or of a page's listener: report it, and let the backoff try again.
      if (controller === this.controller) this._failed(new RealtimeError("internal", String(error)), {});
    });
  }

  /** Reopen the stream if it does not carry exactly the subscribed channels, present where Presences want. */
  sync() {
    const subs = this.host.subscriptions();
    if (
      this.controller &&
      subs.length === this.channels.size &&
      subs.every((sub) => this.channels.has(sub.channel)) &&
      this._joins().key === this.joinKey
    ) {
      // The same channels, but a channel unsubscribed and subscribed again is a new
      // Subscription: the stream goes on, and routes that channel's events to it.
      this.subs = new Set(subs);
      return;
    }
    this.drop();
    this.connect();
  }

  /**
   * The presence the stream should join: the channels of the Presences that want to be
   * present, with one name and one info for the stream (the first such Presence's).
   */
  _joins() {
    const host = this.host;
    const present = [];
    let owner = null;
    for (const presence of host.presences()) {
      const joins = host.joins(presence);
      if (joins !== null && host.subscription(presence.channel) === presence.subscription) {
        present.push(presence);
        owner = owner || joins;
      }
    }
    present.sort((a, b) => (a.channel < b.channel ? -1 : a.channel > b.channel ? 1 : 0));
    const name = owner ? owner.name : null;
    const info = owner ? owner.info : null;
    const key = JSON.stringify([present.map((p) => p.channel), name, info]);
    return { present, name, info, key };
  }

  resubscribe(sub, cursor) {
    this.drop(); // first: drop() moves each subscription to the stream's cursor
    sub.cursor = cursor;
    this.host.queueSync();
  }

  presenceAdded(presence) {
    this.host.queueSync(); // a presence to join changes the URL: the stream reopens, then asks
    if (this.opened && this.subs.has(presence.subscription) && this.host.joins(presence) === null) {
      this.host.live(presence.subscription);
    }
  }

  presenceJoin() {
    this.host.queueSync(); // joins and leaves are the stream's URL
  }

  presenceWho(presence, asking) {
    if (!this.opened || !this.subs.has(presence.subscription)) return; // asked again once the stream opens
    this._who(presence, asking).catch((error) =>
      this.host.unanswered(presence, asking, new RealtimeError("internal", String(error)), { retry: true })
    );
  }

  /** GET the presence/ endpoint beside the SSE endpoint, with the stream's credentials. */
  async _who(presence, asking) {
    const host = this.host;
    const url = presenceUrl(host.options.sseUrl, presence.channel);
    let response;
    try {
      response = await fetchFresh(host, url, "application/json");
    } catch (error) {
      host.unanswered(presence, asking, new RealtimeError("network", `GET ${url} failed: ${error.message}`), { retry: true });
      return;
    }
    if (!response.ok) {
      const text = await responseText(response);
      const status = response.status;
      const error = new RealtimeError(STOP_STATUSES.get(status) || "http", text || `HTTP ${status}`, { status, url });
      const retryAfter = parseRetryAfter(response.headers.get("retry-after"));
      host.unanswered(presence, asking, error, { retry: !STOP_STATUSES.has(status), retryAfter });
      return;
    }
    let body;
    try {
      body = await response.json();
    } catch (error) {
      host.unanswered(presence, asking, new RealtimeError("bad_message", `${url} did not answer JSON`), { retry: true });
      return;
    }
    host.answered(presence, asking, body.members);
  }

  subscribed() {
    this.host.queueSync();
  }

  unsubscribed() {
    this.host.queueSync();
  }

  drop() {
    const controller = this.controller;
    if (!controller) return;
    // Every channel the stream carried has seen what the stream's cursor covers.
    if (this.cursor !== null) {
      for (const sub of this.subs) {
        if (sub.active) sub.cursor = merged(sub.cursor, this.cursor);
      }
    }
    this.controller = null;
    this.channels = null;
    this.opened = false;
    for (const presence of this.present) this.host.gone(presence); // the server leaves for a stream that ended
    this.present = [];
    controller.abort();
  }

  close() {
    this.drop();
  }

  async _stream(url, controller) {
    const host = this.host;
    const current = () => controller === this.controller;
    let response;
    try {
      response = await fetchFresh(host, url, "text/event-stream", controller.signal);
    } catch (error) {
      if (current()) this._failed(new RealtimeError("network", `GET ${url} failed: ${error.message}`), {});
      return;
    }
    if (!current()) return;
    const type = (response.headers.get("content-type") || "").toLowerCase();
    if (response.status !== 200 || !type.startsWith("text/event-stream")) {
      const text = await responseText(response);
      if (!current()) return;
      const status = response.status;
      if (STOP_STATUSES.has(status)) {
        this._refused(new RealtimeError(STOP_STATUSES.get(status), text || `HTTP ${status}`, { status, url }));
        return;
      }
      const error =
        status === 200
          ? new RealtimeError("bad_content_type", `the SSE endpoint answered ${type || "no content type"}`, { status, url })
          : new RealtimeError("http", text || `HTTP ${status}`, { status, url });
      this._failed(error, { retryAfter: parseRetryAfter(response.headers.get("retry-after")) });
      return;
    }
    host.opened();
    this.opened = true;
    // The stream joined before its first byte; a header names its member on each channel.
    const own = parsePresenceHeader(response.headers.get("realtime-presence"));
    for (const presence of this.present) host.joined(presence, own.get(presence.channel) || null, null);
    for (const sub of this.subs) {
      if (current()) host.live(sub);
    }
    if (!current()) return;
    const parser = new SSEParser(
      (event) => current() && this._onEvent(event),
      (delay) => current() && host.serverRetry(delay),
      // Also an id without data: where a stream "from now" starts, so a reconnect resumes there.
      (id) => current() && this._advance(id)
    );
    const decoder = new TextDecoder();
    try {
      const reader = response.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (!current()) return;
        if (done) break;
        parser.feed(decoder.decode(value, { stream: true }));
      }
    } catch (error) {
      if (current()) this._failed(new RealtimeError("network", `the SSE stream broke: ${error.message}`), { opened: true });
      return;
    }
    // A clean end (SSE_MAX_LIFETIME, a restart): reconnect after the server's retry delay.
    if (current()) this._failed(null, { opened: true });
  }

  _failed(error, info) {
    this.drop();
    if (error) this.host.report(error);
    this.host.lost({ opened: Boolean(info.opened), retryAfter: info.retryAfter, error });
  }

  /** The endpoint refused the request itself (400, 401, 403, 404, 204): retrying cannot help. */
  _refused(error) {
    const subs = Array.from(this.subs);
    this.drop();
    for (const sub of subs) {
      if (!sub.active) continue; // unsubscribed while the request was in flight
      this.host.refuse(sub, new RealtimeError(error.code, error.message, { status: error.status, url: error.url }), true);
    }
    this.host.report(error); // once for the page, not once per channel
    this.host.stopped(error);
  }

  /** An id: the stream covers what it did and what the id's cursor covers (the server's id after each event). */
  _advance(id) {
    const read = id ? cursorOrNull(id) : null;
    if (read !== null) this.cursor = merged(this.cursor, read.cursor);
  }

  _onEvent(event) {
    const host = this.host;
    if (event.type === "error" || event.type === "reset") {
      let fields;
      try {
        fields = JSON.parse(event.data);
      } catch (error) {
        host.report(new RealtimeError("bad_message", `the SSE endpoint sent a ${event.type} that is not JSON`));
        return;
      }
      if (event.type === "reset") {
        // The stream goes on from resume_id, which may cover less than the cursor did.
        const resume = cursorOrNull(String(fields.resume_id));
        if (resume !== null) this.cursor = resume.cursor;
        for (const channel of fields.channels || []) {
          const sub = host.subscription(channel);
          if (sub && this.subs.has(sub)) host.reset(sub, fields.reason, fields.last_event_id, fields.resume_id);
        }
        return;
      }
      const error = new RealtimeError(String(fields.code), String(fields.message));
      if (PRESENCE_REFUSALS.has(error.code)) {
        // A refused join: the channel streams all the same; the next stream does not ask again.
        const presence = host.presence(fields.channel);
        if (presence && this.present.includes(presence)) {
          this.present = this.present.filter((p) => p !== presence);
          host.joinRefused(presence, error);
          this.joinKey = this._joins().key;
        }
        return;
      }
      // A refused channel: the server streams the others, so this stream carries on without it.
      const sub = host.subscription(fields.channel);
      if (this.channels) this.channels.delete(fields.channel);
      if (sub && this.subs.has(sub)) {
        this.subs.delete(sub);
        host.refuse(sub, error);
      }
      return;
    }
    this._advance(event.id);
    let sub;
    if (event.channel) sub = host.subscription(event.channel);
    else if (this.subs.size === 1) sub = this.subs.values().next().value; // a stream of one channel
    else {
      if (!this._unroutable) {
        this._unroutable = true;
        host.report(
          new RealtimeError("unroutable", "the SSE endpoint does not name each event's channel (?include=channel)")
        );
      }
      return;
    }
    if (sub && this.subs.has(sub)) host.deliver(sub, { id: event.id, event: event.type, data: event.data, text: true });
  }
}
