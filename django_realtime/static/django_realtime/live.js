/*! django-realtime live regions without htmx: the declarative binding of {% live_region %}.
 *
 *   {% realtime_script %}{% live_script %}
 *   <div id="board" data-live-channels="board:items" data-live-cursor="4180" ...>…</div>
 *
 * Each region follows its channels with realtime.js's public API (Realtime, subscribe,
 * unsubscribe), from the cursor taken before it was rendered, and applies each action
 * event (docs/live.md, "On the wire") by DOM id: append, prepend, before, after (an id
 * the page shows already is replaced, never doubled), replace, update, remove.  A refresh
 * (not the page's own) or a reset fetches the region again with the page's session, and
 * follows on from the cursor the fresh region carries.  window.DjangoRealtimeLive has
 * applyAction() and bind() for pages that add regions later.
 */
(function (global) {
  "use strict";

  const LIVE_EVENT = "live";
  const REFRESH_EVENT = "live-refresh";
  const REFRESH_DEBOUNCE_MS = 200;
  const INSERTS = { append: "append", prepend: "prepend", before: "before", after: "after" };

  function byId(id) {
    return id ? global.document.getElementById(id) : null;
  }

  /** Apply the action an event's data carries to the document; return its name, or null if it carries none. */
  function applyAction(data) {
    if (typeof data !== "string") return null;
    const holder = global.document.createElement("template");
    holder.innerHTML = data;
    const envelope = holder.content.firstElementChild;
    if (!envelope || envelope.tagName !== "TEMPLATE" || !envelope.hasAttribute("data-live")) return null;
    const action = envelope.getAttribute("data-live");
    const target = envelope.getAttribute("data-live-target");
    const carrier = envelope.content.firstElementChild;
    if (!carrier) return null;
    carrier.removeAttribute("hx-swap-oob");
    if (action in INSERTS) {
      const nodes = Array.from(carrier.childNodes);
      const existing = byId(envelope.getAttribute("data-live-id"));
      // render="later": an empty <template data-live-pending> holds the place until its render replaces it.
      const placeholder =
        nodes.length === 1 && nodes[0].nodeType === 1 && nodes[0].matches("template[data-live-pending]");
      if (existing) {
        // The page shows it already (a replay, or a render that held it); a placeholder never blanks it.
        if (!placeholder) existing.replaceWith(...nodes);
      } else {
        const element = byId(target);
        if (element) element[INSERTS[action]](...nodes);
      }
    } else if (action === "replace") {
      const element = byId(target);
      if (element) element.replaceWith(carrier);
    } else if (action === "update") {
      const element = byId(target);
      if (element) element.replaceChildren(...Array.from(carrier.childNodes));
    } else if (action === "remove") {
      const element = byId(target);
      if (element) element.remove();
    } else {
      return null;
    }
    return action;
  }

  /** Keep *region* (an element with data-live-channels) live; return an object with close(). */
  function bind(region) {
    const api = global[Symbol.for("django-realtime")];
    if (!api) {
      global.console.error("django-realtime live.js: load realtime.js first ({% realtime_script %})");
      return null;
    }
    const realtime = new api.Realtime();
    const requestId = region.dataset.liveRequestId || "";
    let subscriptions = [];
    let timer = null;
    let fetching = false;
    let again = false;

    function notify(type, detail) {
      region.dispatchEvent(new CustomEvent(type, { detail, bubbles: true }));
    }

    function follow(cursor) {
      subscriptions.forEach((subscription) => subscription.unsubscribe());
      subscriptions = (region.dataset.liveChannels || "").split(/\s+/).filter(Boolean).map((channel) =>
        realtime.subscribe(channel, {
          lastId: cursor || null,
          events: "*",
          onEvent(event) {
            if (event.event === LIVE_EVENT) {
              const action = applyAction(event.data);
              if (action) notify("live:action", { action, id: event.id, channel });
            } else if (event.event === REFRESH_EVENT && event.data !== requestId) {
              schedule(REFRESH_DEBOUNCE_MS);
            }
          },
          onReset() {
            schedule(0); // events were lost to retention, or the log is another: what the page shows is unknown
          },
          onError(error) {
            notify("live:error", { error, channel });
          },
        }),
      );
    }

    function schedule(delay) {
      if (timer !== null) global.clearTimeout(timer);
      timer = global.setTimeout(() => {
        timer = null;
        refetch();
      }, delay);
    }

    async function refetch() {
      if (fetching) {
        again = true;
        return;
      }
      fetching = true;
      try {
        const response = await global.fetch(region.dataset.liveSrc || global.location.href, {
          credentials: "same-origin",
          headers: { Accept: "text/html", "Realtime-Request-Id": requestId },
        });
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        const page = new DOMParser().parseFromString(await response.text(), "text/html");
        const fresh = page.getElementById(region.id);
        if (!fresh) throw new Error(`the response has no #${region.id}`);
        region.replaceChildren(...Array.from(fresh.childNodes, (node) => global.document.importNode(node, true)));
        region.dataset.liveCursor = fresh.dataset.liveCursor || "";
        follow(region.dataset.liveCursor); // the fresh content holds every change up to its cursor
        notify("live:refreshed", { cursor: region.dataset.liveCursor });
      } catch (error) {
        notify("live:error", { error });
      } finally {
        fetching = false;
        if (again) {
          again = false;
          schedule(REFRESH_DEBOUNCE_MS);
        }
      }
    }

    follow(region.dataset.liveCursor);
    return {
      realtime,
      refresh: refetch,
      close() {
        if (timer !== null) global.clearTimeout(timer);
        realtime.close();
      },
    };
  }

  function bindAll() {
    global.document.querySelectorAll("[data-live-channels]").forEach((region) => {
      if (!region.liveBinding) region.liveBinding = bind(region);
    });
  }

  global.DjangoRealtimeLive = { applyAction, bind, bindAll };
  if (global.document) {
    if (global.document.readyState === "loading") global.document.addEventListener("DOMContentLoaded", bindAll);
    else bindAll();
  }
})(typeof globalThis !== "undefined" ? globalThis : this);
