// The demo chat room: messages, presence and connection status, on realtime.js.
//
// Messages live on the channel chat:<room>. The page subscribes from id "0", so the log
// replays the room's history before live messages, with no query of its own.
//
// Presence lives on presence:<room>, as signals each page publishes about itself:
//   join   when its connection goes live (again),
//   here   every PRESENCE_INTERVAL seconds, and shortly after someone else's join,
//   leave  on pagehide, by navigator.sendBeacon, which outlives the page.
// A page takes someone to have left on their leave, or after 2.5 intervals with no signal
// (a crashed tab, a lost network): with the default 10 s, within 25 s at worst.
(function () {
  "use strict";

  const { Realtime, compareIds, csrfToken, post } = window.DjangoRealtime;
  const config = JSON.parse(document.getElementById("chat-config").textContent);
  const $ = (id) => document.getElementById(id);

  const NICK_KEY = "django-realtime-demo:nick";
  const SHOWN_MESSAGES = 500; // the DOM keeps the newest ones
  const INTERVAL = config.presenceInterval * 1000;
  const GONE_AFTER = 2.5 * INTERVAL;
  const SID_PATTERN = /^[A-Za-z0-9]{8,32}$/;

  const messages = $("messages");
  const scroller = $("scroller");
  const empty = $("empty");
  const nickInput = $("nick");
  const textInput = $("text");
  const sendButton = $("send");
  const errorBox = $("error");

  // Small helpers. User data only ever reaches the DOM as textContent.

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function hue(name) {
    let hash = 0;
    for (const char of name) hash = (hash * 31 + char.codePointAt(0)) >>> 0;
    return hash % 360;
  }

  function paintAvatar(node, name) {
    node.textContent = (Array.from(name.trim())[0] || "?").toUpperCase();
    node.style.setProperty("--hue", hue(name));
  }

  function clip(value, length) {
    return typeof value === "string" ? Array.from(value).slice(0, length).join("") : null;
  }

  // Nickname: the logged-in user's, else remembered in this browser.

  if (config.user) {
    nickInput.value = config.user;
    nickInput.readOnly = true;
  } else {
    nickInput.value = localStorage.getItem(NICK_KEY) || `guest-${1000 + Math.floor(Math.random() * 9000)}`;
    localStorage.setItem(NICK_KEY, nickInput.value);
  }

  function nick() {
    return clip(nickInput.value.trim(), config.maxNick) || "anonymous";
  }

  nickInput.addEventListener("change", () => {
    nickInput.value = nick();
    localStorage.setItem(NICK_KEY, nickInput.value);
    paintAvatar($("me-avatar"), nick());
    renderPeople();
    announce("here");
  });
  paintAvatar($("me-avatar"), nick());

  // The connection. ?transport=ws or ?transport=sse choose; by default WebSocket, else SSE.

  const realtime = new Realtime({ transport: config.transport });
  let fellBack = false;
  const status = $("status");

  function showStatus() {
    status.dataset.state = realtime.state;
    status.dataset.transport = realtime.transport;
    status.querySelector(".label").textContent = realtime.state;
    const via = realtime.transport === "websocket" ? "WebSocket" : fellBack ? "SSE (fallback)" : "SSE";
    status.querySelector(".via").textContent = via;
  }

  realtime.on("state", ({ state }) => {
    showStatus();
    if (state === "live") announce("join");
  });
  realtime.on("transport", () => {
    fellBack = true;
    showStatus();
    notice("WebSockets could not connect, so this page uses Server-Sent Events.");
  });
  realtime.on("error", (error) => console.warn("realtime:", error.code, error.message));
  showStatus();

  // Messages: replayed from the start of the log, then live.

  function nearBottom() {
    return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
  }

  function append(item) {
    const stick = nearBottom();
    messages.append(item);
    const shown = messages.querySelectorAll("li.msg");
    for (let i = 0; i < shown.length - SHOWN_MESSAGES; i++) shown[i].remove();
    empty.hidden = shown.length > 0;
    if (stick) scroller.scrollTop = scroller.scrollHeight;
  }

  function addMessage(event) {
    const who = clip(event.data && event.data.nick, config.maxNick);
    const text = clip(event.data && event.data.text, config.maxText);
    if (!who || !text) return; // not a message of this page's making
    const item = el("li", "msg");
    item.dataset.id = event.id;
    item.dataset.nick = who;
    const previous = messages.lastElementChild;
    if (previous && previous.classList.contains("msg") && previous.dataset.nick === who) item.classList.add("cont");
    if (who === nick()) item.classList.add("mine");
    const avatar = el("span", "avatar");
    avatar.setAttribute("aria-hidden", "true");
    paintAvatar(avatar, who);
    const body = el("div", "body");
    body.append(el("span", "nick", who), el("p", "text", text));
    item.append(avatar, body);
    append(item);
  }

  function notice(text) {
    const item = el("li", "notice", text);
    append(item);
    return item;
  }

  realtime.subscribe(config.chatChannel, {
    lastId: "0",
    onEvent: addMessage,
    onReset(reset) {
      // Start again from what follows: the messages the log still holds.
      messages.replaceChildren();
      empty.hidden = false;
      notice(
        reset.reason === "expired"
          ? "Older messages have expired: showing the ones the log still holds."
          : "The event log was replaced: showing new messages only."
      );
    },
  });

  // Sending: over the WebSocket with an acknowledgement, else a POST with Django's CSRF token.

  function showError(text) {
    errorBox.textContent = text;
    errorBox.hidden = !text;
  }

  async function send(text) {
    const data = { nick: nick(), text };
    if (realtime.transport === "websocket") {
      try {
        return await realtime.publish(config.chatChannel, data);
      } catch (error) {
        if (error.code !== "transport") throw error; // fell back meanwhile: POST it
      }
    }
    return post(config.sendUrl, data);
  }

  $("composer").addEventListener("submit", async (e) => {
    e.preventDefault();
    const text = textInput.value.trim();
    if (!text) return;
    if (Array.from(text).length > config.maxText) {
      showError(`A message may have at most ${config.maxText} characters.`);
      return;
    }
    sendButton.disabled = true;
    sendButton.textContent = "Sending…";
    try {
      await send(text);
      textInput.value = "";
      showError("");
    } catch (error) {
      showError(`Not sent: ${error.message}`);
    } finally {
      sendButton.disabled = false;
      sendButton.textContent = "Send";
      textInput.focus();
    }
  });

  // Presence.

  const sid = Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => "abcdefghijklmnopqrstuvwxyz0123456789"[b % 36]).join("");
  const members = new Map(); // sid -> {nick, seen}
  const joinNotices = new Map(); // sid -> its "joined" notice, which follows a rename
  let floor = config.cursor; // signals at or below it predate this page

  let shown = new Set(); // who the list showed, so that only newcomers are animated

  function renderPeople() {
    const list = [{ key: "", nick: nick(), me: true }];
    for (const [key, person] of members) list.push({ key, nick: person.nick, me: false });
    list.sort((a, b) => (b.me ? 1 : 0) - (a.me ? 1 : 0) || a.nick.localeCompare(b.nick));
    const items = list.map((person) => {
      const item = el("li", person.me ? "person me" : "person");
      if (!shown.has(person.key)) item.classList.add("new");
      const avatar = el("span", "avatar");
      avatar.setAttribute("aria-hidden", "true");
      paintAvatar(avatar, person.nick);
      item.append(avatar, el("span", "name", person.nick));
      if (person.me) item.append(el("span", "you", "you"));
      return item;
    });
    $("people").replaceChildren(...items);
    shown = new Set(list.map((person) => person.key));
    $("people-count").textContent = String(list.length);
  }

  function announce(event) {
    if (realtime.state !== "live") return; // the next join says it all
    const data = { sid, nick: nick() };
    const sent =
      realtime.transport === "websocket"
        ? realtime.publish(config.presenceChannel, data, { event })
        : post(config.presenceUrl, { event, ...data });
    sent.catch((error) => console.warn("presence:", error.message));
  }

  function onPresence(event) {
    if (compareIds(event.id, floor) <= 0) return;
    const who = event.data && event.data.sid;
    const name = clip(event.data && event.data.nick, config.maxNick);
    if (typeof who !== "string" || !SID_PATTERN.test(who) || !name || who === sid) return;
    const known = members.get(who);
    if (event.event === "leave") {
      if (known) {
        forget(who);
        notice(`${known.nick} left`);
        renderPeople();
      }
      return;
    }
    members.set(who, { nick: name, seen: Date.now() });
    if (known && known.nick !== name) renamed(who, known.nick, name);
    if (event.event === "join") {
      if (!known) joinNotices.set(who, notice(`${name} joined`));
      // Answer soon, so the newcomer sees who is here without waiting for heartbeats.
      setTimeout(() => announce("here"), Math.random() * 1000);
    }
    if (!known || known.nick !== name) renderPeople();
  }

  /** A guest renamed themselves: their "joined" notice shows who they are now. */
  function renamed(who, before, after) {
    const item = joinNotices.get(who);
    if (!item) return;
    item.textContent = `${after} joined`;
    item.title = `joined as ${before}`;
  }

  function forget(who) {
    members.delete(who);
    joinNotices.delete(who);
  }

  realtime.subscribe(config.presenceChannel, {
    lastId: config.cursor,
    events: ["join", "here", "leave"],
    onEvent: onPresence,
    onReset(reset) {
      if (reset.reason === "unknown") floor = reset.resumeId; // a new log: its ids start lower
    },
  });

  setInterval(() => announce("here"), INTERVAL);
  setInterval(() => {
    const now = Date.now();
    for (const [who, person] of members) {
      if (now - person.seen <= GONE_AFTER) continue;
      forget(who);
      notice(`${person.nick} left`);
      renderPeople();
    }
  }, 1000);

  addEventListener("pagehide", () => {
    const form = new FormData();
    form.append("csrfmiddlewaretoken", csrfToken());
    form.append("event", "leave");
    form.append("sid", sid);
    form.append("nick", nick());
    navigator.sendBeacon(config.presenceUrl, form);
  });
  addEventListener("pageshow", (e) => {
    if (e.persisted) announce("join"); // back from the back/forward cache
  });

  renderPeople();
  textInput.focus();
})();
