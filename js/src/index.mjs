// The client's public API: what realtime.js publishes (scripts/build_js.py reads this list, in
// this order) and what realtime.mjs re-exports. The parts:
//   ids.mjs           Cursor: event ids read as django_realtime/cursor.py reads them (commit order)
//   parser.mjs        SSEParser: the pure WHATWG "Server-sent events" parser, no I/O
//   retry.mjs         the retry policy: backoffDelay, parseRetryAfter, the statuses that stop it
//   http.mjs          csrfToken and the one POST helper (post(), and a Peer's publish over SSE)
//   websocket.mjs     WebSocketTransport, sse.mjs SSETransport: one class per transport, each
//                     seeing only the host of callbacks its Realtime hands it
//   subscription.mjs  Subscription, presence.mjs Presence (who is here, kept exact)
//   client.mjs        Realtime: routes events, decides when and how to reconnect
//   peer.mjs          Peer: WebRTC signalling over a pair channel, through Realtime's public API
//   errors.mjs        RealtimeError; options.mjs the defaults and the <script> tag's data-*
export { Realtime } from "./client.mjs";
export { RealtimeError } from "./errors.mjs";
export { Subscription } from "./subscription.mjs";
export { Presence } from "./presence.mjs";
export { SSEParser } from "./parser.mjs";
export { WebSocketTransport } from "./websocket.mjs";
export { SSETransport } from "./sse.mjs";
export { compareIds, Cursor } from "./ids.mjs";
export { backoffDelay, parseRetryAfter } from "./retry.mjs";
export { csrfToken, post } from "./http.mjs";
export { Peer, pairChannel } from "./peer.mjs";
export { VERSION } from "./options.mjs";
