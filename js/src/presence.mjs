// Who is present on a channel, kept exact over either transport (docs/presence.md).

import { RealtimeError, callSafely, fire } from "./errors.mjs";
import { backoffDelay } from "./retry.mjs";

export const PRESENCE_EVENTS = new Set(["presence.join", "presence.leave"]);
/** The SSE stream's in-band codes for a refused join (docs/sse.md#presence): the channel streams anyway. */
export const PRESENCE_REFUSALS = new Set(["presence_forbidden", "bad_presence"]);
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
export class Presence extends EventTarget {
  /**
   * Made by Realtime.presence(), which hands it `link`, what it may ask of the Realtime:
   * join(presence, again) and who(presence, asking) over the transport in use, end(presence)
   * once it leaves, report(error) to the Realtime's "error" listeners.
   */
  constructor(realtime, channel, options, link) {
    super();
    this.realtime = realtime;
    this._link = link;
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
    /** The Subscription it watches the channel through (the page's, or one of its own). */
    this.subscription = null;
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
    this._link.end(this);
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
    this._link.join(this, true);
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
    this._link.join(this, false);
    this._ask();
  }

  /** Ask for the list; keep the presence events that come meanwhile. */
  _ask() {
    if (!this.active) return;
    clearTimeout(this._retry);
    this._asking += 1;
    if (this._kept === null) this._kept = [];
    this._link.who(this, this._asking);
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
      if (this.active && asking === this._asking) this._link.who(this, asking);
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

  /** Its subscription was refused: without one a presence can neither see nor join; it ends, saying why. */
  _refused(error) {
    this.active = false;
    clearTimeout(this._retry);
    this._fire("error", this.onError, error);
  }

  _error(error) {
    error.channel = this.channel;
    this._fire("error", this.onError, error);
    this._link.report(error);
  }

  _fire(type, callback, detail) {
    callSafely(callback, detail);
    fire(this, type, detail);
  }
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
