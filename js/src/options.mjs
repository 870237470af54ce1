// What a Realtime is configured with: the defaults, and what the including <script> tag says.

export const VERSION = "0.1.0";

/** The channel name rules of django_realtime.names. */
export const CHANNEL_PATTERN = /^[A-Za-z0-9_\-.:@/=+]{1,200}$/;

const TRANSPORTS = ["websocket", "sse"];

export const DEFAULTS = {
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
  WebSocket: globalThis.WebSocket,
  fetch: globalThis.fetch ? (...args) => globalThis.fetch(...args) : undefined,
  storage: undefined, // sessionStorage, looked up when first needed (it may throw)
  random: Math.random,
};

/** Defaults given by the including <script> tag ({% realtime_script %} writes them). */
export const SCRIPT_DEFAULTS = (function () {
  const script = globalThis.document ? globalThis.document.currentScript : null;
  const data = (script && script.dataset) || {};
  const found = {};
  if (data.wsUrl) found.wsUrl = data.wsUrl;
  if (data.sseUrl) found.sseUrl = data.sseUrl;
  if (data.csrfCookie) found.csrfCookieName = data.csrfCookie;
  if (data.transports) found.transports = data.transports.split(/[\s,]+/).filter(Boolean);
  return found;
})();
