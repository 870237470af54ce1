// The npm `eventsource` package's EventSource on the URL given, for tests/test_commit_order_clients.py.
//
// It prints one JSON line for each thing the client does: each open, error and message (with the event's
// id, the cursor text); the test reads the Last-Event-ID the package sends on a reconnect at its proxy.
// Closing stdin closes the client.
import { EventSource } from "eventsource";

const print = (record) => process.stdout.write(`${JSON.stringify(record)}\n`);

const source = new EventSource(process.argv[2]);
source.onopen = () => print({ type: "open" });
source.onerror = (event) => print({ type: "error", message: event.message ?? null, readyState: source.readyState });
source.onmessage = (event) => print({ type: "message", id: event.lastEventId, data: event.data });
source.addEventListener("reset", (event) => print({ type: "reset", id: event.lastEventId, data: event.data }));

process.stdin.resume();
process.stdin.on("end", () => {
  source.close();
  process.exit(0);
});
