// django-realtime browser client as an ES module: the same code as realtime.js (docs/client.md).
//
//   import { Realtime } from "/static/django_realtime/realtime.mjs";
//
// realtime.js is evaluated once and keeps its API under Symbol.for("django-realtime") on
// globalThis, a key no page uses for anything else; imported this way it sets no
// window.DjangoRealtime. This module re-exports it, so that a page loading both gets one API
// (realtime.js is generated from the ES modules in js/src/ by scripts/build_js.py).
import "./realtime.js";

const api = globalThis[Symbol.for("django-realtime")];

export const {
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
} = api;
export default Realtime;
