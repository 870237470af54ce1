// One channel of a Realtime connection.

import { RealtimeError } from "./errors.mjs";
import { cursorOption } from "./ids.mjs";

/**
 * One channel of a Realtime connection; returned by Realtime.subscribe(). An EventTarget:
 * "event", "reset" and "error" events carry the same detail as onEvent, onReset, onError.
 */
export class Subscription extends EventTarget {
  /** Made by Realtime.subscribe(), which hands it `link`: unsubscribe(sub) ends it there. */
  constructor(realtime, channel, options, link) {
    super();
    this.realtime = realtime;
    this._link = link;
    this.channel = channel;
    /** What the channel has seen, a Cursor (or null: nothing yet): where a reconnect resumes. */
    this.cursor = cursorOption(options.lastId);
    this._take(options);
    this.active = true;
    /** Whether the page asked for it (false: a Presence made it for itself). */
    this._page = true;
    /** The Presence of this channel, which gets its presence.* events whatever `events` says. */
    this._presence = null;
  }

  /** The text of the subscription's cursor, or null: what a reconnect sends the server. */
  get lastId() {
    return this.cursor === null ? null : String(this.cursor);
  }

  unsubscribe() {
    this._link.unsubscribe(this);
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
