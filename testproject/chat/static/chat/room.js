// The demo chat room: messages, presence and connection status, on realtime.js.
//
// A room is one channel, chat:<room>. The page subscribes to its messages from id "0", so
// the log replays the room's history before live messages, with no query of its own; and
// it is present there (realtime.presence()), which gives the sidebar's "Here now" list and
// the "joined"/"left" notices: a closed tab leaves as its connection closes.
(function () {
  "use strict";

  const { Realtime, Cursor, pairChannel, post } = window.DjangoRealtime;
  const config = JSON.parse(document.getElementById("chat-config").textContent);
  const $ = (id) => document.getElementById(id);

  const NICK_KEY = "django-realtime-demo:nick";
  const SHOWN_MESSAGES = 500; // the DOM keeps the newest ones

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
    // Present again, as the new name (a member's identity is fixed when it joins).
    if (here.self === null || here.self.user !== nick()) here.update({ name: nick() });
    renderPeople();
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

  realtime.on("state", showStatus);
  realtime.on("transport", () => {
    // A site that serves no WebSockets says so ({% realtime_script %}): SSE is then no fallback.
    if (!realtime.options.transports.includes("websocket")) return showStatus();
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
    item.dataset.id = Cursor.eventId(event.id); // the event's own id, not its cursor
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

  // Presence: who has the room open, from realtime.js (docs/presence.md). Each page joins
  // chat:<room> under its nickname; its info carries a random id of the page, so that a
  // rename (leave, then join under the new name) shows as one, not as a leave and a join.

  const pageId = Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => b.toString(16).padStart(2, "0")).join("");
  // Whom one may call is not the page's to say: the server sets each member's info.pk, to its
  // user's pk or to null for a guest, over whatever a page sent (PRESENCE_IDENTITY, chat/calls.py).
  const here = realtime.presence(config.chatChannel, { name: nick(), info: { page: pageId } });
  const pages = new Map(); // another page's id -> {name, joined: its "joined" notice, left: its "left" notice}
  let shown = new Set(); // who the list showed, so that only newcomers are animated

  function renderPeople() {
    const others = here
      .connections()
      .filter((member) => !(member.info && member.info.page === pageId) && member.user !== nick());
    const names = [...new Set(others.map((member) => member.user))].sort((a, b) => a.localeCompare(b));
    const pks = new Map(); // name -> the pk the server gave a signed-in user, whom a signed-in user may call
    for (const member of others) if (Number.isInteger(member.info && member.info.pk)) pks.set(member.user, member.info.pk);
    const list = [{ name: nick(), me: true }, ...names.map((name) => ({ name, me: false, pk: pks.get(name) }))];
    const items = list.map((person) => {
      const key = person.me ? "" : person.name;
      const item = el("li", person.me ? "person me" : "person");
      if (!shown.has(key)) item.classList.add("new");
      const avatar = el("span", "avatar");
      avatar.setAttribute("aria-hidden", "true");
      paintAvatar(avatar, person.name);
      item.append(avatar, el("span", "name", person.name));
      if (person.me) item.append(el("span", "you", "you"));
      else if (config.me !== null && person.pk !== undefined && person.pk !== config.me) {
        const call = el("a", "call-link", "Call");
        call.href = callUrl(person.pk, "call");
        call.target = "_blank";
        call.setAttribute("aria-label", `Call ${person.name}`);
        item.append(call);
      }
      return item;
    });
    $("people").replaceChildren(...items);
    shown = new Set(list.map((person) => (person.me ? "" : person.name)));
    $("people-count").textContent = String(list.length);
    ring(new Map(list.filter((person) => person.pk !== undefined && person.pk !== config.me).map((p) => [p.pk, p.name])));
  }

  // Calls (chat/calls.py, docs/webrtc.md): a signed-in page watches the pair channel of each
  // signed-in user here for their call page's hello, and offers to answer it.

  function callUrl(pk, action) {
    const query = new URLSearchParams({ [action]: "1" });
    if (config.transport !== "auto") query.set("transport", config.transport === "websocket" ? "ws" : "sse");
    return `${config.callUrl.replace(/0\/$/, `${pk}/`)}?${query}`;
  }

  // At most MAX_RINGS pair channels, however many people are here: with the room's own channel
  // the page's stream (or socket) carries at most 9 channels, well under the server's MAX_CHANNELS
  // (16 by default), past which the server refuses channels (an SSE stream that asks for more,
  // the room's channel with the rest). Everyone here can still be called; only the calls of the
  // first MAX_RINGS ring in the room (the call page itself rings for anyone).
  const MAX_RINGS = 8;
  const rings = new Map(); // pk -> the subscription to the pair channel with that user
  const rung = new Set(); // callers' sessions already announced

  function ring(present) {
    if (config.me === null) return;
    for (const [pk, sub] of rings) {
      if (!present.has(pk)) {
        sub.unsubscribe();
        rings.delete(pk);
      }
    }
    for (const [pk, name] of present) {
      if (rings.size >= MAX_RINGS) break; // the ones rung for already stay: no churn as people come and go
      if (rings.has(pk)) continue;
      const channel = pairChannel("call", config.me, pk);
      rings.set(
        pk,
        realtime.subscribe(channel, {
          events: ["webrtc.hello"],
          onEvent: ({ data }) => {
            // A hello to everyone from their call page that starts a call (an answering page
            // says hello too; a reply names its recipient), announced once per call.
            const info = data && data.info;
            if (!info || data.to || info.user !== pk || info.calling !== true || rung.has(data.from)) return;
            rung.add(data.from);
            const item = notice(`${name} is calling you: `);
            item.classList.add("incoming-call");
            const answer = el("a", "call-link", "answer");
            answer.href = callUrl(pk, "answer");
            answer.target = "_blank";
            item.append(answer);
          },
          onError: (error) => console.warn(`calls from ${name}:`, error.message),
        }),
      );
    }
  }

  function pageOf(detail) {
    const page = detail.info && detail.info.page;
    return typeof page === "string" && page !== pageId ? page : null; // this page's own come and go says nothing
  }

  here.addEventListener("change", renderPeople);
  here.addEventListener("join", ({ detail }) => {
    const page = pageOf(detail);
    if (!page) return;
    const known = pages.get(page);
    if (known && known.left) known.left.remove(); // back after a reconnect, or under a new name
    if (known && known.name !== detail.user) {
      // A rename: the "joined" notice shows who they are now.
      if (known.joined) {
        known.joined.textContent = `${detail.user} joined`;
        known.joined.title = `joined as ${known.name}`;
      } else known.joined = notice(`${known.name} is now ${detail.user}`);
      known.name = detail.user;
      known.left = null;
    } else if (!known) pages.set(page, { name: detail.user, joined: notice(`${detail.user} joined`), left: null });
    else known.left = null;
  });
  here.addEventListener("leave", ({ detail }) => {
    const page = pageOf(detail);
    if (!page) return;
    const known = pages.get(page) || { name: detail.user, joined: null, left: null };
    pages.set(page, known);
    if (known.name === detail.user) known.left = notice(`${detail.user} left`); // else its old name, gone
  });

  renderPeople();
  textInput.focus();
})();
