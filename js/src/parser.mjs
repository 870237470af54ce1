// The pure Server-Sent Events parser: text in, events out, no I/O (as @microsoft/fetch-event-source
// keeps src/parse.ts apart from src/fetch.ts). SSETransport feeds it the decoded body of a fetch().

/**
 * The Server-Sent Events parser of WHATWG HTML ("Event stream interpretation"), fed text.
 *
 * Lines end in CRLF, LF or a lone CR, also when a chunk ends between CR and LF; one space
 * after the colon is dropped; `retry` counts only if all ASCII digits; an `id` holding NUL
 * is ignored; an event without data is not dispatched; an unterminated last event is
 * dropped (end() is a no-op). One field of ours, `channel` (docs/sse.md), which the spec
 * says to ignore, is kept per event like `event`.
 */
export class SSEParser {
  constructor(onEvent, onRetry, onId) {
    this.onEvent = onEvent;
    this.onRetry = onRetry || (() => {});
    this.onId = onId || (() => {});
    this.lastEventId = "";
    this._buffer = "";
    this._afterCR = false; // the last chunk ended in CR: a LF starting the next one ends no line
    this._started = false;
    this._reset();
  }

  _reset() {
    this._data = "";
    this._hasData = false;
    this._type = "";
    this._channel = "";
  }

  /** Feed decoded text; dispatch every event it completes. */
  feed(text) {
    if (!this._started) {
      this._started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1); // a leading BOM (TextDecoder drops it too)
    }
    if (this._afterCR && text[0] === "\n") text = text.slice(1);
    this._afterCR = false;
    let buffer = this._buffer + text;
    let start = 0;
    for (;;) {
      const cr = buffer.indexOf("\r", start);
      const lf = buffer.indexOf("\n", start);
      if (cr === -1 && lf === -1) break;
      let end;
      let next;
      if (cr !== -1 && (lf === -1 || cr < lf)) {
        end = cr;
        if (cr + 1 === buffer.length) {
          next = cr + 1;
          this._afterCR = true;
        } else {
          next = buffer[cr + 1] === "\n" ? cr + 2 : cr + 1;
        }
      } else {
        end = lf;
        next = lf + 1;
      }
      this._line(buffer.slice(start, end));
      start = next;
    }
    this._buffer = buffer.slice(start);
  }

  _line(line) {
    if (line === "") {
      this._dispatch();
      return;
    }
    if (line[0] === ":") return; // a comment (keepalives)
    const colon = line.indexOf(":");
    let field = line;
    let value = "";
    if (colon !== -1) {
      field = line.slice(0, colon);
      value = line.slice(colon + 1);
      if (value[0] === " ") value = value.slice(1);
    }
    switch (field) {
      case "data":
        this._data += value + "\n";
        this._hasData = true;
        break;
      case "event":
        this._type = value;
        break;
      case "id":
        if (!value.includes("\0")) {
          this.lastEventId = value;
          this.onId(value);
        }
        break;
      case "retry":
        if (/^[0-9]+$/.test(value)) this.onRetry(Number(value));
        break;
      case "channel":
        this._channel = value;
        break;
      default: // ignored, as the spec says
        break;
    }
  }

  _dispatch() {
    const hasData = this._hasData;
    const event = {
      type: this._type || "message",
      data: this._data.slice(0, -1),
      id: this.lastEventId,
      channel: this._channel,
    };
    this._reset();
    if (hasData) this.onEvent(event);
  }
}
