// Loaded into a page of a real server by tests/test_browser.py: drive realtime.js and record
// what each subscription sees, so that Python only starts it and reads `harness.log`.
(function () {
  "use strict";

  const log = { events: {}, errors: {}, pageErrors: [], states: [], transports: [], retries: [], fetches: [] };
  const realFetch = window.fetch;
  window.fetch = function (url, init) {
    log.fetches.push({ url: String(url), at: performance.now() });
    return realFetch.call(this, url, init);
  };

  window.harness = {
    log,
    realtime: null,

    /** Open a Realtime with `options` and subscribe to each of `subscriptions`: names, or {channel, ...options}. */
    start(options, subscriptions) {
      const realtime = new window.DjangoRealtime.Realtime(options);
      this.realtime = realtime;
      realtime.on("state", ({ state }) => log.states.push(state));
      realtime.on("transport", ({ transport, reason }) => log.transports.push([transport, reason]));
      realtime.on("retry", ({ delay, error }) => log.retries.push([delay, error && error.status]));
      realtime.on("error", (error) => log.pageErrors.push([error.code, error.status || null]));
      for (const item of subscriptions) {
        const { channel, ...options } = typeof item === "string" ? { channel: item } : item;
        log.events[channel] = [];
        log.errors[channel] = [];
        realtime.subscribe(channel, {
          ...options,
          onEvent: (e) => log.events[channel].push([e.id, e.event, e.data]),
          onError: (e) => log.errors[channel].push([e.code, e.message, e.status || null]),
        });
      }
      return realtime.transport;
    },
  };
})();
