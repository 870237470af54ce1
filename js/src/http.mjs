// HTTP helpers: Django's CSRF token, the one POST helper, URLs.

import { RealtimeError } from "./errors.mjs";
import { DEFAULTS, SCRIPT_DEFAULTS } from "./options.mjs";

/** Read Django's CSRF token: from its cookie, else from a {% csrf_token %} field on the page. */
export function csrfToken(cookieName) {
  const name = (cookieName || SCRIPT_DEFAULTS.csrfCookieName || DEFAULTS.csrfCookieName) + "=";
  const doc = globalThis.document;
  if (!doc) return "";
  for (const part of doc.cookie ? doc.cookie.split(";") : []) {
    const item = part.trim();
    if (item.startsWith(name)) return decodeURIComponent(item.slice(name.length));
  }
  const field = doc.querySelector("input[name=csrfmiddlewaretoken]");
  return field ? field.value : "";
}

/**
 * The client's one POST: `body` to `url` with Django's CSRF token (X-CSRFToken); resolve to the
 * Response, whatever its status; a request that got no answer rejects with RealtimeError
 * "network". `options`: { fetch, credentials ("same-origin"), csrfCookieName, headers }.
 * post() and a Peer's publish over SSE build on it.
 */
export async function postRequest(url, body, options) {
  const { fetch = (...args) => globalThis.fetch(...args), credentials = "same-origin", csrfCookieName, headers } =
    options || {};
  try {
    return await fetch(url, {
      method: "POST",
      body,
      credentials,
      headers: { "X-CSRFToken": csrfToken(csrfCookieName), ...(headers || {}) },
    });
  } catch (error) {
    throw new RealtimeError("network", `POST ${url} failed: ${error.message}`);
  }
}

/**
 * POST `fields` (an object, URLSearchParams or FormData) to a view of your own with
 * Django's CSRF token; resolve to the Response, reject with a RealtimeError unless 2xx.
 */
export async function post(url, fields, options) {
  const { csrfCookieName, headers } = options || {};
  const body =
    fields instanceof FormData || fields instanceof URLSearchParams ? fields : new URLSearchParams(fields || {});
  const response = await postRequest(url, body, { csrfCookieName, headers });
  if (!response.ok) {
    const text = await responseText(response);
    throw new RealtimeError("http", text || `POST ${url}: HTTP ${response.status}`, { status: response.status });
  }
  return response;
}

export async function responseText(response) {
  return (await response.text().catch(() => "")).trim().slice(0, 500);
}

export function absoluteUrl(url, websocket) {
  const resolved = new URL(url, globalThis.location ? globalThis.location.href : undefined);
  if (websocket && resolved.protocol === "http:") resolved.protocol = "ws:";
  else if (websocket && resolved.protocol === "https:") resolved.protocol = "wss:";
  return resolved.href;
}
