// Fakes for the client's Node tests: a fetch() whose responses a test writes, and a WebSocket.

/** A fetch() that records each request; `await fetch.next()` gives the next one to answer. */
export function fakeFetch() {
  const waiting = [];
  const calls = [];
  let wake = null;
  async function fetch(url, init = {}) {
    const call = new Call(String(url), init);
    calls.push(call);
    waiting.push(call);
    if (wake) wake();
    return call.response;
  }
  fetch.calls = calls;
  fetch.next = async function (timeout = 2000) {
    const deadline = Date.now() + timeout;
    while (waiting.length === 0) {
      if (Date.now() > deadline) throw new Error(`no request within ${timeout} ms (made: ${calls.length})`);
      await new Promise((resolve) => {
        wake = resolve;
        setTimeout(resolve, 10);
      });
      wake = null;
    }
    return waiting.shift();
  };
  return fetch;
}

class Call {
  constructor(url, init) {
    this.url = url;
    this.init = init;
    this.query = new URL(url, "http://testserver").searchParams;
    this.response = new Promise((resolve, reject) => {
      this._resolve = resolve;
      this._reject = reject;
    });
    this.aborted = false;
    if (init.signal) init.signal.addEventListener("abort", () => (this.aborted = true));
  }

  /** Answer with a status and a text body (not a stream). */
  answer(status, body = "", headers = {}) {
    this._resolve(new Response(status === 204 ? null : body, { status, headers }));
  }

  /** Fail as a network error does. */
  fail(message = "Failed to fetch") {
    this._reject(new TypeError(message));
  }

  /** Answer 200 text/event-stream; return a handle to send text, end or break the stream. */
  open(headers = {}) {
    let controller;
    const encoder = new TextEncoder();
    const body = new ReadableStream({ start: (c) => (controller = c) });
    const signal = this.init.signal;
    if (signal) {
      signal.addEventListener("abort", () => {
        try {
          controller.error(new DOMException("aborted", "AbortError"));
        } catch (error) {
          // already closed
        }
      });
    }
    this._resolve(
      new Response(body, { status: 200, headers: { "Content-Type": "text/event-stream; charset=utf-8", ...headers } })
    );
    return {
      send: (text) => controller.enqueue(encoder.encode(text)),
      end: () => controller.close(),
      break: () => controller.error(new TypeError("network error")),
    };
  }
}

/** A WebSocket whose opening, messages and close the test drives. */
export class FakeSocket {
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    FakeSocket.all.push(this);
  }
  send(text) {
    this.sent.push(JSON.parse(text));
  }
  close() {
    this.readyState = 3;
  }
  open() {
    this.readyState = 1;
    this.onopen();
  }
  receive(message) {
    this.onmessage({ data: JSON.stringify(message) });
  }
  drop(code, reason = "") {
    this.readyState = 3;
    this.onclose({ code, reason });
  }
}
FakeSocket.all = [];

/** A WebSocket that never opens: it closes at once, as a 404 on the handshake does. */
export class FailingSocket {
  constructor(url) {
    FailingSocket.count += 1;
    setTimeout(() => this.onclose && this.onclose({ code: 1006 }), 0);
  }
  close() {}
}
FailingSocket.count = 0;

/** A sessionStorage. */
export function memoryStorage() {
  const items = new Map();
  return {
    getItem: (key) => (items.has(key) ? items.get(key) : null),
    setItem: (key, value) => items.set(key, String(value)),
    items,
  };
}

export const wait = (ms = 0) => new Promise((resolve) => setTimeout(resolve, ms));

/** Wait until `condition()` is true, or fail after `timeout` ms. */
export async function until(condition, timeout = 2000) {
  const deadline = Date.now() + timeout;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`not true within ${timeout} ms: ${condition}`);
    await wait(5);
  }
}
