// The library's error, and how a page's callbacks and listeners are called.

/** An error of this library; `code` is a stable string to match on. */
export class RealtimeError extends Error {
  constructor(code, message, details) {
    super(message);
    this.name = "RealtimeError";
    this.code = code;
    Object.assign(this, details || {});
  }
}

/** Call a page's callback; an exception is reported without breaking the connection. */
export function callSafely(func, detail) {
  if (!func) return;
  try {
    func(detail);
  } catch (error) {
    if (globalThis.reportError) globalThis.reportError(error);
    else
      setTimeout(() => {
        throw error;
      });
  }
}

export function fire(target, type, detail) {
  // CustomEvent where it exists (browsers, Node 19+), else an Event that carries the detail.
  const event =
    typeof CustomEvent === "function" ? new CustomEvent(type, { detail }) : Object.assign(new Event(type), { detail });
  target.dispatchEvent(event);
}
