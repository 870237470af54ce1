// The public API of the client, in the order the generated realtime.js publishes it (scripts/build_js.py).
export { Realtime, RealtimeError, Subscription, Presence, WebSocketTransport, SSETransport, compareIds, Cursor, backoffDelay, parseRetryAfter, csrfToken, post, Peer, pairChannel, VERSION } from "./client.mjs";
export { SSEParser } from "./parser.mjs";
