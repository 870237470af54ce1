// TypeScript declarations of the public API of realtime.js and realtime.mjs (docs/client.md).
// Written by hand beside the ES modules of js/src/; tests/test_typescript.py checks them with
// `tsc --noEmit` against tests/js/typescript/usage.ts, and that they name every export.

/** The client's version. */
export const VERSION: string;

/** A state of the connection: docs/client.md, "States and events". */
export type State = "connecting" | "live" | "reconnecting" | "paused" | "failed" | "closed";
export type TransportName = "websocket" | "sse";

/** An error of this library; `code` is a stable string to match on. */
export class RealtimeError extends Error {
  constructor(code: string, message: string, details?: Record<string, unknown>);
  readonly name: "RealtimeError";
  readonly code: string;
  /** The channel, for an error of a subscription or a presence. */
  channel?: string;
  /** The HTTP status, for an error an HTTP answer caused. */
  status?: number;
  url?: string;
  [detail: string]: unknown;
}

/** A position in the log: every id up to `top` but the `pending` runs (docs/client.md, "Ids"). */
export class Cursor {
  constructor(top: bigint | number | string, pending?: Iterable<readonly [bigint | number | string, bigint | number | string]>);
  static readonly MAX_RUNS: number;
  /** Parse a cursor's text (an integer id too); throw a RealtimeError "bad_cursor" for anything else. */
  static parse(text: string): Cursor;
  /** The id of the event whose cursor `text` is, as a decimal string. */
  static eventId(text: string): string;
  readonly top: bigint;
  readonly pending: ReadonlyArray<readonly [bigint, bigint]>;
  toString(): string;
  equals(other: unknown): boolean;
  covers(id: bigint | string): boolean;
  dominates(other: Cursor): boolean;
  merge(other: Cursor): Cursor;
  meet(other: Cursor): Cursor;
}

/** Compare two integer ids given as decimal strings: negative, zero or positive. */
export function compareIds(a: string | number | bigint, b: string | number | bigint): number;

export interface BackoffOptions {
  minDelay?: number;
  maxDelay?: number;
  random?: () => number;
}
/** The delay before reconnection attempt `attempt` (0 first), in ms: exponential, with equal jitter. */
export function backoffDelay(attempt: number, options?: BackoffOptions): number;
/** A Retry-After header in milliseconds from `now`, or null if absent or malformed. */
export function parseRetryAfter(value: string | null | undefined, now?: number): number | null;

/** Django's CSRF token, from its cookie or a {% csrf_token %} field on the page. */
export function csrfToken(cookieName?: string): string;
export interface PostOptions {
  csrfCookieName?: string;
  headers?: Record<string, string>;
}
/** POST `fields` to a view of your own with Django's CSRF token; reject with a RealtimeError unless 2xx. */
export function post(
  url: string | URL,
  fields?: Record<string, string> | URLSearchParams | FormData,
  options?: PostOptions
): Promise<Response>;

/** One event of an event stream, as the parser dispatches it. */
export interface ParsedEvent {
  type: string;
  data: string;
  id: string;
  channel: string;
}
/** The WHATWG "Server-sent events" parser, fed decoded text. */
export class SSEParser {
  constructor(onEvent: (event: ParsedEvent) => void, onRetry?: (delay: number) => void, onId?: (id: string) => void);
  lastEventId: string;
  feed(text: string): void;
}

/** The two transports: internal to a Realtime, exported for tests; they take a host of its callbacks. */
export class WebSocketTransport {
  private constructor();
  readonly name: "websocket";
  readonly connected: boolean;
}
export class SSETransport {
  private constructor();
  readonly name: "sse";
  readonly connected: boolean;
}

export interface RealtimeOptions {
  transport?: "auto" | TransportName;
  transports?: TransportName[];
  wsUrl?: string;
  sseUrl?: string;
  csrfCookieName?: string;
  credentials?: RequestCredentials;
  minDelay?: number;
  maxDelay?: number;
  fallbackAfter?: number;
  rememberFallback?: boolean;
  connectTimeout?: number;
  pingInterval?: number;
  pongTimeout?: number;
  publishTimeout?: number;
  pauseWhenHidden?: boolean;
  WebSocket?: typeof WebSocket;
  fetch?: typeof fetch;
  storage?: Pick<Storage, "getItem" | "setItem"> | null;
  random?: () => number;
}

/** An event delivered to a subscription: `data` is parsed JSON, or the text with `data: "text"`. */
export interface RealtimeEvent<T = unknown> {
  channel: string;
  /** The event's id: a cursor's text, opaque to a page. */
  id: string;
  event: string;
  data: T;
}
export interface ResetDetail {
  channel: string;
  reason: string;
  lastId: string | null;
  resumeId: string;
}
export interface StateDetail {
  state: State;
  previous: State;
  transport: TransportName;
  error?: RealtimeError;
}
export interface TransportDetail {
  transport: "sse";
  reason: string;
}
export interface RetryDetail {
  attempt: number;
  delay: number;
  transport: TransportName;
  error: RealtimeError | null;
}
export interface RealtimeEvents {
  state: StateDetail;
  event: RealtimeEvent;
  reset: ResetDetail;
  error: RealtimeError;
  transport: TransportDetail;
  retry: RetryDetail;
}

export interface SubscribeOptions<T = unknown> {
  onEvent?: (event: RealtimeEvent<T>) => void;
  onReset?: (reset: ResetDetail) => void;
  onError?: (error: RealtimeError) => void;
  events?: string[] | "*";
  data?: "json" | "text";
  /** "0" for every stored event, an event's id or a cursor to resume after it, null for from now. */
  lastId?: string | null;
}

/** One channel of a Realtime; an EventTarget of "event", "reset" and "error" (CustomEvents). */
export class Subscription<T = unknown> extends EventTarget {
  private constructor();
  readonly realtime: Realtime;
  readonly channel: string;
  /** False once unsubscribed, refused, or its Realtime closed. */
  readonly active: boolean;
  /** Where a reconnect resumes: what the channel has seen, or null. */
  readonly cursor: Cursor | null;
  /** The text of `cursor`, or null. */
  readonly lastId: string | null;
  readonly events: Set<string> | null;
  readonly data: "json" | "text";
  onEvent: ((event: RealtimeEvent<T>) => void) | null;
  onReset: ((reset: ResetDetail) => void) | null;
  onError: ((error: RealtimeError) => void) | null;
  unsubscribe(): void;
}

export interface Member {
  connection: string;
  user: string;
  info: Record<string, unknown> | null;
}
export interface UserMembers {
  user: string;
  info: Record<string, unknown> | null;
  connections: string[];
}
export interface PresenceOptions {
  join?: boolean;
  name?: string | null;
  info?: Record<string, unknown> | null;
  onJoin?: (detail: Member) => void;
  onLeave?: (detail: Member) => void;
  onChange?: (detail: { members: UserMembers[] }) => void;
  onError?: (error: RealtimeError) => void;
}
/** Who is present on a channel, kept exact; an EventTarget of "join", "leave", "change" and "error". */
export class Presence extends EventTarget {
  private constructor();
  readonly realtime: Realtime;
  readonly channel: string;
  /** This connection once present: over SSE `user` is null until the list has it. */
  readonly self: { connection: string | null; user: string | null } | null;
  /** True once the first list has been applied. */
  readonly ready: boolean;
  readonly active: boolean;
  /** The Subscription it watches the channel through. */
  readonly subscription: Subscription | null;
  onJoin: ((detail: Member) => void) | null;
  onLeave: ((detail: Member) => void) | null;
  onChange: ((detail: { members: UserMembers[] }) => void) | null;
  onError: ((error: RealtimeError) => void) | null;
  /** The members grouped by user, oldest first. */
  members(): UserMembers[];
  /** Every present connection, oldest first. */
  connections(): Member[];
  leave(): void;
  update(options: { name?: string | null; info?: Record<string, unknown> | null }): this;
}

export type PeerState = "waiting" | "connecting" | "connected" | "disconnected" | "failed" | "closed";
export interface PeerOptions {
  iceServers?: RTCIceServer[];
  configuration?: RTCConfiguration;
  polite?: boolean;
  stream?: MediaStream;
  /** The label of the negotiated data channel; null for none. */
  dataChannel?: string | null;
  publishUrl?: string | null;
  helloInterval?: number;
  info?: Record<string, unknown> | null;
  id?: string;
  RTCPeerConnection?: typeof RTCPeerConnection;
  fetch?: typeof fetch;
  onOpen?: (detail: { peer: Peer; channel: RTCDataChannel }) => void;
  onMessage?: (detail: { data: unknown; peer: Peer }) => void;
  onTrack?: (detail: { track: MediaStreamTrack; streams: readonly MediaStream[]; peer: Peer }) => void;
  onState?: (detail: { state: PeerState; previous: PeerState; peer: Peer }) => void;
  onClose?: (detail: { reason: "hangup" | "refused" | "closed"; by: "local" | "remote" | "server"; peer: Peer }) => void;
  onError?: (error: Error) => void;
}
/** A WebRTC connection to one other page, signalled over a pair channel (docs/webrtc.md). */
export class Peer extends EventTarget {
  private constructor();
  readonly realtime: Realtime;
  readonly channel: string;
  readonly id: string;
  readonly remoteId: string | null;
  readonly polite: boolean | null;
  readonly connection: RTCPeerConnection | null;
  readonly dataChannel: RTCDataChannel | null;
  readonly state: PeerState;
  send(data: string | Blob | ArrayBuffer | ArrayBufferView): void;
  addStream(stream: MediaStream): void;
  addMedia(constraints?: MediaStreamConstraints): Promise<MediaStream>;
  hangup(): Promise<void>;
}
/** The pair channel of two users, as django_realtime.auth.pair_channel() names it. */
export function pairChannel(prefix: string, a: string | number, b: string | number): string;

/** Several channels over one connection: a WebSocket, or one SSE stream (docs/client.md). */
export class Realtime extends EventTarget {
  constructor(options?: RealtimeOptions);
  readonly options: Readonly<Required<Omit<RealtimeOptions, "storage">>> & Pick<RealtimeOptions, "storage">;
  readonly state: State;
  readonly transport: TransportName;
  /** Call `listener(detail)` on events of `type`; return a function that stops it. */
  on<K extends keyof RealtimeEvents>(type: K, listener: (detail: RealtimeEvents[K]) => void): () => void;
  off<K extends keyof RealtimeEvents>(type: K, listener: (detail: RealtimeEvents[K]) => void): void;
  subscribe<T = unknown>(channel: string, options?: SubscribeOptions<T> | ((event: RealtimeEvent<T>) => void)): Subscription<T>;
  presence(channel: string, options?: PresenceOptions): Presence;
  peer(channel: string, options?: PeerOptions): Peer;
  lastId(channel: string): string | null;
  publish(channel: string, data: unknown, options?: { event?: string; timeout?: number }): Promise<{ id: string; channel: string }>;
  close(): void;
}

export default Realtime;
