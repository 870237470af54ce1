// django-realtime browser client as an ES module: the same code as realtime.js (docs/client.md).
//
//   import { Realtime } from "/static/django_realtime/realtime.mjs";
//
// realtime.js is evaluated once and publishes its API on globalThis.DjangoRealtime; this
// module re-exports it, so there is one source and no build step.
import "./realtime.js";

const api = globalThis.DjangoRealtime;

export const { Realtime, RealtimeError, Subscription, compareIds, backoffDelay, csrfToken, post, VERSION } = api;
export default Realtime;
