// A page's use of the client, typed: tsc --noEmit (tests/test_typescript.py) checks js/realtime.d.ts
// against it. Each @ts-expect-error is a misuse the declarations must refuse: a declaration that
// grew too loose (an `any`, a missing overload) makes its line an error of its own.
import Realtime, {
  Cursor,
  Peer,
  Presence,
  RealtimeError,
  SSEParser,
  Subscription,
  VERSION,
  backoffDelay,
  compareIds,
  csrfToken,
  pairChannel,
  parseRetryAfter,
  post,
  type RealtimeEvent,
  type State,
} from "django-realtime-log";

interface Message {
  text: string;
}

const realtime = new Realtime({ transport: "auto", sseUrl: "/events/", pauseWhenHidden: true });
const state: State = realtime.state;
const transport: "websocket" | "sse" = realtime.transport;
const stop: () => void = realtime.on("state", ({ state, previous, transport }) => console.log(state, previous, transport));
stop();
realtime.on("retry", ({ attempt, delay, error }) => console.log(attempt, delay, error && error.code));
realtime.on("error", (error: RealtimeError) => console.log(error.code, error.channel));
realtime.on("event", (event: RealtimeEvent) => console.log(event.channel, event.id));

const sub: Subscription<Message> = realtime.subscribe<Message>("chat", {
  events: ["message", "edit"],
  lastId: "0",
  onEvent: (event) => console.log(event.data.text.toUpperCase(), event.id),
  onReset: ({ reason, resumeId }) => console.log(reason, resumeId),
  onError: (error) => console.log(error.code),
});
const resumeFrom: string | null = sub.lastId;
const cursor: Cursor | null = sub.cursor;
sub.addEventListener("event", (e) => console.log((e as CustomEvent<RealtimeEvent<Message>>).detail.data.text));
sub.unsubscribe();
realtime.subscribe("ticker", (event) => console.log(event.data));

const presence: Presence = realtime.presence("room", { name: "ada", info: { colour: "red" }, onJoin: ({ user }) => user });
for (const { user, connections } of presence.members()) console.log(user, connections.length);
presence.update({ name: "ada lovelace" }).leave();

realtime.publish("chat", { text: "hi" }, { event: "message", timeout: 5000 }).then(({ id, channel }) => [id, channel]);
const peer: Peer = realtime.peer(pairChannel("call", 1, 2), { onMessage: ({ data }) => console.log(data), dataChannel: "chat" });
peer.hangup().then(() => peer.state);
post("/notes/", { text: "hello" }, { csrfCookieName: "csrftoken" }).then((response: Response) => response.status);
console.log(csrfToken(), compareIds("10", "9"), backoffDelay(2, { minDelay: 100 }), parseRetryAfter("3"), VERSION);
console.log(Cursor.parse("4180~4171").covers("4171"), Cursor.eventId("11@12"));
new SSEParser((event) => console.log(event.type, event.data, event.channel)).feed("data: 1\n\n");
realtime.close();
console.log(state, transport, resumeFrom, cursor);

// Misuse the declarations refuse.
// @ts-expect-error: no such transport
new Realtime({ transport: "carrier-pigeon" });
// @ts-expect-error: a channel is a string
realtime.subscribe(42);
// @ts-expect-error: data is "json" or "text"
realtime.subscribe("chat", { data: "xml" });
// @ts-expect-error: no such event on a Realtime
realtime.on("message", () => undefined);
// @ts-expect-error: the state detail has no data
realtime.on("state", (detail) => detail.data);
// @ts-expect-error: events are a list of names or "*"
realtime.subscribe("chat", { events: "message" });
// @ts-expect-error: a subscription's channel cannot be reassigned
sub.channel = "other";
// @ts-expect-error: publish resolves to {id, channel}, not a Response
realtime.publish("chat", null).then((ack) => ack.status);
// @ts-expect-error: a Subscription is made by subscribe(), not by a page
new Subscription();
// @ts-expect-error: presence info is an object
realtime.presence("room", { info: "red" });
// @ts-expect-error: parseRetryAfter answers a number of milliseconds or null
const delay: number = parseRetryAfter("3");
console.log(delay);
