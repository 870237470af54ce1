// The retry policy: backoff with jitter, Retry-After, and the statuses after which retrying cannot help.

import { DEFAULTS } from "./options.mjs";

/**
 * HTTP statuses after which retrying cannot help: the request itself is refused. Stop
 * and report, as EventSource does after any non-200 (and as fetch-event-source's docs
 * advise); other statuses (5xx, 408, 429) are retried with backoff and Retry-After.
 */
export const STOP_STATUSES = new Map([
  [204, "no_content"], // WHATWG HTML: "204 No Content ... prevent the user agent from reconnecting"
  [400, "bad_request"],
  [401, "unauthorized"],
  [403, "forbidden"],
  [404, "not_found"],
]);

/**
 * The delay before reconnection attempt number `attempt` (0 for the first): exponential
 * backoff with "equal jitter", between half and all of min(maxDelay, minDelay * 2^attempt).
 */
export function backoffDelay(attempt, options) {
  const { minDelay = DEFAULTS.minDelay, maxDelay = DEFAULTS.maxDelay, random = Math.random } = options || {};
  const ceiling = Math.min(maxDelay, minDelay * Math.pow(2, Math.min(attempt, 30)));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

/**
 * Parse a Retry-After header (RFC 9110 §10.2.3): delay-seconds or an HTTP-date.
 * Return milliseconds from `now`, or null if absent or malformed.
 */
export function parseRetryAfter(value, now) {
  if (value === null || value === undefined) return null;
  const text = String(value).trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const when = Date.parse(text);
  if (!/[A-Za-z]/.test(text) || Number.isNaN(when)) return null;
  return Math.max(0, when - (now === undefined ? Date.now() : now));
}
