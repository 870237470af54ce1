// The demo's calls: WebRTC between two logged-in users, signalled on their pair channel
// with realtime.js's Realtime.peer() (docs/webrtc.md). Self-contained: a page gives it an
// element, its Realtime and the two users' primary keys.
//
//   <script src="{% static 'chat/call.js' %}"></script>
//   DemoCall.mount(document.getElementById("call"), { realtime, me: 3, peer: 7, peerName: "bob" });
//
// It watches the pair channel for the other user's call (Answer / Decline), starts one (Call),
// shows both videos where there is a camera, a text box on the data channel, and hangs up.
// A call is placed only on a click of Call, and answered only on a click of Answer: never by a
// link or a page load alone, which anyone can send a signed-in user.
(function (global) {
  "use strict";

  const { RealtimeError, csrfToken, pairChannel } = global.DjangoRealtime;

  const TEMPLATE = `
    <p class="call-status" role="status" data-state="idle"></p>
    <div class="call-buttons">
      <button type="button" class="call-start">Call</button>
      <button type="button" class="call-answer" hidden>Answer</button>
      <button type="button" class="call-decline" hidden>Decline</button>
      <button type="button" class="call-hangup" hidden>Hang up</button>
    </div>
    <div class="call-videos" hidden>
      <video class="call-remote" autoplay playsinline aria-label="Their video"></video>
      <video class="call-local" autoplay playsinline muted aria-label="Your video"></video>
    </div>
    <ol class="call-messages" aria-live="polite"></ol>
    <form class="call-chat">
      <input class="call-text" maxlength="2000" placeholder="Message over the data channel" aria-label="Message" autocomplete="off" disabled>
      <button type="submit" class="call-send" disabled>Send</button>
    </form>`;

  /**
   * Render a call UI into `root`. options: { realtime, me, peer, peerName, prefix: "call",
   * iceServers: [], media: true }. Returns { start, ring, answer, decline, hangup, get peer() }.
   */
  function mount(root, options) {
    const { realtime, me, peer: other, prefix = "call", iceServers = [], media = true } = options;
    const name = options.peerName || `user ${other}`;
    const channel = pairChannel(prefix, me, other);
    root.innerHTML = TEMPLATE;
    const $ = (selector) => root.querySelector(selector);
    const ui = {
      status: $(".call-status"),
      start: $(".call-start"),
      answer: $(".call-answer"),
      decline: $(".call-decline"),
      hangup: $(".call-hangup"),
      videos: $(".call-videos"),
      remote: $(".call-remote"),
      local: $(".call-local"),
      messages: $(".call-messages"),
      form: $(".call-chat"),
      text: $(".call-text"),
      send: $(".call-send"),
    };
    let peer = null; // the Peer of the call in progress
    let watcher = null; // the subscription that waits for the other user's call while there is none
    let caller = null; // the session id of a call ringing here
    let declined = false; // declined before the caller's hello came (ring()): decline that call once it does

    function show(state, text) {
      ui.status.dataset.state = state;
      ui.status.textContent = text;
      ui.start.hidden = state !== "idle";
      ui.answer.hidden = ui.decline.hidden = state !== "ringing";
      ui.hangup.hidden = !["calling", "connecting", "connected"].includes(state);
      ui.videos.hidden = ui.hangup.hidden; // no black boxes before a call or after a hang-up
      const open = state === "connected" && peer !== null && peer.dataChannel && peer.dataChannel.readyState === "open";
      ui.text.disabled = ui.send.disabled = !open;
    }

    function say(who, text) {
      const item = document.createElement("li");
      item.className = `call-message from-${who}`;
      item.textContent = `${who === "me" ? "You" : name}: ${text}`; // text, never HTML
      ui.messages.append(item);
    }

    function watch() {
      if (watcher || peer) return;
      watcher = realtime.subscribe(channel, {
        events: ["webrtc.hello", "webrtc.bye"],
        onEvent: ({ event, data }) => {
          if (!data || typeof data.from !== "string") return;
          if (data.info && data.info.user === me) return; // a call of ours, from another tab
          if (event === "webrtc.hello" && !data.to) {
            caller = data.from;
            if (declined) api.decline();
            else show("ringing", `${name} is calling…`);
          } else if (event === "webrtc.bye" && data.from === caller) {
            caller = null;
            show("idle", `Missed a call from ${name}.`);
          }
        },
        onError: (error) => show("idle", `Cannot watch for calls: ${error.message}`),
      });
    }

    function unwatch() {
      if (watcher && watcher.active) watcher.unsubscribe();
      watcher = null;
    }

    function begin(state, text) {
      unwatch();
      caller = null;
      declined = false;
      ui.messages.textContent = "";
      peer = realtime.peer(channel, {
        iceServers,
        // Who calls, and whether this side started it: the other user's room page rings for a call.
        info: { user: me, calling: state === "calling" },
        onState: ({ state: now }) => {
          if (now === "connecting") show("connecting", `Connecting to ${name}…`);
          else if (now === "connected") show("connected", `In a call with ${name}.`);
          else if (now === "disconnected") show("connecting", `${name}'s connection dropped; reconnecting…`);
          else if (now === "failed") show("connecting", `No path to ${name} (a TURN server would relay); retrying…`);
        },
        onOpen: () => show(peer.state === "connected" ? "connected" : "connecting", ui.status.textContent),
        onMessage: ({ data }) => say("them", String(data)),
        onTrack: ({ track, streams }) => {
          ui.remote.srcObject = streams[0] || new MediaStream([track]);
        },
        onClose: ({ by, reason }) => {
          peer = null;
          ui.local.srcObject = ui.remote.srcObject = null;
          const text = reason === "refused" ? "You may not call this user." : by === "remote" ? `${name} hung up.` : "Call ended.";
          show("idle", text);
          if (reason !== "refused") watch();
        },
        onError: (error) => global.console && global.console.warn(`call: ${error.code || error.name}: ${error.message}`),
      });
      show(state, text);
      if (media) {
        peer
          .addMedia({ audio: true, video: true })
          .then((stream) => {
            ui.local.srcObject = stream;
          })
          .catch((error) => {
            if (error.code !== "closed") say("note", `no camera or microphone (${error.name || error.code}): data only`);
          });
      }
    }

    /** Signal on the pair channel without a Peer (a declined call): over the WebSocket, or POST. */
    async function signal(event, data) {
      if (realtime.transport === "websocket") return realtime.publish(channel, data, { event });
      const url = new URL("publish/", new URL(realtime.options.sseUrl, location.href)).href;
      const response = await fetch(url, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken(realtime.options.csrfCookieName) },
        body: JSON.stringify({ type: "publish", channel, event, data }),
      });
      if (!response.ok) throw new RealtimeError("http", `POST ${url}: HTTP ${response.status}`);
      return response.json();
    }

    const api = {
      /**
       * Call the other user: say hello on the pair channel and start the camera. Only on a click of
       * the user (Call): a page that called as it loads would call whomever its link names, so the
       * sender of a link could answer and watch this user's camera.
       */
      start() {
        if (!peer) begin("calling", `Calling ${name}…`);
      },
      /**
       * Show that the other user calls, with Answer and Decline, before their next hello says so
       * (the page was opened from the room's "is calling you" notice). Nothing is sent and no
       * camera starts: answering takes a click of the user (answer()), never a link alone.
       */
      ring() {
        if (!peer) show("ringing", `${name} is calling…`);
      },
      answer() {
        if (!peer) begin("connecting", `Connecting to ${name}…`);
      },
      decline() {
        const to = caller;
        caller = null;
        declined = to === null; // rung by ring(): the caller's session comes with its next hello
        show("idle", `Declined ${name}'s call.`);
        if (to) signal("webrtc.bye", { from: "declined", to }).catch((error) => global.console.warn("call:", error));
      },
      hangup() {
        if (peer) peer.hangup();
      },
      get peer() {
        return peer;
      },
    };

    ui.start.addEventListener("click", api.start);
    ui.answer.addEventListener("click", api.answer);
    ui.decline.addEventListener("click", api.decline);
    ui.hangup.addEventListener("click", api.hangup);
    ui.form.addEventListener("submit", (e) => {
      e.preventDefault();
      const text = ui.text.value;
      if (!text || !peer) return;
      try {
        peer.send(text);
      } catch (error) {
        say("note", error.message);
        return;
      }
      say("me", text);
      ui.text.value = "";
    });
    global.addEventListener("pagehide", () => api.hangup());
    show("idle", `Call ${name}, or wait for their call.`);
    watch();
    return api;
  }

  global.DemoCall = { mount };
})(window);
