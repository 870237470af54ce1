// The dashboard: one channel, two event names, replayed from the log and then live.
(function () {
  "use strict";

  const { Realtime, Cursor, post } = window.DjangoRealtime;
  const channel = JSON.parse(document.getElementById("dashboard-channel").textContent);
  const clicks = document.getElementById("clicks");
  const feed = document.getElementById("announcements");
  const status = document.getElementById("status");
  const SHOWN = 8;
  let count = 0;

  const realtime = new Realtime();
  const showStatus = () => {
    status.dataset.state = realtime.state;
    status.querySelector(".label").textContent = realtime.state;
    status.querySelector(".via").textContent = realtime.transport === "websocket" ? "WebSocket" : "SSE";
  };
  realtime.on("state", showStatus);
  realtime.on("transport", showStatus);
  showStatus();

  function announce(event) {
    const text = event.data && typeof event.data.text === "string" ? event.data.text.slice(0, 500) : null;
    if (!text) return;
    const item = document.createElement("li");
    const when = document.createElement("time");
    when.textContent = `event #${Cursor.eventId(event.id)}`; // the id is a cursor: its event's id, shown
    item.append(text, when); // textContent only: data from any publisher
    feed.querySelector(".empty-item")?.remove();
    feed.prepend(item);
    while (feed.children.length > SHOWN) feed.lastElementChild.remove();
  }

  realtime.subscribe(channel, {
    lastId: "0",
    events: ["click", "announcement"],
    onEvent(event) {
      if (event.event === "click") clicks.textContent = String(++count);
      else announce(event);
    },
    onReset() {
      // Retention deleted some events: count again from the ones that follow.
      count = 0;
      clicks.textContent = "0";
      feed.replaceChildren();
    },
  });

  document.getElementById("click").addEventListener("submit", (e) => {
    e.preventDefault();
    post(e.target.action, {}).catch((error) => console.warn("click:", error.message));
  });

  for (const button of document.querySelectorAll("[data-copy]")) {
    button.addEventListener("click", async () => {
      const text = document.getElementById(button.dataset.copy).textContent;
      try {
        await navigator.clipboard.writeText(text);
        button.textContent = "Copied";
      } catch (error) {
        button.textContent = "Select and copy";
      }
      setTimeout(() => (button.textContent = "Copy"), 1500);
    });
  }
})();
