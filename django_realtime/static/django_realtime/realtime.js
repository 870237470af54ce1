/*! django-realtime browser client: WebSocket with a Server-Sent Events fallback, no dependencies.
 *
 *   <script src="/static/django_realtime/realtime.js"></script>   → window.DjangoRealtime
 *   import { Realtime } from "/static/django_realtime/realtime.mjs";
 *
 * API: docs/client.md.  Wire protocols: docs/websocket.md and docs/sse.md.
 *
 * The parts: Cursor (event ids, read as django_realtime/cursor.py reads them: events come
 * in commit order, not id order), SSEParser (the WHATWG "Server-sent events" parser, over
 * fetch, since EventSource shows neither the status nor the headers of a refusal), the retry
 * policy (backoffDelay, parseRetryAfter), one transport class per transport
 * (WebSocketTransport, SSETransport) behind the same small interface, Realtime,
 * an EventTarget that routes events to Subscriptions and decides when to reconnect,
 * and Presence, who is here on a channel, kept exact over either transport.
 */
(function (global) {
  "use strict";

  /** Where the API lives whatever else holds window.DjangoRealtime; realtime.mjs reads it here. */
  const API_KEY = Symbol.for("django-realtime");
  /** A classic <script> publishes window.DjangoRealtime; a module import (or Node) publishes nothing. */
  const AS_SCRIPT = Boolean(global.document && global.document.currentScript);

  if (global[API_KEY]) {
    // Loaded twice (a script tag and the module): one API, so that classes compare equal.
    publishGlobal(global[API_KEY]);
    return;
  }

  const VERSION = "0.1.0";

  /** Close codes after which the server asks to reconnect at once (docs/websocket.md, "Closing"). */
  const RECONNECT_AT_ONCE = new Set([1000, 4000, 4001]);
  /** The server shuts down (4004): reconnect after the delay its close reason gives, "retry=<ms>". */
  const CLOSE_SHUTDOWN = 4004;
  const shutdownDelay = (code, reason) => {
    const match = code === CLOSE_SHUTDOWN ? /^retry=(\d{1,6})$/.exec(reason || "") : null;
    return match ? Number(match[1]) : null;
  };
  /** The channel name rules of django_realtime.names. */
  const CHANNEL_PATTERN = /^[A-Za-z0-9_\-.:@/=+]{1,200}$/;
  /** A close code of our own, for a socket we drop (RFC 6455 leaves 4000-4999 to applications). */
  const CLOSE_CLIENT = 4100;
  /**
   * HTTP statuses after which retrying cannot help: the request itself is refused. Stop
   * and report, as EventSource does after any non-200 (and as fetch-event-source's docs
   * advise); other statuses (5xx, 408, 429) are retried with backoff and Retry-After.
   */
  const STOP_STATUSES = new Map([
    [204, "no_content"], // WHATWG HTML: "204 No Content ... prevent the user agent from reconnecting"
    [400, "bad_request"],
    [401, "unauthorized"],
    [403, "forbidden"],
    [404, "not_found"],
  ]);
  const TRANSPORTS = ["websocket", "sse"];

  const DEFAULTS = {
    transport: "auto", // "auto" (WebSocket, falling back to SSE), "websocket" or "sse"
    transports: TRANSPORTS, // the transports the site serves ({% realtime_script transports="sse" %})
    wsUrl: "/ws/",
    sseUrl: "/events/",
    csrfCookieName: "csrftoken",
    credentials: "same-origin", // fetch() credentials of the SSE stream: "include" for a cross-origin endpoint
    minDelay: 500, // first reconnection delay, in ms, before jitter (the server's retry: replaces it)
    maxDelay: 30000, // longest reconnection delay, in ms
    fallbackAfter: 2, // WebSocket attempts that never opened before switching to SSE ("auto" only)
    rememberFallback: true, // "auto": skip WebSockets for the rest of the tab's session once they failed
    connectTimeout: 8000, // a WebSocket handshake that takes longer counts as failed
    pingInterval: 25000, // WebSocket: ping after this long...
    pongTimeout: 10000, // ...and reconnect if no pong comes within this
    publishTimeout: 10000, // publish(): reject if no ack within this
    pauseWhenHidden: false, // close the connection while the tab is hidden, resume from the cursor on return
    // Injectable for tests and unusual environments:
    WebSocket: global.WebSocket,
    fetch: global.fetch ? (...args) => global.fetch(...args) : undefined,
    storage: undefined, // sessionStorage, looked up when first needed (it may throw)
    random: Math.random,
  };

  /** Defaults given by the including <script> tag ({% realtime_script %} writes them). */
  const SCRIPT_DEFAULTS = (function () {
    const script = AS_SCRIPT ? global.document.currentScript : null;
    const data = (script && script.dataset) || {};
    const found = {};
    if (data.wsUrl) found.wsUrl = data.wsUrl;
    if (data.sseUrl) found.sseUrl = data.sseUrl;
    if (data.csrfCookie) found.csrfCookieName = data.csrfCookie;
    if (data.transports) found.transports = data.transports.split(/[\s,]+/).filter(Boolean);
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
   * Compare two integer ids (decimal strings up to 2^63-1, no leading zeros, too large for a
   * JavaScript number): negative, zero or positive. A longer id is larger, and ids of one
   * length compare as strings. Not for events: their ids are cursors, which come in commit
   * order, not id order (Cursor); pairChannel() orders user keys with it.
   */
  function compareIds(a, b) {
    a = String(a);
    b = String(b);
    if (a.length !== b.length) return a.length - b.length;
    return a < b ? -1 : a > b ? 1 : 0;
  }

  // Cursors ---------------------------------------------------------------
  //
  // An event's id is a cursor: where a client is in the log, as the set of ids it has seen or
  // need not see. Transactions commit in any order, so an event may come after one with a
  // higher id; a cursor names a *top*, the highest id delivered, and the ids below it still
  // *pending* (drawn, not committed yet), as runs. It *covers* every id up to its top that is
  // not pending. The text, opaque to a page: "4180", "4180~4171,4175-4177", and, as a late
  // event carries it, "4171@4180~4175-4177" (the event's own id before "@", ignored on resume).
  // A mirror of django_realtime/cursor.py, tested against its answers (tests/js/cursor.test.mjs).

  /** Most runs of pending ids a cursor holds. */
  const MAX_RUNS = 16;
  /** The largest id: a BigAutoField, signed 64 bits. Ids are BigInts here: a Number holds 53 bits. */
  const ID_MAX = (1n << 63n) - 1n;
  const NUMBER = "(?:0|[1-9][0-9]{0,18})";
  const RUN = `${NUMBER}(?:-${NUMBER})?`;
  const CURSOR_TEXT = new RegExp(`^(?:(${NUMBER})@)?(${NUMBER})(?:~(${RUN}(?:,${RUN}){0,${MAX_RUNS - 1}}))?$`);

  /** A position in the log: every id up to `top` but the `pending` runs ([first, last], sorted, disjoint). */
  class Cursor {
    constructor(top, pending) {
      this.top = BigInt(top);
      const runs = Array.from(pending || [], ([first, last]) => Object.freeze([BigInt(first), BigInt(last)]));
      this.pending = Object.freeze(runs);
      Object.freeze(this);
    }

    /** Parse a cursor's text (an integer id too); throw a RealtimeError "bad_cursor" for anything else. */
    static parse(text) {
      return readCursor(text).cursor;
    }

    /** The id of the event whose cursor `text` is (the part before "@", else the top), as a decimal string. */
    static eventId(text) {
      return readCursor(text).eventId;
    }

    toString() {
      let text = String(this.top);
      if (this.pending.length) {
        text += "~" + this.pending.map(([a, b]) => (a === b ? String(a) : `${a}-${b}`)).join(",");
      }
      return text;
    }

    equals(other) {
      return other instanceof Cursor && this.top === other.top && String(this) === String(other);
    }

    /** Whether the event of id `id` (a BigInt, or a decimal string) was delivered, or is none of the client's. */
    covers(id) {
      id = BigInt(id);
      if (id > this.top) return false;
      for (const [first, last] of this.pending) {
        if (id < first) return true;
        if (id <= last) return false;
      }
      return true;
    }

    /** Whether this cursor covers every id `other` covers. */
    dominates(other) {
      if (other.top > this.top) return false;
      // Every id this one leaves pending must be left pending (or above the top) by the other.
      return this.pending.every(([first, last]) => first > other.top || within(first, last, other));
    }

    /** The cursor that covers what either covers. */
    merge(other) {
      if (this.dominates(other)) return this;
      if (other.dominates(this)) return other;
      const [high, low] = this.top >= other.top ? [this, other] : [other, this];
      // Pending in the result: pending in the higher one, and pending in the lower one or above its top.
      return fitted(high.top, intersect(high.pending, [...low.pending, [low.top + 1n, high.top]]));
    }

    /** A cursor that covers nothing either leaves out: the ids both cover, or fewer (within MAX_RUNS runs). */
    meet(other) {
      let top = this.top < other.top ? this.top : other.top;
      const runs = union([...this.pending, ...other.pending])
        .filter(([first]) => first <= top)
        .map(([first, last]) => [first, last < top ? last : top]);
      while (runs.length && runs[runs.length - 1][1] >= top) top = runs.pop()[0] - 1n; // the top pending in the other
      return fitted(top, runs);
    }
  }
  Object.defineProperty(Cursor, "MAX_RUNS", { value: MAX_RUNS });

  /** Parse `text`: {cursor, eventId}; throw RealtimeError("bad_cursor") unless it is a cursor's text. */
  function readCursor(text) {
    const match = typeof text === "string" ? CURSOR_TEXT.exec(text) : null;
    if (match === null || BigInt(match[2]) > ID_MAX) {
      const shown = typeof text === "string" ? JSON.stringify(text.slice(0, 40)) : String(text);
      throw new RealtimeError(
        "bad_cursor",
        `event id must be a decimal number from 0 to ${ID_MAX}, or a cursor the server gave, got ${shown}`
      );
    }
    const top = BigInt(match[2]);
    const runs = [];
    for (const part of match[3] ? match[3].split(",") : []) {
      const [first, last] = part.split("-");
      runs.push([BigInt(first), BigInt(last === undefined ? first : last)]);
    }
    runs.forEach(([first, last], index) => {
      if (!(first > 0n && first <= last && last < top) || (index > 0 && runs[index - 1][1] + 1n >= first)) {
        throw new RealtimeError(
          "bad_cursor",
          `malformed cursor ${JSON.stringify(match[0].slice(0, 40))}: runs must rise, not touch, stay below the top`
        );
      }
    });
    return { cursor: new Cursor(top, runs), eventId: match[1] === undefined ? match[2] : match[1] };
  }

  /** The cursor of `top` and `runs`, or, past MAX_RUNS runs, one that covers less and fits (safe: nothing is lost). */
  function fitted(top, runs) {
    if (runs.length <= MAX_RUNS) return new Cursor(top, runs);
    return new Cursor(runs[MAX_RUNS][0] - 1n, runs.slice(0, MAX_RUNS));
  }

  /** Whether ids first..last are all left out by `other`: pending there, or above its top. */
  function within(first, last, other) {
    for (const [low, high] of other.pending) {
      if (low <= first && last <= high) return true;
      if (low <= first && first <= high) {
        first = high + 1n;
        if (first > last) return true;
      }
    }
    return first > other.top;
  }

  function compareRuns(x, y) {
    if (x[0] !== y[0]) return x[0] < y[0] ? -1 : 1;
    return x[1] === y[1] ? 0 : x[1] < y[1] ? -1 : 1;
  }

  /** The runs of ids in both sets of sorted runs. */
  function intersect(left, right) {
    right = right.slice().sort(compareRuns);
    const out = [];
    for (const [a, b] of left) {
      for (const [c, d] of right) {
        const first = a > c ? a : c;
        const last = b < d ? b : d;
        if (first <= last) out.push([first, last]);
      }
    }
    return union(out);
  }

  /** Sorted, disjoint, non-touching runs covering the given ones. */
  function union(runs) {
    const out = [];
    for (const [first, last] of runs.slice().sort(compareRuns)) {
      const previous = out[out.length - 1];
      if (previous && first <= previous[1] + 1n) previous[1] = previous[1] > last ? previous[1] : last;
      else out.push([first, last]);
    }
    return out;
  }

  /** A cursor of the server's text, or null: an id no server of this package sends (the caller reports it). */
  function cursorOrNull(text) {
    try {
      return readCursor(text);
    } catch (error) {
      return null;
    }
  }

  /** The cursor that covers what either covers; null is a cursor that covers nothing. */
  function merged(a, b) {
    return a === null ? b : b === null ? a : a.merge(b);
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

  /**
   * Parse a Retry-After header (RFC 9110 §10.2.3): delay-seconds or an HTTP-date.
   * Return milliseconds from `now`, or null if absent or malformed.
   */
  function parseRetryAfter(value, now) {
    if (value === null || value === undefined) return null;
    const text = String(value).trim();
    if (/^\d+$/.test(text)) return Number(text) * 1000;
    const when = Date.parse(text);
    if (!/[A-Za-z]/.test(text) || Number.isNaN(when)) return null;
    return Math.max(0, when - (now === undefined ? Date.now() : now));
  }

  /**
   * The Server-Sent Events parser of WHATWG HTML ("Event stream interpretation"), fed text.
   *
   * Lines end in CRLF, LF or a lone CR, also when a chunk ends between CR and LF; one space
   * after the colon is dropped; `retry` counts only if all ASCII digits; an `id` holding NUL
   * is ignored; an event without data is not dispatched; an unterminated last event is
   * dropped (end() is a no-op). One field of ours, `channel` (docs/sse.md), which the spec
   * says to ignore, is kept per event like `event`.
   */
  class SSEParser {
    constructor(onEvent, onRetry, onId) {
      this.onEvent = onEvent;
      this.onRetry = onRetry || (() => {});
      this.onId = onId || (() => {});
      this.lastEventId = "";
      this._buffer = "";
      this._afterCR = false; // the last chunk ended in CR: a LF starting the next one ends no line
      this._started = false;
      this._reset();
    }

    _reset() {
      this._data = "";
      this._hasData = false;
      this._type = "";
      this._channel = "";
    }

    /** Feed decoded text; dispatch every event it completes. */
    feed(text) {
      if (!this._started) {
        this._started = true;
        if (text.charCodeAt(0) === 0xfeff) text = text.slice(1); // a leading BOM (TextDecoder drops it too)
      }
      if (this._afterCR && text[0] === "\n") text = text.slice(1);
      this._afterCR = false;
      let buffer = this._buffer + text;
      let start = 0;
      for (;;) {
        const cr = buffer.indexOf("\r", start);
        const lf = buffer.indexOf("\n", start);
        if (cr === -1 && lf === -1) break;
        let end;
        let next;
        if (cr !== -1 && (lf === -1 || cr < lf)) {
          end = cr;
          if (cr + 1 === buffer.length) {
            next = cr + 1;
            this._afterCR = true;
          } else {
            next = buffer[cr + 1] === "\n" ? cr + 2 : cr + 1;
          }
        } else {
          end = lf;
          next = lf + 1;
        }
        this._line(buffer.slice(start, end));
        start = next;
      }
      this._buffer = buffer.slice(start);
    }

    _line(line) {
      if (line === "") {
        this._dispatch();
        return;
      }
      if (line[0] === ":") return; // a comment (keepalives)
      const colon = line.indexOf(":");
      let field = line;
      let value = "";
      if (colon !== -1) {
        field = line.slice(0, colon);
        value = line.slice(colon + 1);
        if (value[0] === " ") value = value.slice(1);
      }
      switch (field) {
        case "data":
          this._data += value + "\n";
          this._hasData = true;
          break;
        case "event":
          this._type = value;
          break;
        case "id":
          if (!value.includes("\0")) {
            this.lastEventId = value;
            this.onId(value);
          }
          break;
        case "retry":
          if (/^[0-9]+$/.test(value)) this.onRetry(Number(value));
          break;
        case "channel":
          this._channel = value;
          break;
        default: // ignored, as the spec says
          break;
      }
    }

    _dispatch() {
      const hasData = this._hasData;
      const event = {
        type: this._type || "message",
        data: this._data.slice(0, -1),
        id: this.lastEventId,
        channel: this._channel,
      };
      this._reset();
      if (hasData) this.onEvent(event);
    }
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
      const text = await responseText(response);
      throw new RealtimeError("http", text || `POST ${url}: HTTP ${response.status}`, { status: response.status });
    }
    return response;
  }

  async function responseText(response) {
    return (await response.text().catch(() => "")).trim().slice(0, 500);
  }

  /** The presence/ endpoint of an SSE endpoint URL (docs/sse.md#presence), asking about `channel`. */
  function presenceUrl(sseUrl, channel) {
    const at = sseUrl.indexOf("?");
    const path = at === -1 ? sseUrl : sseUrl.slice(0, at);
    const params = new URLSearchParams(at === -1 ? "" : sseUrl.slice(at + 1));
    params.set("channel", channel);
    return (path.endsWith("/") ? path : path + "/") + "presence/?" + params;
  }

  function absoluteUrl(url, websocket) {
    const resolved = new URL(url, global.location ? global.location.href : undefined);
    if (websocket && resolved.protocol === "http:") resolved.protocol = "ws:";
    else if (websocket && resolved.protocol === "https:") resolved.protocol = "wss:";
    return resolved.href;
  }

  /** Call a page's callback; an exception is reported without breaking the connection. */
  function callSafely(func, detail) {
    if (!func) return;
    try {
      func(detail);
    } catch (error) {
      if (global.reportError) global.reportError(error);
      else
        setTimeout(() => {
          throw error;
        });
    }
  }

  function fire(target, type, detail) {
    // CustomEvent where it exists (browsers, Node 19+), else an Event that carries the detail.
    const event =
      typeof CustomEvent === "function" ? new CustomEvent(type, { detail }) : Object.assign(new Event(type), { detail });
    target.dispatchEvent(event);
  }

  /** A lastId option as a Cursor: "" (what {% realtime_cursor %} gives when it has no safe cursor) means none. */
  function cursorOption(value) {
    if (value === undefined || value === null || value === "") return null;
    try {
      return Cursor.parse(String(value));
    } catch (error) {
      const message = `lastId must be "0", an event's id or a cursor the server gave: ${error.message}`;
      throw new RealtimeError("bad_option", message);
    }
  }

  /**
   * One channel of a Realtime connection; returned by Realtime.subscribe(). An EventTarget:
   * "event", "reset" and "error" events carry the same detail as onEvent, onReset, onError.
   */
  class Subscription extends EventTarget {
    constructor(realtime, channel, options) {
      super();
      this.realtime = realtime;
      this.channel = channel;
      /** What the channel has seen, a Cursor (or null: nothing yet): where a reconnect resumes. */
      this._cursor = cursorOption(options.lastId);
      this._take(options);
      this.active = true;
      /** Whether the page asked for it (false: a Presence made it for itself). */
      this._page = true;
      /** The Presence of this channel, which gets its presence.* events whatever `events` says. */
      this._presence = null;
    }

    /** The text of the subscription's cursor, or null: what a reconnect sends the server. */
    get lastId() {
      return this._cursor === null ? null : String(this._cursor);
    }

    unsubscribe() {
      this.realtime._unsubscribe(this);
    }

    _take(options) {
      /** Event names delivered (a Set), or null for every name ("*"). */
      this.events = options.events === "*" ? null : new Set(options.events || ["message"]);
      /** "json" (the default: data is parsed, and data that is not JSON is an error) or "text". */
      this.data = options.data || "json";
      if (this.data !== "json" && this.data !== "text") {
        throw new RealtimeError("bad_option", `data must be "json" or "text", not ${JSON.stringify(this.data)}`);
      }
      this.onEvent = options.onEvent || null;
      this.onReset = options.onReset || null;
      this.onError = options.onError || null;
    }
  }

  const PRESENCE_EVENTS = new Set(["presence.join", "presence.leave"]);
  /** The SSE stream's in-band codes for a refused join (docs/sse.md#presence): the channel streams anyway. */
  const PRESENCE_REFUSALS = new Set(["presence_forbidden", "bad_presence"]);
  /** Join refusals after which asking again cannot help (the others, "unavailable", are retried on reconnect). */
  const JOIN_REFUSALS = new Set(["forbidden", "bad_message", "too_large", "presence_forbidden", "bad_presence"]);

  function isObject(value) {
    return value !== null && typeof value === "object" && !Array.isArray(value);
  }

  /**
   * Who is present on one channel (docs/presence.md); returned by Realtime.presence(). An
   * EventTarget: "join" and "leave" (a user's first connection came, their last one went),
   * "change" (any change of the list, the first list included) and "error".
   *
   * Exact by the rule of docs/presence.md#staying-exact: the list is asked for once the
   * channel's subscription is live, every presence.* event received from then on is kept, and
   * the answer's members take the kept events in order, then each new one; asked again after a
   * reset or a reconnect. No id is compared: events come in commit order, not id order, and a
   * connection's join comes before its leave, so applying one the list already shows changes nothing.
   */
  class Presence extends EventTarget {
    constructor(realtime, channel, options) {
      super();
      this.realtime = realtime;
      this.channel = channel;
      /** {connection, user} once this connection is present, else null (over SSE, user is null until the list has it). */
      this.self = null;
      /** True once the first list has been applied. */
      this.ready = false;
      this.active = true;
      this._join = options.join !== false;
      this._refused = false; // the server refused the join for good: do not ask again
      this._setIdentity(options);
      this.onJoin = options.onJoin || null;
      this.onLeave = options.onLeave || null;
      this.onChange = options.onChange || null;
      this.onError = options.onError || null;
      this._members = new Map(); // connection -> {connection, user, info}, oldest first
      this._kept = null; // presence events received while the list is asked for, else null
      this._asking = 0; // the number of the current question: a late answer to an older one is dropped
      this._attempt = 0;
      this._retry = null;
      this._sub = null;
    }

    /** The members grouped by user, oldest first: [{user, info, connections: [connection...]}]; info is the newest connection's. */
    members() {
      const users = new Map();
      for (const member of this._members.values()) {
        const group = users.get(member.user);
        if (group) {
          group.connections.push(member.connection);
          group.info = member.info;
        } else users.set(member.user, { user: member.user, info: member.info, connections: [member.connection] });
      }
      return Array.from(users.values());
    }

    /** Every present connection, oldest first: [{connection, user, info}]. */
    connections() {
      return Array.from(this._members.values(), (member) => ({ ...member }));
    }

    /** Stop being present and watching; unsubscribe if the presence made the subscription. Idempotent. */
    leave() {
      if (!this.active) return;
      this.active = false;
      this._join = false;
      clearTimeout(this._retry);
      this.realtime._endPresence(this);
      this.self = null;
      this.ready = false;
      this._members = new Map();
      this._kept = null;
    }

    /** Be present under another name or info: leave, then join again (a new connection id). */
    update(options) {
      if (!this.active) throw new RealtimeError("closed", `the presence on ${this.channel} has left`);
      const { name, info } = options || {};
      this._setIdentity({ name: name === undefined ? this._name : name, info: info === undefined ? this._info : info });
      this._refused = false;
      this.self = null;
      this.realtime._transport.presenceJoin(this, true);
      return this;
    }

    // Internals ---------------------------------------------------------

    _setIdentity({ name, info }) {
      if (name !== undefined && name !== null && typeof name !== "string") {
        throw new RealtimeError("bad_option", "name must be a string");
      }
      if (info !== undefined && info !== null && !isObject(info)) {
        throw new RealtimeError("bad_option", "info must be an object");
      }
      this._name = name === undefined || name === null ? null : name;
      this._info = info === undefined || info === null ? null : info;
    }

    /** Whether this connection should be present now. */
    get _wanted() {
      return this.active && this._join && !this._refused;
    }

    /** The subscription is live (again): this connection joins if it should, and asks who is here. */
    _live() {
      if (!this.active) return;
      this.realtime._transport.presenceJoin(this, false);
      this._ask();
    }

    /** Ask for the list; keep the presence events that come meanwhile. */
    _ask() {
      if (!this.active) return;
      clearTimeout(this._retry);
      this._asking += 1;
      if (this._kept === null) this._kept = [];
      this.realtime._transport.presenceWho(this, this._asking);
    }

    /** The transport could not get the list: report, and ask again after a backoff if that can help. */
    _unanswered(asking, error, { retry = false, retryAfter = null } = {}) {
      if (!this.active || asking !== this._asking) return;
      this._error(error);
      if (!retry) return;
      const { minDelay, maxDelay, random } = this.realtime.options;
      let delay = backoffDelay(this._attempt++, { minDelay, maxDelay, random });
      if (retryAfter !== null && retryAfter !== undefined) delay = Math.max(delay, retryAfter);
      this._retry = setTimeout(() => {
        if (this.active && asking === this._asking) this.realtime._transport.presenceWho(this, asking);
      }, delay);
    }

    /** The answer: take its members, then every kept event in order; diff with the old list after a re-sync. */
    _answered(asking, members) {
      if (!this.active || asking !== this._asking) return;
      this._attempt = 0;
      const next = new Map();
      for (const member of Array.isArray(members) ? members : []) {
        if (member && typeof member.connection === "string" && typeof member.user === "string") {
          next.set(member.connection, { connection: member.connection, user: member.user, info: member.info ?? null });
        }
      }
      for (const event of this._kept || []) applyPresence(next, event.type, event.data);
      this._kept = null;
      const first = !this.ready;
      this.ready = true;
      this._replace(next, first);
    }

    /** A presence.* event of the channel, in commit order and once (the subscription's cursor sees to that). */
    _event(type, data) {
      if (!this.active || !PRESENCE_EVENTS.has(type)) return;
      if (this._kept !== null || !this.ready) {
        (this._kept || (this._kept = [])).push({ type, data });
        return;
      }
      const next = new Map(this._members);
      applyPresence(next, type, data);
      this._replace(next, false);
    }

    /** Make `next` the list; fire join and leave for the users that came and went, then change. */
    _replace(next, first) {
      const previous = this._members;
      this._members = next;
      this._knowSelf();
      if (!first && samePresence(previous, next)) return;
      if (!first) {
        const before = byUser(previous);
        const after = byUser(next);
        for (const [user, connections] of before) {
          if (after.has(user)) continue;
          const last = connections[connections.length - 1];
          this._fire("leave", this.onLeave, { user, connection: last.connection, info: last.info });
        }
        for (const [user, connections] of after) {
          if (before.has(user)) continue;
          const firstOne = connections[0];
          this._fire("join", this.onJoin, { user, info: firstOne.info, connection: firstOne.connection });
        }
      }
      this._fire("change", this.onChange, { members: this.members() });
    }

    _joined(connection, user) {
      if (this.active) this.self = { connection, user };
      this._knowSelf();
    }

    /** Over SSE the stream is told its connection, not its user: take that from the list. */
    _knowSelf() {
      const self = this.self;
      if (self && self.user === null && self.connection !== null && this._members.has(self.connection)) {
        this.self = { connection: self.connection, user: this._members.get(self.connection).user };
      }
    }

    /** The connection that was present closed: the server has let it go. */
    _gone() {
      this.self = null;
    }

    _joinRefused(error) {
      if (!this.active) return; // refused after it left: nothing to tell
      if (JOIN_REFUSALS.has(error.code)) this._refused = true;
      this.self = null;
      this._error(error);
    }

    _error(error) {
      error.channel = this.channel;
      this._fire("error", this.onError, error);
      this.realtime._report(error);
    }

    _fire(type, callback, detail) {
      callSafely(callback, detail);
      fire(this, type, detail);
    }
  }

  /** GET *url* for an SSE transport: with the Realtime's credentials, never from a cache. */
  function get(host, url, accept, signal) {
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

  /** Apply one presence.* event to a list: a join adds (or replaces) its connection, a leave deletes it. */
  function applyPresence(members, type, data) {
    if (!data || typeof data.connection !== "string") return;
    if (type === "presence.leave") members.delete(data.connection);
    else if (type === "presence.join" && typeof data.user === "string") {
      // A new object (the old list may share the old one); an existing key keeps its place.
      members.set(data.connection, { connection: data.connection, user: data.user, info: data.info ?? null });
    }
  }

  function byUser(members) {
    const users = new Map();
    for (const member of members.values()) {
      if (!users.has(member.user)) users.set(member.user, []);
      users.get(member.user).push(member);
    }
    return users;
  }

  function samePresence(a, b) {
    if (a.size !== b.size) return false;
    for (const [connection, member] of a) {
      const other = b.get(connection);
      if (!other || other.user !== member.user || JSON.stringify(other.info) !== JSON.stringify(member.info)) return false;
    }
    return true;
  }

  // Transports ----------------------------------------------------------
  //
  // A transport carries the Realtime's active subscriptions over one connection:
  //   connect()        open a connection for the subscriptions (the Realtime decides when)
  //   sync()           the set of subscriptions changed: subscribe, unsubscribe or reopen
  //   drop()           close the connection, keeping every subscription's cursor
  //   close(code, msg) close for good: fail what waits on it
  //   connected        whether a connection is open or opening
  //   resubscribe(sub, cursor)      start the subscription again from cursor (a Cursor)
  //   presenceAdded(p)             a Presence came for a subscription: start it if that one is live
  //   presenceJoin(p, again)       make the connection present on p.channel or not, as p wants
  //                                (again: leave and join anew, with p's new name and info)
  //   presenceWho(p, asking)       ask who is present: p._answered(asking, members)
  //                                or p._unanswered(asking, error, {retry, retryAfter})
  // and reports back to the Realtime: _opened(t), _lost(t, {opened, retryAfter, atOnce}),
  // _live(t, sub) (a subscription is live: a Presence asks now), _deliver(sub, message),
  // _reset(sub, ...), _refuse(sub, error), _report(error).

  /** The WebSocket protocol of docs/websocket.md: per-channel subscriptions, ids and errors. */
  class WebSocketTransport {
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
        host._lost(this, { opened: false });
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
        for (const sub of host._subs.values()) this._sendSubscribe(sub);
        for (const [ref, request] of this.requests) {
          if (request.kind === "publish" && !request.sent) this._send(ref, request);
        }
        this._startPing();
        host._opened(this);
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
      sub._cursor = cursor;
      if (!this.open) return; // the next socket subscribes from the cursor
      // Events of the old subscription still on the way are dropped until the new one is confirmed.
      this.live.delete(sub);
      this.again.add(sub);
      this.socket.send(JSON.stringify({ type: "unsubscribe", channel: sub.channel }));
      this._sendSubscribe(sub);
    }

    presenceAdded(presence) {
      if (this.live.has(presence._sub)) presence._live();
    }

    presenceJoin(presence, again) {
      if (!this.open) return; // a closed socket left already; the next one joins once subscribed
      const channel = presence.channel;
      if (this.joined.get(channel) === presence && (again || !presence._wanted)) {
        this.joined.delete(channel);
        this._request({ kind: "leave", presence, message: { type: "leave", channel } });
      }
      // Joined only once subscribed, so that the channel's presence.* events since are all seen.
      if (presence._wanted && !this.joined.has(channel) && this.live.has(presence._sub)) {
        const message = { type: "join", channel };
        if (presence._name !== null) message.name = presence._name;
        if (presence._info !== null) message.info = presence._info;
        this.joined.set(channel, presence);
        this._request({ kind: "join", presence, message });
      }
    }

    presenceWho(presence, asking) {
      if (!this.open || !this.live.has(presence._sub)) return; // asked again once subscribed
      this._request({ kind: "who", presence, asking, message: { type: "presence", channel: presence.channel } });
    }

    /** Forget the socket: no handler of it runs after this. */
    drop() {
      for (const timer of Object.values(this._timers)) clearTimeout(timer);
      const socket = this.socket;
      this.socket = null;
      this.live.clear();
      this.again.clear();
      for (const presence of this.joined.values()) presence._gone(); // the server leaves for a closed socket
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
      this.host._lost(this, { opened, atOnce: Boolean(livedAWhile) && RECONNECT_AT_ONCE.has(code), after });
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
      if (sub._cursor !== null) message.last_id = String(sub._cursor);
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
        host._report(new RealtimeError("bad_message", "the server sent a WebSocket message that is not JSON"));
        return;
      }
      if (!msg || typeof msg !== "object") return;
      host._attempt = 0; // the server answers: the next failure starts the backoff afresh
      this._startPing();
      clearTimeout(this._timers.pong);
      const request = msg.ref !== undefined && msg.ref !== null ? this.requests.get(msg.ref) : undefined;
      if (request && msg.type !== "event" && msg.type !== "reset") this.requests.delete(msg.ref);
      switch (msg.type) {
        case "subscribed": {
          const sub = request && request.kind === "subscribe" ? request.sub : host._subs.get(msg.channel);
          if (!sub || host._subs.get(sub.channel) !== sub) break; // unsubscribed meanwhile
          // A subscription from now resumes from where the server started it, before any event.
          const start = sub._cursor === null ? cursorOrNull(msg.last_id) : null;
          if (start !== null) sub._cursor = start.cursor;
          this.live.add(sub);
          this.again.delete(sub);
          host._live(this, sub);
          break;
        }
        case "event":
        case "reset": {
          const sub = host._subs.get(msg.channel);
          if (!sub || this.again.has(sub)) break; // of the subscription before resubscribe()
          if (msg.type === "event") host._deliver(sub, { id: msg.id, event: msg.event, data: msg.data, text: false });
          else host._reset(sub, msg.reason, msg.last_id, msg.resume_id);
          break;
        }
        case "joined":
          if (request && request.kind === "join" && this.joined.get(msg.channel) === request.presence) {
            request.presence._joined(msg.connection, msg.user);
          }
          break;
        case "presence":
          if (request && request.kind === "who") request.presence._answered(request.asking, msg.members);
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
        this.host._refuse(request.sub, error);
        return;
      }
      if (request && request.kind === "join") {
        if (this.joined.get(request.presence.channel) === request.presence) this.joined.delete(request.presence.channel);
        request.presence._joinRefused(error);
        return;
      }
      if (request && request.kind === "who") {
        request.presence._unanswered(request.asking, error, { retry: msg.code === "unavailable" });
        return;
      }
      if (request && request.kind === "leave") return; // not_joined: the server had let it go already
      this.host._report(error);
    }
  }

  /**
   * Server-Sent Events over fetch(): one stream for every channel, each event naming its
   * channel (?include=channel), a refused channel reported in-band (docs/sse.md).
   */
  class SSETransport {
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
      const subs = Array.from(host._subs.values());
      if (subs.length === 0) return;
      // Every channel on one stream shares one cursor: start from what they have all seen (the
      // meet of their cursors); each subscription drops the events it has seen (Realtime._deliver).
      // A channel from now starts where the last stream got to.
      const previous = this.cursor;
      let start = null;
      for (const sub of subs) {
        if (sub._cursor === null && previous !== null) sub._cursor = previous;
        if (sub._cursor !== null) start = start === null ? sub._cursor : start.meet(sub._cursor);
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
      const subs = Array.from(this.host._subs.values());
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
      const present = [];
      for (const presence of this.host._presences.values()) {
        if (presence._wanted && this.host._subs.get(presence.channel) === presence._sub) present.push(presence);
      }
      present.sort((a, b) => (a.channel < b.channel ? -1 : a.channel > b.channel ? 1 : 0));
      const owner = Array.from(this.host._presences.values()).find((p) => present.includes(p));
      const name = owner ? owner._name : null;
      const info = owner ? owner._info : null;
      const key = JSON.stringify([present.map((p) => p.channel), name, info]);
      return { present, name, info, key };
    }

    resubscribe(sub, cursor) {
      this.drop(); // first: drop() moves each subscription to the stream's cursor
      sub._cursor = cursor;
      this.host._queueSync();
    }

    presenceAdded(presence) {
      this.host._queueSync(); // a presence to join changes the URL: the stream reopens, then asks
      if (this.opened && this.subs.has(presence._sub) && !presence._wanted) presence._live();
    }

    presenceJoin() {
      this.host._queueSync(); // joins and leaves are the stream's URL
    }

    presenceWho(presence, asking) {
      if (!this.opened || !this.subs.has(presence._sub)) return; // asked again once the stream opens
      this._who(presence, asking).catch((error) =>
        presence._unanswered(asking, new RealtimeError("internal", String(error)), { retry: true })
      );
    }

    /** GET the presence/ endpoint beside the SSE endpoint, with the stream's credentials. */
    async _who(presence, asking) {
      const host = this.host;
      const url = presenceUrl(host.options.sseUrl, presence.channel);
      let response;
      try {
        response = await get(host, url, "application/json");
      } catch (error) {
        presence._unanswered(asking, new RealtimeError("network", `GET ${url} failed: ${error.message}`), { retry: true });
        return;
      }
      if (!response.ok) {
        const text = await responseText(response);
        const status = response.status;
        const error = new RealtimeError(STOP_STATUSES.get(status) || "http", text || `HTTP ${status}`, { status, url });
        const retryAfter = parseRetryAfter(response.headers.get("retry-after"));
        presence._unanswered(asking, error, { retry: !STOP_STATUSES.has(status), retryAfter });
        return;
      }
      let body;
      try {
        body = await response.json();
      } catch (error) {
        presence._unanswered(asking, new RealtimeError("bad_message", `${url} did not answer JSON`), { retry: true });
        return;
      }
      presence._answered(asking, body.members);
    }

    subscribed() {
      this.host._queueSync();
    }

    unsubscribed() {
      this.host._queueSync();
    }

    drop() {
      const controller = this.controller;
      if (!controller) return;
      // Every channel the stream carried has seen what the stream's cursor covers.
      if (this.cursor !== null) {
        for (const sub of this.subs) {
          if (sub.active) sub._cursor = merged(sub._cursor, this.cursor);
        }
      }
      this.controller = null;
      this.channels = null;
      this.opened = false;
      for (const presence of this.present) presence._gone(); // the server leaves for a stream that ended
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
        response = await get(host, url, "text/event-stream", controller.signal);
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
      host._opened(this);
      this.opened = true;
      // The stream joined before its first byte; a header names its member on each channel.
      const own = parsePresenceHeader(response.headers.get("realtime-presence"));
      for (const presence of this.present) presence._joined(own.get(presence.channel) || null, null);
      for (const sub of this.subs) {
        if (current()) host._live(this, sub);
      }
      if (!current()) return;
      const parser = new SSEParser(
        (event) => current() && this._onEvent(event),
        (delay) => current() && (host._serverRetry = delay),
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
      if (error) this.host._report(error);
      this.host._lost(this, { opened: Boolean(info.opened), retryAfter: info.retryAfter, error });
    }

    /** The endpoint refused the request itself (400, 401, 403, 404, 204): retrying cannot help. */
    _refused(error) {
      const subs = Array.from(this.subs);
      this.drop();
      for (const sub of subs) {
        if (!sub.active) continue; // unsubscribed while the request was in flight
        this.host._refuse(sub, new RealtimeError(error.code, error.message, { status: error.status, url: error.url }), true);
      }
      this.host._report(error); // once for the page, not once per channel
      this.host._stopped(this, error);
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
          host._report(new RealtimeError("bad_message", `the SSE endpoint sent a ${event.type} that is not JSON`));
          return;
        }
        if (event.type === "reset") {
          // The stream goes on from resume_id, which may cover less than the cursor did.
          const resume = cursorOrNull(String(fields.resume_id));
          if (resume !== null) this.cursor = resume.cursor;
          for (const channel of fields.channels || []) {
            const sub = host._subs.get(channel);
            if (sub && this.subs.has(sub)) host._reset(sub, fields.reason, fields.last_event_id, fields.resume_id);
          }
          return;
        }
        const error = new RealtimeError(String(fields.code), String(fields.message));
        if (PRESENCE_REFUSALS.has(error.code)) {
          // A refused join: the channel streams all the same; the next stream does not ask again.
          const presence = host._presences.get(fields.channel);
          if (presence && this.present.includes(presence)) {
            this.present = this.present.filter((p) => p !== presence);
            presence._joinRefused(error);
            this.joinKey = this._joins().key;
          }
          return;
        }
        // A refused channel: the server streams the others, so this stream carries on without it.
        const sub = host._subs.get(fields.channel);
        if (this.channels) this.channels.delete(fields.channel);
        if (sub && this.subs.has(sub)) {
          this.subs.delete(sub);
          host._refuse(sub, error);
        }
        return;
      }
      this._advance(event.id);
      let sub;
      if (event.channel) sub = host._subs.get(event.channel);
      else if (this.subs.size === 1) sub = this.subs.values().next().value; // a stream of one channel
      else {
        if (!this._unroutable) {
          this._unroutable = true;
          host._report(
            new RealtimeError("unroutable", "the SSE endpoint does not name each event's channel (?include=channel)")
          );
        }
        return;
      }
      if (sub && this.subs.has(sub)) host._deliver(sub, { id: event.id, event: event.type, data: event.data, text: true });
    }
  }

  /**
   * Several channels over one connection: a WebSocket, or one SSE stream. Resumes from
   * the last ids after any disconnect, drops repeated events, reports resets and states.
   * An EventTarget: "state", "event", "reset", "error", "transport" and "retry" events
   * carry their detail in `event.detail`; on(type, listener) calls listener(detail).
   */
  class Realtime extends EventTarget {
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
      this._websocket = new WebSocketTransport(this);
      this._sse = new SSETransport(this);
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
      if (global.addEventListener) global.addEventListener("online", this._onOnline);
      if (this.options.pauseWhenHidden && global.document) {
        global.document.addEventListener("visibilitychange", this._onVisibility);
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
      const sub = new Subscription(this, channel, options);
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
      const presence = new Presence(this, channel, options);
      let sub = this._subs.get(channel);
      if (!sub) {
        sub = this.subscribe(channel, { events: [] });
        sub._page = false;
      }
      sub._presence = presence;
      presence._sub = sub;
      this._presences.set(channel, presence);
      if (!this._paused && this._timer === null) this._transport.presenceAdded(presence);
      return presence;
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
      if (global.removeEventListener) global.removeEventListener("online", this._onOnline);
      if (global.document) global.document.removeEventListener("visibilitychange", this._onVisibility);
      this._websocket.close("closed", "this Realtime is closed");
      this._sse.close();
      for (const sub of this._subs.values()) sub.active = false;
      this._subs.clear();
      for (const presence of this._presences.values()) presence.active = false;
      this._presences.clear();
      this._setState("closed");
    }

    // Internals ---------------------------------------------------------

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
        return global.sessionStorage || null; // throws where storage is blocked
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
      if (global.document.visibilityState === "hidden") {
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
      const moved = cursor !== null && !(sub._cursor !== null && cursor.equals(sub._cursor));
      if (moved && !this._paused && this._timer === null) this._transport.resubscribe(sub, cursor);
      else if (cursor !== null) sub._cursor = cursor;
      return sub;
    }

    /** presence.leave(): leave (over the transport), and end the subscription if the presence made it. */
    _endPresence(presence) {
      if (this._presences.get(presence.channel) !== presence) return;
      this._presences.delete(presence.channel);
      const sub = presence._sub;
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
        // Without its subscription a presence can neither see nor join: it ends, saying why.
        this._presences.delete(sub.channel);
        presence.active = false;
        clearTimeout(presence._retry);
        presence._fire("error", presence.onError, error);
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
          if (sub._cursor !== null && sub._cursor.covers(read.eventId)) return;
          sub._cursor = merged(sub._cursor, read.cursor);
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
      else sub._cursor = resume.cursor;
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

  // WebRTC signalling -----------------------------------------------------
  //
  // realtime.peer(channel, options) gives a Peer: one RTCPeerConnection to ONE other page,
  // whose offers, answers, ICE candidates and hang-up travel as events of `channel`, a pair
  // channel only the two users may read and publish to (docs/webrtc.md). Negotiation follows
  // "perfect negotiation" (MDN, "Establishing a connection: the WebRTC perfect negotiation
  // pattern"): either side may offer at any time, and on a collision the polite peer yields.
  // Media and data go peer to peer; the channel carries signalling only. Kept in a section
  // of its own, with the Realtime method at its end, so that it reads (and merges) as one part.

  /** The events a Peer publishes and reads on its channel. */
  const SIGNAL_EVENTS = ["webrtc.hello", "webrtc.description", "webrtc.candidate", "webrtc.bye"];
  /** Error codes after which a Peer publishes the same signal again, after a backoff. */
  const SIGNAL_RETRY = new Set(["rate_limited", "unavailable"]);
  const SIGNAL_ATTEMPTS = 6;

  /**
   * The pair channel of two users, as django_realtime.auth.pair_channel() names it:
   * `<prefix>:<low>-<high>`, integer keys in numeric order, others as text.
   */
  function pairChannel(prefix, a, b) {
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
    global.crypto.getRandomValues(bytes);
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
  class Peer extends EventTarget {
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
        RTCPeerConnection: global.RTCPeerConnection,
        fetch: global.fetch ? (...args) => global.fetch(...args) : undefined,
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
      const devices = global.navigator && global.navigator.mediaDevices;
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
      let response;
      try {
        response = await this.options.fetch(url, {
          method: "POST",
          credentials: options.credentials,
          headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken(options.csrfCookieName) },
          body: JSON.stringify({ type: "publish", channel: this.channel, event: type, data }),
        });
      } catch (error) {
        throw new RealtimeError("network", `POST ${url} failed: ${error.message}`);
      }
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

  // The one method the section adds to Realtime (a method like the others: not enumerable).
  Object.defineProperty(Realtime.prototype, "peer", {
    /**
     * Start a WebRTC connection to the one other page on `channel` (a pair channel); return a Peer.
     * options: { iceServers, configuration, polite, stream, dataChannel, publishUrl, onOpen, onMessage,
     * onTrack, onState, onClose, onError } (docs/webrtc.md).
     */
    value: function peer(channel, options) {
      if (this._closed) throw new RealtimeError("closed", "this Realtime is closed");
      return new Peer(this, channel, options);
    },
    writable: true,
    configurable: true,
  });

  const api = Object.freeze({
    Realtime,
    RealtimeError,
    Subscription,
    Presence,
    SSEParser,
    WebSocketTransport,
    SSETransport,
    compareIds,
    Cursor,
    backoffDelay,
    parseRetryAfter,
    csrfToken,
    post,
    Peer,
    pairChannel,
    VERSION,
  });
  Object.defineProperty(global, API_KEY, { value: api, configurable: true });
  publishGlobal(api);

  /** Set window.DjangoRealtime for a classic script, unless something else holds that name. */
  function publishGlobal(value) {
    if (!AS_SCRIPT) return;
    const existing = global.DjangoRealtime;
    if (existing === undefined) {
      global.DjangoRealtime = value;
    } else if (existing !== value && global.console) {
      global.console.warn(
        "realtime.js: window.DjangoRealtime is taken by another script and was left alone; " +
          'import realtime.mjs, or read globalThis[Symbol.for("django-realtime")]'
      );
    }
  }
})(globalThis);
